"""Admin JSON API for a bot's releases: create, list, attach / detach candidates, promote, roll back."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import AdminKey, RuntimeDep, SessionDep
from api.services.access.audit import key_actor
from api.services.releases import lifecycle as service
from api.services.releases.lifecycle import AliasMove, ReleaseCreate, ReleaseView

router = APIRouter(prefix="/api/bots/{slug}/releases", tags=["releases"])


@router.get("")
def list_releases(slug: str, _: AdminKey, session: SessionDep) -> list[ReleaseView]:
    return service.list_releases(session, slug)


@router.post("", status_code=201)
async def create_release(
    slug: str, data: ReleaseCreate, key: AdminKey, runtime: RuntimeDep
) -> ReleaseView:
    return await service.create(runtime, slug, data, key_actor(key))


@router.get("/{release_id}")
def get_release(slug: str, release_id: str, _: AdminKey, session: SessionDep) -> ReleaseView:
    return service.view_release(session, slug, release_id)


@router.post("/{release_id}/attach")
async def attach(slug: str, release_id: str, key: AdminKey, runtime: RuntimeDep) -> ReleaseView:
    return await service.attach(runtime, slug, release_id, key_actor(key))


@router.post("/{release_id}/detach")
async def detach(slug: str, release_id: str, key: AdminKey, runtime: RuntimeDep) -> ReleaseView:
    return await service.detach(runtime, slug, release_id, key_actor(key))


class PromoteRequest(BaseModel):
    force: bool = Field(
        False,
        description="Promote although the release's review decision is not 'promote' (recorded "
        "in the audit log). Without it such a promotion is refused with 409.",
    )


@router.post("/{release_id}/promote")
async def promote(
    slug: str,
    release_id: str,
    key: AdminKey,
    runtime: RuntimeDep,
    body: PromoteRequest | None = None,
) -> AliasMove:
    force = body.force if body is not None else False
    return await service.promote_release(runtime, slug, release_id, key_actor(key), force=force)


@router.post("/rollback")
async def rollback(slug: str, key: AdminKey, runtime: RuntimeDep) -> AliasMove:
    return await service.rollback_release(runtime, slug, key_actor(key))
