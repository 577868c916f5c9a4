"""Admin JSON API for a bot's releases: create, list, attach / detach candidates, promote, roll back."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import AdminKey, RuntimeDep, SessionDep
from api.models import ApiKey
from api.services.access.audit import NamedActor
from api.services.releases import lifecycle as service
from api.services.releases.lifecycle import AliasMove, ReleaseCreate, ReleaseView

router = APIRouter(prefix="/api/bots/{slug}/releases", tags=["releases"])


def _actor(key: ApiKey) -> NamedActor:
    return NamedActor(key.id, key.name or key.prefix)


@router.get("")
def list_releases(slug: str, _: AdminKey, session: SessionDep) -> list[ReleaseView]:
    return service.list_releases(session, slug)


@router.post("", status_code=201)
async def create_release(
    slug: str, data: ReleaseCreate, key: AdminKey, runtime: RuntimeDep
) -> ReleaseView:
    return await service.create(runtime, slug, data, _actor(key))


@router.get("/{release_id}")
def get_release(slug: str, release_id: str, _: AdminKey, session: SessionDep) -> ReleaseView:
    return service.view_release(session, slug, release_id)


@router.post("/{release_id}/attach")
async def attach(slug: str, release_id: str, key: AdminKey, runtime: RuntimeDep) -> ReleaseView:
    return await service.attach(runtime, slug, release_id, _actor(key))


@router.post("/{release_id}/detach")
async def detach(slug: str, release_id: str, key: AdminKey, runtime: RuntimeDep) -> ReleaseView:
    return await service.detach(runtime, slug, release_id, _actor(key))


@router.post("/{release_id}/promote")
async def promote(slug: str, release_id: str, key: AdminKey, runtime: RuntimeDep) -> AliasMove:
    return await service.promote_release(runtime, slug, release_id, _actor(key))


@router.post("/rollback")
async def rollback(slug: str, key: AdminKey, runtime: RuntimeDep) -> AliasMove:
    return await service.rollback_release(runtime, slug, _actor(key))
