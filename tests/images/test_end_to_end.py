"""Images through the whole system as a user runs it: `taskmill up` (API, worker with two
children, scheduler) in a fresh directory, uploads over real HTTP, renditions made by real
worker processes, files served through signed URLs, webhooks to a real receiver."""

from __future__ import annotations

import http.server
import io
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from PIL import Image as PILImage

from taskmill.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.acceptance.processes import clean_env
from tests.acceptance.test_up import Up
from tests.helpers import wait_until
from tests.http_servers import serving
from tests.images.helpers import truncated_copy, write_jpeg
from tests.processes import TASKMILL

SECRET = "end-to-end-secret"
MAX_UPLOAD = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    cwd = tmp_path_factory.mktemp("images-up")
    server = Up(
        cwd, "-c", "2", TASKMILL_SECRET_KEY=SECRET, TASKMILL_WEBHOOK_ALLOW_PRIVATE="true",
        TASKMILL_MAX_UPLOAD_BYTES=str(MAX_UPLOAD),
    )  # fmt: skip
    try:
        server.wait_serving()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("image-files")


def upload(up: Up, path: Path, **fields: str) -> httpx.Response:
    with path.open("rb") as f:
        return httpx.post(
            f"{up.url}/api/images", files={"file": (path.name, f)}, data=fields, timeout=30
        )


def wait_finished(up: Up, image_id: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        image: dict[str, Any] = httpx.get(f"{up.url}/api/images/{image_id}").json()
        return image if image["status"] in ("completed", "failed") else None

    found = wait_until(finished, timeout_s=60, what=f"image {image_id} finished")
    assert isinstance(found, dict)
    return found


def test_an_upload_becomes_renditions_served_by_signed_urls(up: Up, files: Path) -> None:
    photo = write_jpeg(files / "landscape.jpg", 2000, 1000)
    response = upload(up, photo)

    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "pending"
    assert response.headers["location"] == f"/api/images/{accepted['id']}"
    image = wait_finished(up, accepted["id"])

    assert image["status"] == "completed", image
    expected = {"resized": (1024, 512), "compressed": (2000, 1000), "thumbnail": (300, 300)}
    assert set(image["renditions"]) == set(expected)
    for name, rendition in image["renditions"].items():
        served = httpx.get(rendition["url"])
        assert served.status_code == 200, (name, served.text)
        assert served.headers["content-type"] == "image/jpeg"
        assert len(served.content) == rendition["bytes"]
        with PILImage.open(io.BytesIO(served.content)) as decoded:
            assert decoded.size == expected[name] == (rendition["width"], rendition["height"])
    original = httpx.get(image["original"]["url"])
    assert original.status_code == 200 and original.content == photo.read_bytes()

    tampered = image["renditions"]["thumbnail"]["url"][:-1] + "0"
    if tampered == image["renditions"]["thumbnail"]["url"]:
        tampered = tampered[:-1] + "1"
    assert httpx.get(tampered).status_code == 403


def test_delete_removes_the_image_and_its_files(up: Up, files: Path) -> None:
    accepted = upload(up, write_jpeg(files / "to-delete.jpg", 640, 480)).json()
    image = wait_finished(up, accepted["id"])
    urls = [image["original"]["url"], *(r["url"] for r in image["renditions"].values())]

    assert httpx.delete(f"{up.url}/api/images/{image['id']}").status_code == 204

    assert httpx.get(f"{up.url}/api/images/{image['id']}").status_code == 404
    assert [httpx.get(url).status_code for url in urls] == [404] * len(urls)
    assert httpx.delete(f"{up.url}/api/images/{image['id']}").status_code == 404


def test_a_truncated_jpeg_fails_readably_and_the_worker_carries_on(up: Up, files: Path) -> None:
    whole = write_jpeg(files / "whole.jpg", 1200, 900)
    accepted = upload(up, truncated_copy(whole, files / "truncated.jpg"))
    assert accepted.status_code == 202, accepted.text

    failed = wait_finished(up, accepted.json()["id"])

    assert failed["status"] == "failed" and failed["error"], failed
    assert failed["renditions"] == {}
    job = httpx.get(f"{up.url}/api/tasks/{failed['job_id']}").json()
    assert job["status"] == "failed" and job["attempts"] == 1  # not retried
    after = wait_finished(up, upload(up, whole).json()["id"])
    assert after["status"] == "completed"


@pytest.mark.parametrize(
    ("name", "content", "status", "code"),
    [
        ("doc.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", 415,
         "unsupported_media_type"),
        ("noise.jpg", bytes(range(256)) * 8, 415, "unsupported_media_type"),
        ("empty.png", b"", 422, "unreadable_image"),
    ],
)  # fmt: skip
def test_files_that_are_not_images_are_refused(
    up: Up, files: Path, name: str, content: bytes, status: int, code: str
) -> None:
    path = files / name
    path.write_bytes(content)
    response = upload(up, path)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_an_upload_over_the_size_limit_is_refused_with_413(up: Up, files: Path) -> None:
    big = files / "big.bin"
    big.write_bytes(b"\xff\xd8\xff" + b"\0" * MAX_UPLOAD)
    response = upload(up, big)
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "payload_too_large"


def test_a_request_without_a_file_is_refused(up: Up) -> None:
    no_file = httpx.post(f"{up.url}/api/images", data={"webhook_url": "http://x.test/"})
    assert no_file.status_code in (415, 422), no_file.text
    as_json = httpx.post(f"{up.url}/api/images", json={"file": "photo.jpg"})
    assert as_json.status_code == 415 and "multipart" in as_json.json()["error"]["message"]


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).received.append((dict(self.headers.items()), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


def test_a_webhook_receives_the_finished_image_signed(up: Up, files: Path) -> None:
    with serving(_Receiver) as base:
        hook = f"{base}/hooks/images"
        accepted = upload(up, write_jpeg(files / "hooked.jpg", 800, 600), webhook_url=hook)
        assert accepted.status_code == 202, accepted.text
        wait_until(lambda: _Receiver.received, timeout_s=60, what="the webhook arrived")

    headers, body = _Receiver.received[0]
    payload = json.loads(body)
    assert payload["id"] == accepted.json()["id"] and payload["status"] == "completed"
    assert verify(
        SECRET.encode(), body, timestamp=headers[TIMESTAMP_HEADER],
        signature=headers[SIGNATURE_HEADER],
    )  # fmt: skip


def test_the_image_command_uploads_and_waits_for_renditions(up: Up, files: Path) -> None:
    photo = write_jpeg(files / "cli.jpg", 900, 600)
    done = subprocess.run(
        [*TASKMILL, "image", str(photo), "--wait", "--json", "--url", up.url],
        env=clean_env(), capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [uploaded] = json.loads(done.stdout)
    assert uploaded["file"] == str(photo) and uploaded["status"] == "completed"
    assert set(uploaded["image"]["renditions"]) == {"resized", "compressed", "thumbnail"}
    assert httpx.get(uploaded["image"]["renditions"]["thumbnail"]["url"]).status_code == 200
