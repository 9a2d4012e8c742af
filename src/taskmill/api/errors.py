"""How every failure reaches a client: `{"error": {"code", "message"}}` with the right status.

Bad input is 4xx, never 500. A 5xx means the server itself is broken: 503 when the
database cannot be reached or answers with an error (worth retrying), 500 for a bug."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError as PydanticValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from taskmill.api.schemas import ErrorDetail, ErrorInfo, ErrorResponse
from taskmill.errors import (
    ConfigError,
    InvalidTransition,
    JobNotFound,
    StoreError,
    StoreUnavailable,
    TaskmillError,
    UnknownTaskError,
    ValidationError,
)
from taskmill.images.errors import (
    ImageTooLarge,
    StorageError,
    UnreadableImage,
    UnsupportedImage,
    UploadTooLarge,
)
from taskmill.webhooks import WebhookRefused

log = logging.getLogger("taskmill.api")

JSON = "application/json"
MAX_DETAILS = 20

# Most specific first: the first class an exception is an instance of decides.
_TASKMILL_ERRORS: tuple[tuple[type[TaskmillError], int, str], ...] = (
    (UploadTooLarge, 413, "payload_too_large"),
    (UnsupportedImage, 415, "unsupported_media_type"),
    (ImageTooLarge, 422, "image_too_large"),
    (UnreadableImage, 422, "unreadable_image"),
    (StorageError, 503, "storage_unavailable"),
    (WebhookRefused, 422, "invalid_webhook_url"),
    (UnknownTaskError, 422, "unknown_task"),
    (ValidationError, 422, "validation_error"),
    (JobNotFound, 404, "not_found"),
    (InvalidTransition, 409, "invalid_transition"),
    (StoreUnavailable, 503, "store_unavailable"),
    (StoreError, 503, "store_error"),
    (ConfigError, 500, "config_error"),
)
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
}


class ApiError(Exception):
    """Raised inside the API for a response that is not a taskmill error."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def error_bytes(code: str, message: str, details: Sequence[ErrorDetail] | None = None) -> bytes:
    body = ErrorResponse(
        error=ErrorInfo(code=code, message=message, details=list(details) if details else None)
    )
    return body.model_dump_json(exclude_none=True).encode()


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    details: Sequence[ErrorDetail] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        error_bytes(code, message, details), status_code=status, media_type=JSON, headers=headers
    )


def classify(exc: TaskmillError) -> tuple[int, str]:
    """(status, code) for a taskmill error; anything unforeseen is the server's fault."""
    for kind, status, code in _TASKMILL_ERRORS:
        if isinstance(exc, kind):
            return status, code
    return 500, "internal_error"


def taskmill_error_response(exc: TaskmillError) -> Response:
    status, code = classify(exc)
    if status >= 500:
        log.error("%s: %s", code, exc, extra={"action": f"api_{code}"})
    return error_response(status, code, str(exc))


def validation_details(
    errors: Sequence[Mapping[str, Any]], *, prefix: tuple[str, ...] = ()
) -> list[ErrorDetail]:
    """pydantic's error list as ErrorDetails; the input values are not echoed back."""
    details = []
    for error in errors[:MAX_DETAILS]:
        message = str(error.get("msg", "invalid"))
        context = error.get("ctx") or {}
        if error.get("type") == "json_invalid" and str(context.get("error", "")) not in message:
            message = (
                f"{message}: {context['error']}"  # FastAPI's own says only "JSON decode error"
            )
        loc = [*prefix, *error.get("loc", ())]
        details.append(
            ErrorDetail(loc=[p if isinstance(p, int) else str(p) for p in loc], message=message)
        )
    return details


def validation_response(details: list[ErrorDetail]) -> Response:
    summary = "; ".join(
        f"{'.'.join(str(p) for p in d.loc) or 'request'}: {d.message}" for d in details[:3]
    )
    return error_response(422, "validation_error", summary or "invalid request", details=details)


def pydantic_error_response(exc: PydanticValidationError) -> Response:
    """A request body that failed its model, parsed by our own code (see fastpath)."""
    return validation_response(validation_details(exc.errors(), prefix=("body",)))


# -- FastAPI exception handlers ---------------------------------------------------------


async def _on_taskmill_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TaskmillError)
    return taskmill_error_response(exc)


async def _on_api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, headers=exc.headers)


async def _on_request_validation(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return validation_response(validation_details(exc.errors()))


async def _on_http_exception(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return error_response(exc.status_code, code, message, headers=exc.headers)


def unexpected_error_response(exc: Exception) -> Response:
    """A bug: the client learns only that; the traceback goes to the server's log."""
    log.error("unexpected error: %r", exc, extra={"action": "api_internal_error"})
    return error_response(500, "internal_error", "internal server error")


async def _on_unexpected(_request: Request, exc: Exception) -> Response:
    return unexpected_error_response(exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TaskmillError, _on_taskmill_error)
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(HTTPException, _on_http_exception)
    app.add_exception_handler(Exception, _on_unexpected)
