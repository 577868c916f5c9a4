"""The one error envelope, OpenAI's: `{"error": {"message", "type", "param", "code"}}`.

Services raise `ApiError` subclasses; `install_error_handlers` maps those, request-validation errors,
HTTP errors and anything unexpected to the envelope, so every error a client sees has the same shape.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

log = logging.getLogger(__name__)


class ApiError(Exception):
    status_code = 400
    type = "invalid_request_error"
    code: str | None = None
    headers: dict[str, str] | None = None  # e.g. Retry-After on a 429

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def envelope(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


class InvalidRequest(ApiError):
    pass


class AuthenticationFailed(ApiError):
    status_code = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(ApiError):
    status_code = 403
    type = "permission_error"
    code = "forbidden"


class NotFound(ApiError):
    status_code = 404
    type = "not_found_error"
    code = "not_found"


class Conflict(ApiError):
    status_code = 409
    type = "invalid_request_error"
    code = "conflict"


class UpstreamFailed(ApiError):
    status_code = 502
    type = "upstream_error"
    code = "backend_error"


class UpstreamTimeout(ApiError):
    status_code = 504
    type = "upstream_error"
    code = "backend_timeout"


class Unavailable(ApiError):
    status_code = 503
    type = "service_unavailable"
    code = "unavailable"


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorEnvelope(BaseModel):
    """Every error the API answers, whatever the status."""

    error: ErrorDetail


_ERROR = {"model": ErrorEnvelope}
#: What any operation may answer besides its success, as the OpenAPI document says.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {**_ERROR, "description": "Bad input: malformed JSON, wrong types, values out of range."},
    401: {**_ERROR, "description": "Missing, unknown or revoked key."},
    403: {**_ERROR, "description": "The key (or origin) may not do this."},
    404: {**_ERROR, "description": "No such bot, or nothing with this id."},
    409: {**_ERROR, "description": "In conflict with the current state."},
    413: {**_ERROR, "description": "The request body is over the size limit."},
    429: {**_ERROR, "description": "Rate limited; see Retry-After."},
    503: {**_ERROR, "description": "A dependency (database, vector store) is unavailable."},
}


def error_body(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


async def send_error(
    send: Send,
    status: int,
    message: str,
    code: str,
    *,
    param: str | None = None,
    close: bool = False,
) -> None:
    """Answer in the envelope from an ASGI middleware (before any route runs); `close` ends the
    connection (the rest of a refused body is not read)."""
    body = json.dumps(error_body(message, _STATUS_TYPES[status], param, code)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None, str]:
    errors = exc.errors()
    if not errors:
        return "Invalid request.", None, "invalid_request"
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    if first.get("type") == "json_invalid":
        return "The request body is not valid JSON.", None, "invalid_json"
    msg = first.get("msg", "Invalid value")
    where = f" at '{param}'" if param else ""
    extra = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{msg}{where}{extra}.", param, "invalid_value"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.envelope(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param, code = _validation_message(exc)
        return JSONResponse(
            error_body(message, "invalid_request_error", param, code), status_code=400
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = _STATUS_TYPES.get(
            exc.status_code, "server_error" if exc.status_code >= 500 else "invalid_request_error"
        )
        return JSONResponse(
            error_body(str(exc.detail), type_, None, None),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(PoolTimeout)
    async def _database_down(_: Request, exc: Exception) -> JSONResponse:
        # The database is unreachable (or went away mid-request): not the client's fault, and
        # worth a retry, unlike a bug.
        log.warning("database unavailable: %s", str(exc).splitlines()[0][:300])
        return JSONResponse(
            error_body(
                "The database is unavailable; try again shortly.",
                "service_unavailable",
                None,
                "database_unavailable",
            ),
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(DataError)
    async def _unstorable(_: Request, exc: DataError) -> JSONResponse:
        # The database refused a value the request carried (PostgreSQL: a NUL character in text);
        # the transaction rolled back, so nothing of the request was stored.
        reason = str(exc.orig or exc).strip().splitlines()[0][:300]
        return JSONResponse(
            error_body(
                f"A value cannot be stored: {reason}.",
                "invalid_request_error",
                None,
                "unstorable_value",
            ),
            status_code=400,
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(
            error_body("Internal server error.", "server_error", None, "internal_error"),
            status_code=500,
        )
