"""The HTTP API: `create_app(taskmill_app)` is an ASGI application (FastAPI)."""

from __future__ import annotations

from taskmill.api.app import create_app

__all__ = ["create_app"]
