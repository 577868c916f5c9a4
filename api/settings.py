"""The one settings object. Every knob is an environment variable prefixed `SHADOWDESK_` (or a line in
the file named by `SHADOWDESK_ENV_FILE`, default `.env`)."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SHADOWDESK_",
        env_file=os.environ.get("SHADOWDESK_ENV_FILE", ".env"),
        extra="ignore",
    )

    environment: Literal["local", "production"] = Field(
        "local", description="`production` refuses unsafe defaults (no admin key, demo bot)."
    )
    data_dir: Path = Field(
        Path("./shadowdesk-data"),
        description="Where the embedded default keeps its SQLite database, vectors and artifacts.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db. Default: SQLite in data_dir.",
    )
    database_timeout_s: float = Field(
        15.0,
        gt=0,
        description="Longest a PostgreSQL command may run: the server cancels it past this, and a "
        "connection whose server has not answered for up to 5 s more is dropped (a 503 to the "
        "client).",
    )
    auto_migrate: bool | None = Field(
        None,
        description="Upgrade the schema on start. Default: on for SQLite, off otherwise "
        "(run `shadowdesk db upgrade`).",
    )
    admin_key: SecretStr | None = Field(
        None,
        description="Bootstrap admin API key (in addition to admin keys created from the CLI).",
    )

    # Model backend serving live answers.
    backend: Literal["transformers", "vllm", "openai"] = Field(
        "transformers",
        description="transformers: in-process (the light default). vllm: a vLLM server, local and "
        "supervised or at vllm_url, serving every release's LoRA adapter on one base model. "
        "openai: any OpenAI-compatible upstream at upstream_url.",
    )
    model: str = Field(
        "smollm2",
        description="transformers and a local vLLM: an HF folder, a .gguf file, or `smollm2` "
        "(packaged). vllm_url / openai: the upstream's model name.",
    )
    torch_threads: int | None = Field(
        None, description="Threads for in-process torch (None: torch's default)."
    )
    max_batch_size: int | None = Field(
        None,
        ge=1,
        description="Concurrent sequences batched together by the transformers backend (None: "
        "sized at start from the model's KV cache, the free memory and the cores, 8 to 64). "
        "Requests beyond it wait for a running answer to finish before their first token.",
    )
    upstream_url: str | None = Field(
        None, description="OpenAI-compatible upstream base URL (backend=openai)."
    )
    upstream_api_key: SecretStr | None = None
    vllm_url: str | None = Field(
        None,
        description="backend=vllm: base URL (with /v1) of a vLLM server you run; unset, the "
        "gateway starts and supervises a local one.",
    )
    vllm_api_key: SecretStr | None = Field(
        None, description="The key the vLLM at vllm_url expects."
    )
    vllm_python: Path | None = Field(
        None,
        description="Interpreter of the virtual environment vLLM is installed in (local vLLM). "
        "Default: .venv-vllm/bin/python in the project folder (`make vllm`).",
    )
    vllm_port: int | None = Field(None, description="Port of the local vLLM (default: a free one).")
    vllm_dtype: str | None = Field(
        None,
        description="Weights dtype of the local vLLM (default: bfloat16 where the CPU computes it "
        "natively, else float32).",
    )
    vllm_max_model_len: int | None = Field(
        None, ge=64, description="Context length of the local vLLM (default: the model's)."
    )
    vllm_max_loras: int = Field(
        4, ge=1, description="Distinct adapters that can run in one vLLM batch."
    )
    vllm_max_lora_rank: Literal[8, 16, 32, 64, 128, 256] = Field(
        16, description="Largest adapter rank the local vLLM accepts (the trainer's default is 16)."
    )
    vllm_max_cpu_loras: int = Field(
        16, ge=1, description="Adapters the local vLLM keeps in memory (least recently used go)."
    )
    vllm_kv_cache_gib: float = Field(
        2.0, gt=0, description="KV cache of a CPU build of vLLM, in GiB."
    )
    vllm_extra_args: list[str] = Field(
        default_factory=list,
        description="More command-line arguments for the local vLLM (JSON list).",
    )
    vllm_start_timeout_s: float = Field(
        600.0, description="Longest wait for the local vLLM to answer after a (re)start."
    )
    adapter_reconcile_s: float = Field(
        10.0,
        gt=0,
        description="backend=vllm: how often the gateway compares the adapters vLLM holds with the "
        "live and candidate releases, loading what is missing (after a vLLM restart).",
    )
    generator_url: str | None = Field(
        None,
        description="OpenAI-compatible endpoint that writes training rows from documents (a vLLM "
        "server, Azure OpenAI, ...). Default: the serving backend.",
    )
    generator_model: str | None = Field(
        None, description="The model name at generator_url (required with it)."
    )
    generator_api_key: SecretStr | None = None
    generation_concurrency: int = Field(
        4, ge=1, le=64, description="Chunks a dataset generation job writes rows for at once."
    )
    backend_timeout_s: float = Field(
        120.0, description="Longest wait for a whole answer before a 504."
    )

    # Request limits (bad input gets a 400, not a crash).
    max_messages: int = 64
    max_message_chars: int = 16_000
    max_total_chars: int = 64_000
    max_tokens_limit: int = 2048
    default_max_tokens: int = 256

    access_cache_ttl_s: float = Field(
        5.0,
        description="How long a key's and a bot's lookup is reused in memory. Changes made through this "
        "server apply at once; changes made elsewhere (another replica, the CLI) within this time.",
    )

    # Knowledge base
    chroma_url: str | None = Field(
        None, description="Chroma server URL; default: embedded Chroma in data_dir/chroma."
    )
    knowledge_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Per call to a Chroma server: past it the store counts as unreachable (503 "
        "knowledge_unavailable, or the flagged no-context answer a bot allows).",
    )
    embedder: str = Field(
        "minilm",
        description="Default embedding model: `minilm` (packaged all-MiniLM-L6-v2) or `instructor:<path or hub id>`.",
    )
    # Small chunks match precisely; answers read the whole neighbourhood (small-to-big). 600/80
    # beat 900/120 and 1200/150 on the tuning doc sets (bench/retrieval_quality.py).
    chunk_size: int = Field(600, description="Chunk size in characters.")
    chunk_overlap: int = Field(80, description="Overlap between consecutive chunks in characters.")
    max_document_bytes: int = Field(20 * 1024 * 1024, description="Largest document accepted.")
    # What an uploaded file may become (each over-limit file fails alone, with its reason code).
    max_document_expanded_bytes: int = Field(
        64 * 1024 * 1024, description="ZIP-based files (DOCX): all entries together, uncompressed."
    )
    max_archive_entries: int = Field(2000, description="ZIP-based files: entries.")
    max_compression_ratio: float = Field(
        100.0, description="ZIP-based files: how far an entry over 1 MiB may expand (bombs: 1000x)."
    )
    max_document_pages: int = Field(2000, description="PDF pages.")
    max_document_chars: int = Field(
        5_000_000, description="Characters of text one document may yield."
    )
    max_export_rows: int = Field(200_000, description="Posts of a forum export (CSV / JSON).")
    parse_isolated: bool = Field(
        True,
        description="Parse uploads in a child process with a time and memory budget (a bad file "
        "cannot stall or exhaust the server).",
    )
    parse_timeout_s: float = Field(60.0, gt=0, description="Time budget to parse one file.")
    parse_memory_mb: int = Field(1024, ge=256, description="Memory budget of the parsing process.")
    max_request_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="Largest request body (JSON) accepted; larger ones get 413 before parsing.",
    )
    max_upload_request_bytes: int = Field(
        100 * 1024 * 1024,
        ge=1024,
        description="Largest multipart upload request (all its files together).",
    )
    sync_ingest_bytes: int = Field(
        2 * 1024 * 1024,
        description="Uploads up to this total are ingested before the reply; larger ones run as a job.",
    )

    run_worker: bool = Field(
        True, description="Run the job worker inside the server (embedded default)."
    )
    job_lease_s: float = Field(
        60.0, description="A claimed job returns to the queue if its worker is silent this long."
    )
    shadow_concurrency: int = Field(
        1,
        ge=1,
        description="Candidate answers generated at once per process, so shadow work never starves live traffic.",
    )
    shadow_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Longest a candidate may take for one shadow answer; slower ones are stored as errors.",
    )
    shadow_busy_cpu: float | None = Field(
        0.25,
        gt=0,
        description="Live traffic first: hold shadow and review-feed jobs while this process uses more than this "
        "share of a CPU core (sampled while the job waits); None never holds.",
    )
    shadow_max_defer_s: float = Field(
        5.0,
        ge=0,
        description="Longest such a job is held for a busy process, so a server that is always busy "
        "still makes progress (one job per this many seconds).",
    )

    create_demo_bot: bool = Field(
        True, description="Create the `demo` bot on first start if missing."
    )

    # Staff review
    session_secret: SecretStr | None = Field(
        None,
        description="Signs staff session cookies (>= 32 chars). Required in production (every replica needs "
        "the same one); unset in local runs, a random one per process is used (restarts log staff out).",
    )
    session_ttl_s: int = Field(
        12 * 3600, ge=60, description="A staff login lasts this long (absolute, from login)."
    )
    session_cookie_secure: bool | None = Field(
        None,
        description="Send the staff session cookie over HTTPS only. Default: on in production.",
    )
    review_lock_s: int = Field(
        300,
        ge=10,
        description="How long a reviewer holds an item (renewed while its page stays open).",
    )

    # What the server shows about itself
    api_docs: bool | None = Field(
        None,
        description="Serve /docs, /redoc and /openapi.json. Default: on, off in production.",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="Bearer token for /metrics. In production /metrics needs it (or an admin "
        "key); elsewhere it is open unless set.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses of the reverse proxies whose X-Forwarded-For / X-Forwarded-Proto "
        "are believed (for login brakes, rate limits and URLs). Empty: none, not even loopback.",
    )

    # Support widget
    public_url: str | None = Field(
        None,
        description="The address sites load widget.js from (https://support.example.com), shown in "
        "the snippet. Default: the address the admin page was opened at.",
    )
    widget_history_turns: int = Field(
        6, ge=0, le=50, description="Earlier questions and answers a widget answer is given."
    )
    rate_limit_storage: str = Field(
        "memory://",
        description="Where widget rate limits are counted: memory:// (one process) or a shared "
        "store such as redis://host:6379 when several replicas serve the widget.",
    )
    smtp_host: str | None = Field(None, description="Mail server for handoffs sent by e-mail.")
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_starttls: bool = Field(False, description="Upgrade the SMTP connection with STARTTLS.")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = Field("shadowdesk@localhost", description="Sender of handoff e-mails.")
    handoff_timeout_s: float = Field(
        10.0, gt=0, description="Per attempt to reach a handoff webhook or the mail server."
    )

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment == "production":
            if self.database_url is None:
                raise ValueError("production needs SHADOWDESK_DATABASE_URL (PostgreSQL)")
            if self.admin_key is not None and len(self.admin_key.get_secret_value()) < 24:
                raise ValueError("SHADOWDESK_ADMIN_KEY is too short for production (>= 24 chars)")
            if self.session_secret is None or len(self.session_secret.get_secret_value()) < 32:
                raise ValueError("production needs SHADOWDESK_SESSION_SECRET (>= 32 random chars)")
        elif self.session_secret is None:
            self.session_secret = SecretStr(secrets.token_urlsafe(32))
        if self.backend == "openai" and not self.upstream_url:
            raise ValueError("backend=openai needs SHADOWDESK_UPSTREAM_URL")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'shadowdesk.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")

    @property
    def should_auto_migrate(self) -> bool:
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate

    @property
    def docs_enabled(self) -> bool:
        return self.environment != "production" if self.api_docs is None else self.api_docs

    @property
    def secure_cookies(self) -> bool:
        """Whether the staff session cookie carries the Secure flag."""
        return (
            self.environment == "production"
            if self.session_cookie_secure is None
            else self.session_cookie_secure
        )


@lru_cache
def get_settings() -> Settings:
    return Settings()
