"""create_app(): the HTTP API of one taskmill app, as an ASGI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from taskmill.api.auth import KeyChecker, api_key_dependencies
from taskmill.api.errors import install_error_handlers
from taskmill.api.fastpath import FastPath
from taskmill.api.limits import DeclaredSizeLimit
from taskmill.api.prometheus import metrics_registry
from taskmill.api.ratelimit import RateLimiter
from taskmill.api.routes import health, media, metrics, pages, registry, stats, tasks, workers
from taskmill.api.routes import images as images_routes
from taskmill.api.schemas import MAX_SUBMIT_BYTES
from taskmill.api.service import ApiService
from taskmill.api.uploads import MULTIPART_OVERHEAD_BYTES
from taskmill.app import Taskmill
from taskmill.images.service import image_service
from taskmill.images.storage import FileStorage

DESCRIPTION = """\
Submit jobs, follow them, cancel and retry them; watch queues and workers.

Errors are `{"error": {"code": "...", "message": "..."}}` with the matching status. With
`TASKMILL_API_KEYS` set, every `/api` route (and `/metrics`) needs
`Authorization: Bearer <key>`.
"""


class TaskmillAPI(FastAPI):
    """FastAPI, with the fast path (see taskmill.api.fastpath) in front of everything."""

    fast_path: FastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_path
        handler = fast.route(scope) if fast is not None and scope["type"] == "http" else None
        if fast is None or handler is None:
            await super().__call__(scope, receive, send)
        else:
            await fast.serve(handler, scope, receive, send)


def create_app(
    app: Taskmill,
    *,
    stats_push_interval_s: float = 2.0,
    stats_max_age_s: float = 1.0,
    fast_path: bool = True,
) -> FastAPI:
    """The API over `app`'s store and tasks. API keys come from `app.settings.api_keys`.

    `stats_push_interval_s` is how often the stats WebSocket pushes; `stats_max_age_s` how
    old a shared stats snapshot may be. `fast_path=False` serves every request through the
    FastAPI routes (the fast path serves the same answers, faster; tests run both)."""
    service = ApiService(app, stats_max_age_s=stats_max_age_s)
    keys = KeyChecker(app.settings.api_keys)
    deps = api_key_dependencies(keys)
    auth_errors = (401,) if keys.enabled else ()

    @asynccontextmanager
    async def lifespan(_api: FastAPI) -> AsyncIterator[None]:
        yield
        await service.close()  # answer every submit already accepted before exiting

    api = TaskmillAPI(
        title="taskmill",
        version=version("taskmill"),
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    api.state.service = service
    install_error_handlers(api)
    api.include_router(tasks.router(service, deps, auth_errors))
    api.include_router(stats.router(service, deps, auth_errors, keys, stats_push_interval_s))
    api.include_router(metrics.router(metrics_registry(service.stats), deps, auth_errors))
    api.include_router(workers.router(service, deps, auth_errors))
    api.include_router(registry.router(app.tasks, deps, auth_errors))
    images = image_service(app)
    api.include_router(pages.router(keys, images=images.enabled))
    api.include_router(health.router(service, images.check_storage if images.enabled else None))
    if images.enabled:
        limit = app.settings.upload_rate_limit
        limiter = RateLimiter(limit) if limit else None
        api.include_router(images_routes.router(images, deps, auth_errors, limiter))
        if images.settings.storage_url.startswith("file:"):  # S3 presigns its own URLs
            assert isinstance(images.storage, FileStorage)  # what a file: URL opens
            api.include_router(media.router(images.storage))
    api.fast_path = FastPath(service=service, keys=keys) if fast_path else None
    limits = {
        ("POST", "/api/tasks"): MAX_SUBMIT_BYTES,
        ("POST", "/api/images"): app.settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
    }
    api.add_middleware(DeclaredSizeLimit, limits=limits)
    return api
