"""API keys: with TASKMILL_API_KEYS set, every /api route, the stats WebSocket and /metrics
need a valid bearer token; health checks and the docs stay open."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from taskmill.api import create_app
from taskmill.api.auth import KeyChecker, bearer_token
from tests.api.conftest import app_with_keys

KEYS = ("key-one", "key-two")
SOME_ID = "01930000-0000-7000-8000-000000000000"
PROTECTED = [
    ("POST", "/api/tasks"),
    ("GET", f"/api/tasks/{SOME_ID}"),
    ("GET", "/api/tasks"),
    ("POST", f"/api/tasks/{SOME_ID}/cancel"),
    ("POST", f"/api/tasks/{SOME_ID}/retry"),
    ("GET", "/api/stats"),
    ("GET", "/metrics"),
]


@pytest.fixture(scope="module", params=["fast", "routes"])
def keyed(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[TestClient]:
    app = app_with_keys(f"sqlite:///{tmp_path_factory.mktemp('auth')}/taskmill.db", *KEYS)
    app.migrate()
    with TestClient(create_app(app, fast_path=request.param == "fast")) as client:
        yield client
    app.close()


def call(client: TestClient, method: str, path: str, token: str | None) -> int:
    headers = {"authorization": token} if token is not None else {}
    body = {"task": "add", "args": [1, 2]} if method == "POST" and path == "/api/tasks" else None
    return client.request(method, path, json=body, headers=headers).status_code


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize(
    "token", [None, "", "Bearer", "Bearer wrong", "Basic key-one", "Bearer key-one-and-more"]
)
def test_every_api_route_refuses_a_missing_or_wrong_key(
    keyed: TestClient, method: str, path: str, token: str | None
) -> None:
    headers = {"authorization": token} if token is not None else {}
    response = keyed.request(method, path, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_key_opens_every_api_route(keyed: TestClient, method: str, path: str) -> None:
    for key in KEYS:
        assert call(keyed, method, path, f"Bearer {key}") != 401
    assert call(keyed, method, path, f"bearer   {KEYS[1]} ") != 401  # scheme is case-blind


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/docs", "/openapi.json", "/"])
def test_health_docs_and_home_stay_open(keyed: TestClient, path: str) -> None:
    assert keyed.get(path).status_code == 200


def test_the_websocket_needs_a_key_in_a_header_or_the_query(keyed: TestClient) -> None:
    for path in ("/api/stats/ws", "/api/stats/ws?token=wrong"):
        with pytest.raises(WebSocketDisconnect) as refused, keyed.websocket_connect(path) as ws:
            ws.receive_json()
        assert refused.value.code == 1008
    headers = {"authorization": f"Bearer {KEYS[0]}"}
    with keyed.websocket_connect("/api/stats/ws", headers=headers) as ws:
        assert "queues" in ws.receive_json()
    with keyed.websocket_connect(f"/api/stats/ws?token={KEYS[1]}") as ws:
        assert "queues" in ws.receive_json()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_schema_declares_bearer_auth_only_when_keys_are_set(
    keyed: TestClient, client: TestClient
) -> None:
    with_keys = keyed.get("/openapi.json").json()
    assert with_keys["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "401" in with_keys["paths"]["/api/tasks"]["post"]["responses"]
    without = client.get("/openapi.json").json()
    assert "securitySchemes" not in without.get("components", {})
    assert "401" not in without["paths"]["/api/tasks"]["post"]["responses"]


def test_key_checker() -> None:
    checker = KeyChecker(["a-key", "", "other"])
    assert checker.enabled
    assert checker.allows("a-key") and checker.allows("other")
    assert not checker.allows("a-ke") and not checker.allows("a-key ") and not checker.allows("")
    assert not checker.allows(None)
    assert not KeyChecker([]).enabled and KeyChecker([]).allows(None)
    assert bearer_token("Bearer  abc ") == "abc"
    assert bearer_token("Token abc") is None and bearer_token("Bearer ") is None
