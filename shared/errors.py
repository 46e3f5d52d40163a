"""Domain errors, and the one place that turns them into HTTP.

Service code raises a :class:`DomainError` subclass that names the kind of refusal (not found,
conflict, invalid, ...), created at the raise, with a message safe to show the client. It never
chooses an HTTP status: the status of each kind is declared here, and :func:`install_error_handlers`
answers every error with the same envelope ``{"error": {"code", "message"}}``.

Never keep an error instance at module level and raise it twice: each raise chains another
traceback onto the same object, keeping stack frames alive for the life of the process.
"""

from http import HTTPStatus
from typing import Any, ClassVar

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = structlog.get_logger(__name__)


class DomainError(Exception):
    """A refusal the client should see. Subclasses fix the kind (and so the status); ``code``
    is the machine-readable reason, ``message`` the human one."""

    status: ClassVar[int] = 400
    default_code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.headers = headers


class BadRequest(DomainError):
    status, default_code = 400, "bad_request"


class Unauthenticated(DomainError):
    """No valid credentials: the client should (re-)authenticate."""

    status, default_code = 401, "unauthorized"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message, code=code, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(DomainError):
    status, default_code = 403, "forbidden"


class NotFound(DomainError):
    """Missing, or another user's: the two must look the same."""

    status, default_code = 404, "not_found"


class RequestTimeout(DomainError):
    """The client did not send its request (body) in time."""

    status, default_code = 408, "request_timeout"


class Conflict(DomainError):
    status, default_code = 409, "conflict"


class TooLarge(DomainError):
    status, default_code = 413, "payload_too_large"


class UnsupportedMediaType(DomainError):
    status, default_code = 415, "unsupported_media_type"


class Invalid(DomainError):
    """Well-formed but unacceptable input."""

    status, default_code = 422, "validation_error"


class RateLimited(DomainError):
    status, default_code = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class UpstreamFailed(DomainError):
    """Something we depend on (another service, Google) answered badly."""

    status, default_code = 502, "bad_gateway"


class Unavailable(DomainError):
    """Something we depend on is down, or a feature is not configured."""

    status, default_code = 503, "service_unavailable"


class UpstreamTimeout(DomainError):
    status, default_code = 504, "upstream_timeout"


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(error_body(code, message, **extra), status_code=status, headers=headers)


def domain_error_response(exc: DomainError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message, exc.headers)


def _code_for(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


async def _domain_error(_: Request, exc: DomainError) -> JSONResponse:
    return domain_error_response(exc)


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return error_response(exc.status_code, _code_for(exc.status_code), message, exc.headers)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    details = [
        {"loc": [str(part) for part in err.get("loc", ())], "message": err.get("msg", "")}
        for err in exc.errors()
    ]
    first = details[0] if details else {"loc": [], "message": "invalid request"}
    message = f"{'.'.join(first['loc'][1:]) or 'request'}: {first['message']}"
    return error_response(422, "validation_error", message, details=details)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled_error", error_type=type(exc).__name__)
    return error_response(500, "internal_error", "Internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
