"""A bot's datasets: create, find, list, delete."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.errors import Conflict, NotFound
from api.ids import new_id
from api.models import Bot, Dataset, DatasetRow
from api.services.access import audit
from api.services.access.audit import AuditActor

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


class DatasetCreate(BaseModel):
    name: str = Field(description="Lowercase letters, digits, '.', '_' or '-'; unique per bot.")
    description: str = Field("", max_length=2000)
    validation_share: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="Share of rows held out for validation. Fixed at creation, so that a row's "
        "split never changes between snapshots.",
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(
                "name must be 1-100 lowercase letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        return v


def create_dataset(
    session: Session, bot: Bot, data: DatasetCreate, *, actor: AuditActor
) -> Dataset:
    if find_dataset(session, bot, data.name) is not None:
        raise Conflict(f"Bot '{bot.slug}' already has a dataset '{data.name}'.", param="name")
    dataset = Dataset(id=new_id("ds"), bot_id=bot.id, **data.model_dump())
    session.add(dataset)
    session.flush()
    audit.record(
        session,
        actor,
        "dataset.create",
        entity="dataset",
        entity_id=dataset.id,
        bot_id=bot.id,
        after=data.model_dump(),
    )
    return dataset


def find_dataset(session: Session, bot: Bot, name: str) -> Dataset | None:
    return session.scalar(select(Dataset).where(Dataset.bot_id == bot.id, Dataset.name == name))


def get_dataset(session: Session, bot: Bot, name: str) -> Dataset:
    dataset = find_dataset(session, bot, name)
    if dataset is None:
        raise NotFound(f"Bot '{bot.slug}' has no dataset '{name}'.", param="dataset")
    return dataset


def ensure_dataset(session: Session, bot: Bot, name: str, *, actor: AuditActor) -> Dataset:
    """The dataset, created with the defaults if it does not exist yet."""
    return find_dataset(session, bot, name) or create_dataset(
        session, bot, DatasetCreate(name=name), actor=actor
    )


def list_datasets(session: Session, bot: Bot) -> list[tuple[Dataset, dict[str, int]]]:
    """Each dataset with its row count per status."""
    datasets = list(
        session.scalars(select(Dataset).where(Dataset.bot_id == bot.id).order_by(Dataset.name))
    )
    counts: dict[str, dict[str, int]] = {d.id: {} for d in datasets}
    for dataset_id, status, n in session.execute(
        select(DatasetRow.dataset_id, DatasetRow.status, func.count())
        .where(DatasetRow.dataset_id.in_(counts))
        .group_by(DatasetRow.dataset_id, DatasetRow.status)
    ):
        counts[dataset_id][status] = n
    return [(d, counts[d.id]) for d in datasets]


def delete_dataset(session: Session, dataset: Dataset, *, actor: AuditActor) -> None:
    audit.record(
        session,
        actor,
        "dataset.delete",
        entity="dataset",
        entity_id=dataset.id,
        bot_id=dataset.bot_id,
        before={"name": dataset.name},
    )
    session.delete(dataset)
