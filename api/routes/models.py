"""`GET /v1/models`: the bots the key may use, as OpenAI models."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentKey, SessionDep
from api.schemas.openai import Model, ModelList
from api.services.bots.management import list_bots

router = APIRouter()


@router.get("/v1/models")
def list_models(key: CurrentKey, session: SessionDep) -> ModelList:
    allowed = {b.id for b in key.bots}
    bots = [b for b in list_bots(session) if key.is_admin or b.id in allowed]
    return ModelList(
        data=[Model(id=b.slug, created=int(b.created_at.timestamp()), name=b.name) for b in bots]
    )
