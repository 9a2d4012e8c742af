"""/api/images in process: what the API refuses, and the limits it enforces, before any
work is done. (The path through real processes is tests/images/test_end_to_end.py.)"""

from __future__ import annotations

import shutil
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from taskmill import Taskmill
from taskmill.api import create_app
from taskmill.api.schemas import ImageOut
from taskmill.config import RateLimit
from tests.images.helpers import make_image_app, write_jpeg


def make_client(tmp_path: Path, **settings: Any) -> tuple[Taskmill, TestClient]:
    app = make_image_app(f"sqlite:///{tmp_path}/t.db", tmp_path / "media", **settings)
    app.migrate()
    client = TestClient(create_app(app))
    client.__enter__()
    return app, client


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[Taskmill, TestClient]]:
    app, client = make_client(tmp_path)
    yield app, client
    client.__exit__(None, None, None)
    app.close()


def post(client: TestClient, path: Path, headers: dict[str, str] | None = None,
         **fields: str) -> Any:  # fmt: skip
    with path.open("rb") as f:
        return client.post("/api/images", files={"file": (path.name, f)}, data=fields,
                           headers=headers)  # fmt: skip


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose header claims `width` x `height` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def test_a_pixel_bomb_is_refused_from_its_header(
    api: tuple[Taskmill, TestClient], tmp_path: Path
) -> None:
    app, client = api
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_declaring(100_000, 100_000))

    response = post(client, bomb)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "image_too_large"
    assert "100000" in error["message"].replace(",", "").replace("_", "")
    assert app.list() == []


def test_the_same_idempotency_key_header_returns_the_same_image(
    api: tuple[Taskmill, TestClient], tmp_path: Path
) -> None:
    _, client = api
    photo = write_jpeg(tmp_path / "p.jpg", 120, 80)
    first = post(client, photo, headers={"Idempotency-Key": "k-1"})
    again = post(client, photo, headers={"Idempotency-Key": "k-1"})
    other = post(client, photo, headers={"Idempotency-Key": "k-2"})

    assert first.status_code == again.status_code == other.status_code == 202
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]
    ImageOut.model_validate(first.json())
    listed = client.get("/api/images").json()
    assert len(listed["images"]) == 2 and listed["next_cursor"] is None


def test_webhooks_to_private_addresses_are_refused_by_default(tmp_path: Path) -> None:
    app, client = make_client(tmp_path, webhook_allow_private=False)
    photo = write_jpeg(tmp_path / "p.jpg", 64, 64)
    try:
        for target in ("http://127.0.0.1/hook", "http://169.254.169.254/latest", "ftp://x.test/"):
            response = post(client, photo, webhook_url=target)
            assert response.status_code == 422, (target, response.text)
        assert app.list() == []
    finally:
        client.__exit__(None, None, None)
        app.close()


def test_the_upload_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    app, client = make_client(tmp_path, upload_rate_limit=RateLimit(2, 60.0))
    photo = write_jpeg(tmp_path / "p.jpg", 64, 64)
    try:
        statuses = [post(client, photo).status_code for _ in range(3)]
        limited = post(client, photo)
        assert statuses == [202, 202, 429]
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 30
        assert limited.json()["error"]["code"] == "too_many_requests"
        assert len(app.list()) == 2
    finally:
        client.__exit__(None, None, None)
        app.close()


def test_bad_form_fields_are_named(api: tuple[Taskmill, TestClient], tmp_path: Path) -> None:
    _, client = api
    photo = write_jpeg(tmp_path / "p.jpg", 64, 64)
    unknown = post(client, photo, colour="red")
    bad_spec = post(client, photo, renditions='{"resized": {"width": -5}}')
    assert unknown.status_code == 422 and "colour" in unknown.json()["error"]["message"]
    assert bad_spec.status_code == 422 and "width" in bad_spec.json()["error"]["message"]


def test_unknown_ids_are_404_and_malformed_ids_422(api: tuple[Taskmill, TestClient]) -> None:
    _, client = api
    missing = "0190b6a0-0000-7000-8000-000000000000"
    assert client.get(f"/api/images/{missing}").status_code == 404
    assert client.delete(f"/api/images/{missing}").status_code == 404
    assert client.get("/api/images/not-an-id").status_code == 422


def test_readiness_fails_while_the_media_folder_cannot_be_written(tmp_path: Path) -> None:
    blocked = tmp_path / "media"
    app, client = make_client(tmp_path)
    try:
        assert client.get("/readyz").status_code == 200
        shutil.rmtree(blocked)
        blocked.write_text("a file where the folder should be")
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["error"]["code"] == "storage_unavailable"
    finally:
        client.__exit__(None, None, None)
        app.close()
