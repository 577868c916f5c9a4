"""Who is looking at a staff page: the session cookie, the CSRF check on every form and htmx post,
and the redirect to the login page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from api.deps import SessionDep
from api.services.access.staff import Actor
from api.services.access.staff_sessions import (
    CSRF_FIELD,
    CSRF_HEADER,
    SAFE_METHODS,
    SESSION_COOKIE,
    SessionCodec,
    csrf_ok,
    resolve_session,
)
from review_ui.rendering import render


class LoginRequired(Exception):
    """Not logged in (or the session ended): go to the login page, then back."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class CsrfFailed(Exception):
    pass


@dataclass(frozen=True)
class Viewer:
    """The staff member viewing a page, and the CSRF token their forms carry."""

    actor: Actor
    csrf: str


def codec(request: Request) -> SessionCodec:
    return SessionCodec.from_settings(request.app.state.settings)


async def check_csrf(request: Request) -> None:
    """Unsafe requests must carry the session's CSRF token (form field or htmx header)."""
    if request.method in SAFE_METHODS:
        return
    data = codec(request).read(request.cookies.get(SESSION_COOKIE))
    if data is None:
        raise LoginRequired(_back_to(request))
    token = request.headers.get(CSRF_HEADER)
    if token is None:
        form = await request.form()  # parsed once per request; the route reads the same form
        value = form.get(CSRF_FIELD)
        token = value if isinstance(value, str) else None
    if not csrf_ok(data.csrf, token):
        raise CsrfFailed()


def current_viewer(
    request: Request, session: SessionDep, _: Annotated[None, Depends(check_csrf)]
) -> Viewer:
    resolved = resolve_session(session, codec(request), request.cookies.get(SESSION_COOKIE))
    if resolved is None:
        raise LoginRequired(_back_to(request))
    actor, data = resolved
    return Viewer(actor, data.csrf)


ViewerDep = Annotated[Viewer, Depends(current_viewer)]


def _back_to(request: Request) -> str:
    # After a POST the page to come back to is the one it was sent from; a GET is itself that page.
    if request.method in SAFE_METHODS:
        return request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/review/queue"


def safe_next(url: str | None) -> str:
    """Only paths inside the review UI are followed after login (no open redirect)."""
    if url and url.startswith("/review") and not url.startswith("//") and "\\" not in url:
        return url
    return "/review/queue"


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        target = f"/review/login?next={quote(exc.next_url, safe='')}"
        if request.headers.get("HX-Request"):
            return Response(status_code=204, headers={"HX-Redirect": target})
        response = RedirectResponse(target, status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.exception_handler(CsrfFailed)
    async def _csrf(request: Request, exc: CsrfFailed) -> Response:
        return render(
            request,
            "error.html",
            {
                "title": "Form expired",
                "message": "This form was not accepted (its security token is missing or out of date). "
                "Go back, reload the page and try again.",
            },
            status_code=403,
        )
