"""When the server itself is broken: 503 when the database is unreachable or not migrated,
500 for a bug — always with the error body, on every route, both ways of serving."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from taskmill import Taskmill
from taskmill.api import create_app
from taskmill.errors import StoreError, StoreUnavailable
from tests.helpers import make_app

SOME_ID = "01930000-0000-7000-8000-000000000000"
ROUTES = [
    ("POST", "/api/tasks"),
    ("GET", f"/api/tasks/{SOME_ID}"),
    ("GET", "/api/tasks"),
    ("POST", f"/api/tasks/{SOME_ID}/cancel"),
    ("POST", f"/api/tasks/{SOME_ID}/retry"),
    ("GET", "/api/stats"),
    ("GET", "/metrics"),
    ("GET", "/readyz"),
]


class BrokenStore:
    """Every call raises `error`, as a store whose database is gone would."""

    dialect = "sqlite"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def fail(*_args: Any, **_kwargs: Any) -> Any:
            raise self.error

        return fail


def broken_app(tmp_path: Path, error: Exception) -> Taskmill:
    app = make_app(f"sqlite:///{tmp_path}/unused.db")
    app._store = BrokenStore(error)  # the app's store, broken
    return app


def request(client: TestClient, method: str, path: str) -> Any:
    body = {"task": "add", "args": [1, 2]} if path == "/api/tasks" and method == "POST" else None
    return client.request(method, path, json=body)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (StoreUnavailable("PostgreSQL unreachable: connection refused"), "store_unavailable"),
        (StoreError("SQLite: disk I/O error"), "store_error"),
    ],
)
def test_a_database_failure_is_503_on_every_route(
    tmp_path: Path, serving: str, error: Exception, code: str
) -> None:
    app = broken_app(tmp_path, error)
    with TestClient(create_app(app, fast_path=serving == "fast")) as client:
        for method, path in ROUTES:
            response = request(client, method, path)
            assert response.status_code == 503, (method, path, response.text)
            assert response.json()["error"] == {"code": code, "message": str(error)}
        assert client.get("/healthz").status_code == 200  # alive, just not ready
        with (
            pytest.raises(WebSocketDisconnect) as closed,
            client.websocket_connect("/api/stats/ws") as ws,
        ):
            ws.receive_json()
        assert closed.value.code == 1013  # try again later


def test_a_bug_is_500_with_the_error_body(tmp_path: Path, serving: str) -> None:
    app = broken_app(tmp_path, RuntimeError("a bug"))
    client = TestClient(create_app(app, fast_path=serving == "fast"), raise_server_exceptions=False)
    with client:
        for method, path in ROUTES:
            response = request(client, method, path)
            assert response.status_code == 500, (method, path)
            error = response.json()["error"]
            assert error == {"code": "internal_error", "message": "internal server error"}


def test_readyz_says_when_the_schema_is_not_migrated(tmp_path: Path) -> None:
    app = make_app(f"sqlite:///{tmp_path}/empty.db")
    with TestClient(create_app(app)) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "not_ready" and "taskmill migrate" in error["message"]
        app.migrate()
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
    app.close()
