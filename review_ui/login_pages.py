"""Logging in and out of the review UI."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from api.deps import SessionDep
from api.errors import ApiError
from api.services.access.staff_sessions import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    csrf_ok,
    log_in,
    log_out,
    login_throttle,
)
from review_ui.auth import ViewerDep, codec, safe_next
from review_ui.rendering import render

router = APIRouter(prefix="/review", include_in_schema=False)


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    # Login CSRF: the form carries a token that must match a cookie set with it (double submit).
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        {"next": safe_next(next), "csrf": token, "error": None, "email": "", "title": "Log in"},
    )
    _set_login_cookie(request, response, token)
    return response


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1000)],
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = "",
    next: Annotated[str, Form()] = "/review/queue",
) -> Response:
    settings = request.app.state.settings
    error = None
    status = 400
    if not csrf_ok(request.cookies.get(LOGIN_CSRF_COOKIE, ""), csrf_token):
        error = "The login form expired; please try again."
    else:
        try:
            cookie, _, _ = log_in(
                session,
                codec(request),
                login_throttle(request.app.state),
                email=email,
                password=password,
                client=request.client.host if request.client else "?",
            )
        except ApiError as exc:
            error = exc.message
            status = exc.status_code  # 401 wrong password, 429 locked out for a while
    if error is not None:
        token = secrets.token_urlsafe(24)
        context = {
            "next": safe_next(next),
            "csrf": token,
            "error": error,
            "title": "Log in",
            "email": email,
        }
        response = render(request, "login.html", context, status_code=status)
        _set_login_cookie(request, response, token)
        return response
    redirect = RedirectResponse(safe_next(next), status_code=303)
    redirect.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=settings.session_ttl_s,
        httponly=True,
        secure=settings.secure_cookies,
        samesite="lax",
        path="/",
    )
    redirect.delete_cookie(LOGIN_CSRF_COOKIE, path="/review")
    return redirect


@router.post("/logout")
def logout(_: ViewerDep, request: Request, session: SessionDep) -> Response:
    log_out(session, codec(request), request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/review/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _set_login_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        secure=request.app.state.settings.secure_cookies,
        samesite="strict",
        path="/review",
    )
