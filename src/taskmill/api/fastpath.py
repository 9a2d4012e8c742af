"""The two hottest operations, served without FastAPI's per-request machinery.

`POST /api/tasks` (JSON) and `GET /api/tasks/{id}` are most of the traffic. FastAPI spends
~100-200 us of CPU per request on its middleware stack, routing, dependency solving and
response handling (measured on the 2-core bench machine), more than a submit itself costs;
a raw ASGI handler spends ~5 us. `TaskmillAPI` (the FastAPI app `create_app` returns) hands
those two requests to `FastPath` before any of that, which answers them with the same
ApiService methods, models, auth and error bodies as the FastAPI routes. The routes stay the
documented (OpenAPI) definition and serve everything else: other methods, other content
types, every other path, and everything when the fast path is off.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pydantic import ValidationError as PydanticValidationError
from starlette.types import Receive, Scope, Send

from taskmill.api.auth import KeyChecker, unauthorized
from taskmill.api.errors import (
    error_response,
    pydantic_error_response,
    taskmill_error_response,
    unexpected_error_response,
)
from taskmill.api.schemas import MAX_SUBMIT_BYTES, SubmitRequest, job_json
from taskmill.api.service import ApiService
from taskmill.errors import TaskmillError

TASKS = "/api/tasks"
TASK_PREFIX = "/api/tasks/"
_JSON_HEADERS = [(b"content-type", b"application/json")]

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _is_json(content_type: bytes | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


class FastPath:
    def __init__(self, *, service: ApiService, keys: KeyChecker) -> None:
        self.service = service
        self.keys = keys

    def route(self, scope: Scope) -> Handler | None:
        """The handler for this HTTP request, or None when FastAPI should serve it."""
        path, method = scope["path"], scope["method"]
        if method == "POST" and path == TASKS:
            return self._submit if _is_json(_header(scope, b"content-type")) else None
        job_id = path[len(TASK_PREFIX) :] if path.startswith(TASK_PREFIX) else ""
        if method == "GET" and job_id and "/" not in job_id:
            return self._get
        return None

    async def serve(self, handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        """Run `handler` with the API's auth and error handling (outside FastAPI's, so a
        bug answers 500 with the error body here too)."""
        if not self.keys.allows_header(_decoded(_header(scope, b"authorization"))):
            error = unauthorized()
            response = error_response(
                error.status, error.code, error.message, headers=error.headers
            )
            return await response(scope, receive, send)
        try:
            await handler(scope, receive, send)
        except TaskmillError as exc:
            await taskmill_error_response(exc)(scope, receive, send)
        except Exception as exc:
            await unexpected_error_response(exc)(scope, receive, send)
            raise  # the server logs it, as it does for the routes

    async def _submit(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive, MAX_SUBMIT_BYTES)
        if body is None:
            response = error_response(
                413,
                "payload_too_large",
                f"the request body may be at most {MAX_SUBMIT_BYTES} bytes",
            )
            return await response(scope, receive, send)
        try:
            request = SubmitRequest.model_validate_json(body)
        except PydanticValidationError as exc:
            return await pydantic_error_response(exc)(scope, receive, send)
        job = await self.service.submit(request)
        location = f"{TASK_PREFIX}{job.id}".encode()
        await _send_json(send, 202, job_json(job), [(b"location", location)])

    async def _get(self, scope: Scope, receive: Receive, send: Send) -> None:
        job = await self.service.get(scope["path"][len(TASK_PREFIX) :])
        await _send_json(send, 200, job_json(job))


def _decoded(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it exceeds `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""  # the client disconnected; what we answer goes nowhere
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *_JSON_HEADERS,
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
