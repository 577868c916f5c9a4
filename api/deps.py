"""FastAPI dependencies as `Annotated` aliases, so routes stay one-liners."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from api.errors import PermissionDenied
from api.metrics import Metrics
from api.models import ApiKey
from api.services.chat import ChatService
from api.services.keys import authenticate
from api.settings import Settings


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    """A session per request that commits on success and rolls back on error."""
    with request.app.state.sessions() as session, session.begin():
        yield session


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]


def current_key(request: Request, session: SessionDep) -> ApiKey:
    settings: Settings = request.app.state.settings
    return authenticate(session, bearer_token(request), bootstrap_admin=bootstrap_admin_secret(settings))


def bootstrap_admin_secret(settings: Settings) -> str | None:
    return settings.admin_key.get_secret_value() if settings.admin_key is not None else None


CurrentKey = Annotated[ApiKey, Depends(current_key)]


def admin_key(key: CurrentKey) -> ApiKey:
    if not key.is_admin:
        raise PermissionDenied("This endpoint needs an admin API key.")
    return key


AdminKey = Annotated[ApiKey, Depends(admin_key)]


# async: a plain `def` dependency would cost a thread-pool hop on every chat request.
async def get_chat_service(request: Request) -> ChatService:
    return request.app.state.chat


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
