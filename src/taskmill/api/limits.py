"""Request size limits that answer with the API's error body.

Routes declare their limit to FastAPI (`max_body_size`), which enforces it while the body
streams in; but a request that *declares* a larger Content-Length gets Starlette's plain
text 413 before any handler runs. This middleware answers those first, in JSON."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from taskmill.api.errors import error_response


class DeclaredSizeLimit:
    def __init__(self, app: ASGIApp, *, limits: dict[tuple[str, str], int]) -> None:
        """`limits`: (method, path) -> the largest body, in bytes, that route accepts."""
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            limit = self.limits.get((scope["method"], scope["path"]))
            if limit is not None and _declared_length(scope) > limit:
                response = error_response(
                    413, "payload_too_large", f"the request body may be at most {limit} bytes"
                )
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


def _declared_length(scope: Scope) -> int:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0  # not a length: the server rejects the request anyway
    return 0
