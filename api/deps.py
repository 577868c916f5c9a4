"""FastAPI dependencies as `Annotated` aliases, so routes stay one-liners."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from api.errors import PermissionDenied
from api.models import ApiKey
from api.runtime import Runtime
from api.services.access.keys import authenticate
from api.settings import Settings


def get_session(request: Request) -> Iterator[Session]:
    """A session per request that commits on success and rolls back on error, before the response
    is sent (`scope="function"` below): a client never sees a success its write did not have, and
    the after-commit hook has run by the next request."""
    with request.app.state.sessions() as session, session.begin():
        yield session


def bearer_token(request: Request) -> str | None:
    """The request's API key. Refused when a browser sent it (an `Origin` header): a key in a web
    page is a key anyone can read. Web pages use the widget's publishable keys, on its own routes."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    if "origin" in request.headers:
        raise PermissionDenied(
            "API keys are not accepted from web pages (this request carries an Origin header): "
            "keep secret keys on your server, and embed the support widget with a publishable key.",
            code="key_from_browser",
        )
    return token.strip()


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def current_key(request: Request, session: SessionDep) -> ApiKey:
    settings: Settings = request.app.state.settings
    return authenticate(
        session, bearer_token(request), bootstrap_admin=bootstrap_admin_secret(settings)
    )


def bootstrap_admin_secret(settings: Settings) -> str | None:
    return settings.admin_key.get_secret_value() if settings.admin_key is not None else None


CurrentKey = Annotated[ApiKey, Depends(current_key)]


def admin_key(key: CurrentKey) -> ApiKey:
    if not key.is_admin:
        raise PermissionDenied("This endpoint needs an admin API key.")
    return key


AdminKey = Annotated[ApiKey, Depends(admin_key)]


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
