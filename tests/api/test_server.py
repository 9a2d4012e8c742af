"""The API as users run it: `taskmill api` in its own process (uvicorn on a free port),
over real HTTP and a real WebSocket, stopped by SIGTERM."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.api.servers import ApiServer
from tests.pg import free_port


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[ApiServer]]:
    started: list[ApiServer] = []
    yield started
    for server in started:
        server.close()
        print(f"--- {server.log_path.name} ---\n{server.log()[-3000:]}")


def start(servers: list[ApiServer], url: str, tmp_path: Path, **options: object) -> ApiServer:
    server = ApiServer(url, log_path=tmp_path / f"api-{len(servers)}.log", **options)  # type: ignore[arg-type]
    servers.append(server)
    server.wait_ready()
    return server


def test_a_real_server_serves_every_kind_of_request(
    database_url: str, tmp_path: Path, servers: list[ApiServer]
) -> None:
    base = start(servers, database_url, tmp_path).url
    with httpx.Client(base_url=base, timeout=10) as http:  # one kept-alive connection
        submitted = http.post("/api/tasks", json={"task": "add", "args": [2, 3]})
        assert submitted.status_code == 202
        job = submitted.json()
        assert http.get(submitted.headers["location"]).json()["id"] == job["id"]
        assert http.get("/api/tasks?limit=1").json()["jobs"][0]["id"] == job["id"]
        assert http.post(f"/api/tasks/{job['id']}/cancel").json()["status"] == "cancelled"
        assert http.post(f"/api/tasks/{job['id']}/cancel").status_code == 409
        assert http.get("/api/tasks/nope").status_code == 404
        bad = http.post("/api/tasks", json={"task": "nope"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "unknown_task"
        assert http.get("/api/stats").json()["totals"]["cancelled"] == 1
        assert "taskmill_jobs_enqueued_total" in http.get("/metrics").text
        assert http.get("/readyz").json()["status"] == "ready"
        page = http.get("/")
        assert page.headers["content-type"].startswith("text/html") and "<title>" in page.text
        assert http.get("/openapi.json").json()["info"]["title"] == "taskmill"
    with connect(base.replace("http://", "ws://") + "/api/stats/ws") as ws:
        assert json.loads(ws.recv(timeout=10))["totals"]["cancelled"] == 1
    assert servers[0].stop() == 0
    assert "Traceback" not in servers[0].log()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_real_server_with_api_keys(
    database_url: str, tmp_path: Path, servers: list[ApiServer]
) -> None:
    server = start(servers, database_url, tmp_path, env={"TASKMILL_API_KEYS": "s3cret, other"})
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/api/stats").status_code == 401
        assert http.get("/api/stats", headers={"authorization": "Bearer other"}).status_code == 200
        assert http.get("/healthz").status_code == 200
    ws_url = server.url.replace("http://", "ws://") + "/api/stats/ws"
    with pytest.raises(InvalidStatus), connect(ws_url):
        pass  # refused before the handshake completes
    with connect(ws_url + "?token=s3cret") as ws:
        assert "queues" in json.loads(ws.recv(timeout=10))
    assert server.stop() == 0


def test_a_real_server_answers_503_while_the_database_is_unreachable(
    tmp_path: Path, servers: list[ApiServer]
) -> None:
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    server = start(servers, unreachable, tmp_path)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        response = http.get("/readyz")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "store_unavailable"
        assert http.get("/healthz").status_code == 200
    assert server.stop() == 0
