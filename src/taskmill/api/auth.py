"""Bearer-token auth from TASKMILL_API_KEYS. Without keys every request is allowed (and
`taskmill api` refuses to listen beyond loopback unless told --insecure)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

from fastapi import Depends, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.websockets import WebSocket

from taskmill.api.errors import ApiError

UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "Bearer"}


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class KeyChecker:
    """Compares a presented token with every key in constant time: both sides are hashed
    first (so neither the length nor the content of a key leaks through timing), and every
    key is compared even after a match."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._digests = [_digest(k) for k in keys if k]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def allows(self, token: str | None) -> bool:
        if not self._digests:
            return True
        if token is None:
            return False
        presented = _digest(token)
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(presented, digest)
        return matched

    def allows_header(self, authorization: str | None) -> bool:
        return self.allows(bearer_token(authorization))

    def allows_websocket(self, websocket: WebSocket) -> bool:
        """Browsers cannot set headers on a WebSocket, so `?token=` is accepted too."""
        token = bearer_token(websocket.headers.get("authorization"))
        return self.allows(token or websocket.query_params.get("token"))


def unauthorized() -> ApiError:
    return ApiError(
        401, "unauthorized", "a valid API key is required (Authorization: Bearer <key>)",
        headers=UNAUTHORIZED_HEADERS,
    )  # fmt: skip


def api_key_dependencies(checker: KeyChecker) -> list[Any]:
    """Dependencies for every /api route: none without keys (and then the OpenAPI schema
    declares no security), else a bearer check that /docs can fill in."""
    if not checker.enabled:
        return []
    scheme = HTTPBearer(auto_error=False, description="One of TASKMILL_API_KEYS")

    async def require_key(
        credentials: HTTPAuthorizationCredentials | None = Security(scheme),  # noqa: B008
    ) -> None:
        if not checker.allows(credentials.credentials if credentials else None):
            raise unauthorized()

    return [Depends(require_key)]
