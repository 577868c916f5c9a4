"""`shadowdesk plan`: the training planner (`training.planner`) fed with a bot's dataset and model."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from api.errors import InvalidRequest
from api.models import Bot
from api.services.datasets.catalog import get_dataset
from api.services.datasets.snapshots import latest_snapshot, trainable_records
from training.planner import Plan, PlanInput, parse_size, plan_training


def model_shape(runtime: Any) -> dict[str, Any]:
    """Parameter count and shape of the serving model, when this process has it loaded."""
    model = getattr(runtime.backend, "model", None) if runtime._backend_started else None
    if model is None:
        return {}
    config = model.config
    return {
        "params": int(sum(p.numel() for p in model.parameters())),
        "hidden_size": getattr(config, "hidden_size", None),
        "layers": getattr(config, "num_hidden_layers", None),
        "vocab_size": getattr(config, "vocab_size", None),
    }


def plan_for(
    session: Session,
    runtime: Any,
    bot: Bot,
    *,
    dataset_name: str | None,
    params: str | None,
    gpu_memory_gib: float | None,
    gpus: int = 1,
    rows: int | None = None,
) -> Plan:
    """A plan for training the bot's model on a dataset (its latest snapshot, else its reviewed
    rows) or on `rows` rows."""
    tokens_per_row: int | None = None
    if dataset_name is not None:
        dataset = get_dataset(session, bot, dataset_name)
        snapshot = latest_snapshot(session, dataset)
        if snapshot is not None:
            rows = snapshot.train_rows + snapshot.validation_rows
            mean = snapshot.stats.get("mean_tokens_per_row")
            tokens_per_row = int(mean) if mean else None
        else:
            rows = len(trainable_records(session, dataset))
    shape = model_shape(runtime) if params is None else {}
    try:
        size = parse_size(params) if params is not None else shape.get("params")
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="params") from exc
    if not size:
        raise InvalidRequest(
            "The base model's size is unknown here: give params (e.g. 135M, 7B).", param="params"
        )
    return plan_training(
        PlanInput(
            rows=rows or 0,
            params=size,
            model_name=runtime.backend.model_name if shape else (params or ""),
            tokens_per_row=tokens_per_row,
            hidden_size=shape.get("hidden_size"),
            layers=shape.get("layers"),
            vocab_size=shape.get("vocab_size"),
            gpu_memory_gib=gpu_memory_gib,
            gpus=gpus,
        )
    )
