"""Train a bot's dataset into an immutable, versioned adapter in the data dir (`<bot>-v<N>`), with
a manifest naming the base model, the dataset snapshot, the config and the figures."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from api.errors import InvalidRequest
from api.models import Bot, Dataset
from api.services.access.audit import AuditActor
from api.services.datasets.snapshots import create_snapshot, read_snapshot
from api.settings import Settings
from serving.packaged_model import cached_hf_folder, packaged_gguf_path
from training.config import TrainConfig
from training.rows import Row
from training.trainer import Progress, TrainResult, train

MANIFEST = "manifest.json"


def base_model_folder(settings: Settings) -> Path:
    """The serving model as an HF folder (the packaged SmolLM2 and GGUF files are converted once,
    into the same cache the transformers backend uses)."""
    models = settings.data_dir / "models"
    if settings.model == "smollm2":
        return cached_hf_folder(packaged_gguf_path(), models)
    path = Path(settings.model)
    if path.suffix == ".gguf":
        return cached_hf_folder(path, models)
    if (path / "config.json").is_file():
        return path
    raise InvalidRequest(
        f"Training needs the base model's weights on this machine; '{settings.model}' is not a "
        "local folder or .gguf file.",
        param="model",
    )


def adapter_dir(settings: Settings, bot: Bot) -> tuple[str, Path]:
    """The next versioned adapter name and folder, or an unfinished run's (to resume it)."""
    root = settings.data_dir / "adapters"
    versions = []
    for folder in root.glob(f"{bot.slug}-v*"):
        match = re.fullmatch(rf"{re.escape(bot.slug)}-v(\d+)", folder.name)
        if match:
            versions.append((int(match.group(1)), folder))
    if versions:
        version, folder = max(versions)
        if not (folder / MANIFEST).exists():  # interrupted: resume into it
            return folder.name, folder
        return f"{bot.slug}-v{version + 1}", root / f"{bot.slug}-v{version + 1}"
    return f"{bot.slug}-v1", root / f"{bot.slug}-v1"


def prepare_rows(
    session: Session, settings: Settings, dataset: Dataset, *, actor: AuditActor
) -> tuple[list[Row], dict[str, Any]]:
    """The training split of the dataset's current snapshot (made if the rows changed)."""
    snapshot, _ = create_snapshot(session, settings, dataset, actor=actor)
    rows = [row for split, row in read_snapshot(snapshot) if split == "train"]
    if not rows:
        raise InvalidRequest(
            f"Snapshot v{snapshot.version} of '{dataset.name}' has no training rows.",
            code="empty_dataset",
        )
    return rows, {
        "dataset": dataset.name,
        "snapshot_version": snapshot.version,
        "snapshot_hash": snapshot.content_hash,
        "train_rows": snapshot.train_rows,
        "validation_rows": snapshot.validation_rows,
    }


def check_adapter_folder(folder: Path) -> None:
    """A peft LoRA folder (adapter_config.json and the weights), or a 400 saying what is missing."""
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise InvalidRequest(
            f"{folder} is not a peft adapter folder (no adapter_config.json).",
            param="adapter_path",
        )
    try:
        kind = json.loads(config_file.read_text()).get("peft_type")
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"Cannot read {config_file}: {exc}", param="adapter_path") from exc
    if kind != "LORA":
        raise InvalidRequest(
            f"{folder} holds a {kind} adapter; only LoRA adapters can be served.",
            param="adapter_path",
        )
    if not any(folder.glob("adapter_model.*")):
        raise InvalidRequest(f"{folder} has no adapter_model weights.", param="adapter_path")


def import_adapter(
    source: Path, base: Path, name: str, folder: Path, dataset: dict[str, Any]
) -> tuple[TrainResult, dict[str, Any]]:
    """Copy an adapter trained elsewhere under the versioned name, with a manifest saying so."""
    check_adapter_folder(source)
    artifact = folder / "adapter"
    if artifact.exists():  # a retried job: the copy may be partial
        shutil.rmtree(artifact)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, artifact)
    size = sum(f.stat().st_size for f in artifact.rglob("*") if f.is_file())
    result = TrainResult(
        output_dir=artifact,
        method="imported",
        steps=0,
        tokens=0,
        seconds=0.0,
        tokens_per_s=0.0,
        final_loss=0.0,
        artifact_bytes=size,
    )
    manifest = {
        "name": name,
        "base_model": str(base),
        "method": "imported",
        "imported_from": str(source),
        "artifact": str(artifact),
        "dataset": dataset,
        "metrics": {"artifact_bytes": size},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return result, manifest


def train_adapter(
    rows: list[Row],
    base: Path,
    name: str,
    folder: Path,
    config: TrainConfig,
    source: dict[str, Any],
    *,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[TrainResult, dict[str, Any]]:
    """Train and write the manifest last: a folder with a manifest is a finished, immutable adapter."""
    result = train(rows, base, folder, config, on_progress=on_progress, should_stop=should_stop)
    manifest = {
        "name": name,
        "base_model": str(base),
        "method": config.method,
        "artifact": str(result.output_dir),
        "dataset": source,
        "config": config.model_dump(mode="json"),
        "metrics": {k: v for k, v in result.to_dict().items() if k not in ("losses", "output_dir")},
        "losses": result.losses,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return result, manifest
