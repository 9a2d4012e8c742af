"""`taskmill image FILE...` as a user runs it: a subprocess talking HTTP to a real socket.

The server here is a stand-in that answers exactly as the API's contract for POST and GET
/api/images says (statuses, JSON, errors), so each outcome (refusals, processing failures,
slow images, a missing key) can be produced at will; the end-to-end test against the real
API lives with the image API's tests."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest

from tests.acceptance.processes import clean_env
from tests.http_servers import serving

# The command is not registered under `taskmill` yet; this runs it the same way, standalone.
COMMAND = [
    sys.executable, "-c",
    "from taskmill.cli.images import image; image(prog_name='taskmill image')",
]  # fmt: skip
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
STEPS = ("pending", "running", "completed")  # what successive GETs of an image answer
RENDITIONS = {
    "resized": (1024, 768, 81_234, "jpeg"),
    "compressed": (4000, 3000, 412_000, "jpeg"),
    "thumbnail": (300, 300, 9_876, "jpeg"),
}


# -- the stand-in API -------------------------------------------------------------------------


@dataclass
class Upload:
    filename: str | None
    data: bytes
    fields: dict[str, str]
    headers: dict[str, str]  # names lower-cased


@dataclass
class StandInApi:
    """POST/GET /api/images as the contract describes them. A file's content decides its
    fate: not PNG -> 415; over `max_bytes` -> 413; containing b"TRUNCATED" -> accepted, then
    fails in processing; b"SLOW" -> never finishes. A webhook URL on 127.0.0.1 -> 422."""

    api_key: str | None = None
    max_bytes: int = 1_000_000
    url: str = ""
    uploads: list[Upload] = field(default_factory=list)
    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    polls: dict[str, int] = field(default_factory=dict)
    fates: dict[str, str] = field(default_factory=dict)

    def accept(self, upload: Upload) -> tuple[int, dict[str, Any]]:
        if len(upload.data) > self.max_bytes:
            return _error(413, "payload_too_large", f"the file is larger than {self.max_bytes}")
        if not upload.data.startswith(PNG[:8]):
            return _error(
                415, "unsupported_media_type", "not an image format taskmill reads (sniffed: pdf)"
            )
        if "127.0.0.1" in upload.fields.get("webhook_url", ""):
            return _error(
                422, "invalid_webhook_url",
                "webhook URL points at a loopback address: 127.0.0.1 (set "
                "TASKMILL_WEBHOOK_ALLOW_PRIVATE=true to allow private targets)",
            )  # fmt: skip
        image_id = str(uuid.uuid4())
        self.fates[image_id] = (
            "failed" if b"TRUNCATED" in upload.data else "slow" if b"SLOW" in upload.data else "ok"
        )
        self.images[image_id] = {
            "id": image_id, "status": "pending", "original": None, "renditions": {},
            "error": None, "created_at": "2030-01-01T00:00:00+00:00", "completed_at": None,
            "job_id": str(uuid.uuid4()),
        }  # fmt: skip
        return 202, self.images[image_id]

    def get(self, image_id: str) -> tuple[int, dict[str, Any]]:
        if image_id not in self.images:
            return _error(404, "not_found", f"no image with id {image_id}")
        polls = self.polls[image_id] = self.polls.get(image_id, 0) + 1
        image = {**self.images[image_id], "status": STEPS[min(polls, len(STEPS) - 1)]}
        fate = self.fates[image_id]
        if fate == "slow":
            image["status"] = "running"
        elif image["status"] == "completed":
            image.update(self._finished(image_id, failed=fate == "failed"))
        image.pop("job_id")
        return 200, image

    def _finished(self, image_id: str, *, failed: bool) -> dict[str, Any]:
        media = f"{self.url}/media"
        done: dict[str, Any] = {
            "completed_at": "2030-01-01T00:00:02+00:00",
            "original": {"url": f"{media}/originals/{image_id}.png?expires=1893456000&sig=ab",
                         "width": 4000, "height": 3000, "bytes": 72, "format": "png"},
        }  # fmt: skip
        if failed:
            return {**done, "status": "failed", "error": "cannot decode image: truncated data"}
        done["renditions"] = {
            name: {"url": f"{media}/{name}/{image_id}.jpg?expires=1893456000&sig=cd",
                   "width": w, "height": h, "bytes": size, "format": fmt}
            for name, (w, h, size, fmt) in RENDITIONS.items()
        }  # fmt: skip
        return done


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"code": code, "message": message}}


def _parse_form(content_type: str, body: bytes) -> tuple[str | None, bytes, dict[str, str]]:
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    assert isinstance(message, EmailMessage) and message.is_multipart()
    filename, data, fields = None, b"", {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        if name == "file":
            filename, data = part.get_filename(), payload
        else:
            fields[str(name)] = payload.decode()
    return filename, data, fields


def _handler(api: StandInApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self._refused() or self.path != "/api/images":
                return
            body = self.rfile.read(int(self.headers["Content-Length"]))
            upload = Upload(
                *_parse_form(self.headers["Content-Type"], body),
                headers={k.lower(): v for k, v in self.headers.items()},
            )
            api.uploads.append(upload)
            self._answer(*api.accept(upload))

        def do_GET(self) -> None:
            if not self._refused():
                self._answer(*api.get(self.path.removeprefix("/api/images/")))

        def _refused(self) -> bool:
            if api.api_key and self.headers.get("Authorization") != f"Bearer {api.api_key}":
                self._answer(*_error(401, "unauthorized", "missing or invalid API key"))
                return True
            return False

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def api() -> Iterator[StandInApi]:
    made = StandInApi()
    with serving(_handler(made)) as made.url:
        yield made


# -- running the command ----------------------------------------------------------------------

Run = Callable[..., CompletedProcess[str]]


@pytest.fixture
def run(tmp_path: Path, api: StandInApi) -> Run:
    """`run("a.png", "--wait")` runs the command in tmp_path against the stand-in API
    (TASKMILL_PUBLIC_URL), with the repository's environment minus TASKMILL_* settings."""

    def invoke(*args: str, **env: str) -> CompletedProcess[str]:
        full_env = clean_env(TASKMILL_PUBLIC_URL=api.url, **env)
        return subprocess.run(
            [*COMMAND, *args], cwd=tmp_path, env=full_env, capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=60, check=False,
        )  # fmt: skip

    return invoke


@pytest.fixture
def files(tmp_path: Path) -> Callable[..., list[str]]:
    """`files(a=PNG, b=b"%PDF")` writes them to tmp_path and returns their names."""

    def write(**contents: bytes) -> list[str]:
        for name, data in contents.items():
            (tmp_path / name.replace("_", ".")).write_bytes(data)
        return [name.replace("_", ".") for name in contents]

    return write


def error_lines(done: CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert all(line.startswith("Error: ") for line in lines), done.stderr
    return lines


def rows(done: CompletedProcess[str]) -> list[list[str]]:
    """The cells of every table row printed on stdout."""
    cells = [line.strip("\u2502 ").split("\u2502") for line in done.stdout.splitlines()]
    return [[c.strip() for c in row] for row in cells if len(row) > 1]


# -- the tests --------------------------------------------------------------------------------


def test_uploads_each_file_and_prints_its_id(
    run: Run, api: StandInApi, files: Callable[..., list[str]]
) -> None:
    names = files(a_png=PNG + b"a", b_png=PNG + b"b")
    done = run(
        *names, "--webhook-url", "https://hooks.example.com/x", "--renditions",
        '{"resized": {"format": "webp"}}',
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert error_lines(done) == []
    assert [u.filename for u in api.uploads] == names
    assert [u.data for u in api.uploads] == [PNG + b"a", PNG + b"b"]
    for upload in api.uploads:
        assert upload.fields == {
            "webhook_url": "https://hooks.example.com/x",
            "renditions": '{"resized": {"format": "webp"}}',
        }
        assert "authorization" not in upload.headers
        assert "transfer-encoding" not in upload.headers  # a known length, streamed from disk
    table = {row[0]: row[1:] for row in rows(done)}
    for name, image_id in zip(names, api.images, strict=True):
        assert table[name] == [image_id, "pending"]


def test_wait_follows_each_image_and_prints_its_renditions(
    run: Run, api: StandInApi, files: Callable[..., list[str]]
) -> None:
    [name] = files(photo_png=PNG)
    done = run(name, "--wait")
    assert done.returncode == 0, done.stderr
    [image_id] = api.images
    assert api.polls[image_id] == len(STEPS) - 1  # pending -> running -> completed, no more
    found = {row[1]: row for row in rows(done) if row[0] == name and len(row) == 6}
    assert found["resized"][2:5] == ["1024x768", "81.2 kB", "jpeg"]
    assert found["thumbnail"][2:5] == ["300x300", "9.9 kB", "jpeg"]
    assert found["compressed"][2] == "4000x3000"
    assert (
        found["resized"][5] == f"{api.url}/media/resized/{image_id}.jpg?expires=1893456000&sig=cd"
    )


def test_json_output_is_the_images_as_the_api_returns_them(
    run: Run, api: StandInApi, files: Callable[..., list[str]]
) -> None:
    names = files(ok_png=PNG, doc_pdf=b"%PDF-1.7")
    done = run(*names, "--wait", "--json")
    assert done.returncode == 1
    ok, refused = json.loads(done.stdout)
    assert ok["file"] == "ok.png" and ok["status"] == "completed" and ok["error"] is None
    assert ok["id"] == ok["image"]["id"] and set(ok["image"]["renditions"]) == set(RENDITIONS)
    assert refused == {
        "file": "doc.pdf", "id": None, "status": "refused", "image": None,
        "error": {"status": 415, "code": "unsupported_media_type",
                  "message": "not an image format taskmill reads (sniffed: pdf)"},
    }  # fmt: skip
    assert error_lines(done) == [
        "Error: doc.pdf: 415 unsupported_media_type: not an image format taskmill reads "
        "(sniffed: pdf)"
    ]


def test_each_refused_or_failed_file_is_one_line_and_the_rest_carry_on(
    run: Run, api: StandInApi, files: Callable[..., list[str]]
) -> None:
    api.max_bytes = 1000
    names = files(
        photo_pdf=b"%PDF-1.7", huge_png=PNG + b"x" * 2000, broken_png=PNG + b"TRUNCATED",
        good_png=PNG,
    )  # fmt: skip
    done = run(*names, "--wait")
    assert done.returncode == 1
    broken_id = next(i for i, fate in api.fates.items() if fate == "failed")
    assert error_lines(done) == [
        "Error: photo.pdf: 415 unsupported_media_type: not an image format taskmill reads "
        "(sniffed: pdf)",
        "Error: huge.png: 413 payload_too_large: the file is larger than 1000",
        f"Error: broken.png: image {broken_id} failed: cannot decode image: truncated data",
    ]
    status = {row[0]: row[-1] for row in rows(done) if len(row) == 3}
    assert status == {"photo.pdf": "refused", "huge.png": "refused", "broken.png": "failed",
                      "good.png": "completed"}  # fmt: skip
    assert {row[1] for row in rows(done) if row[0] == "good.png" and len(row) == 6} == set(
        RENDITIONS
    )


def test_a_refused_webhook_url_is_the_api_s_reason(
    run: Run, files: Callable[..., list[str]]
) -> None:
    [name] = files(a_png=PNG)
    done = run(name, "--webhook-url", "http://127.0.0.1:9/hook")
    assert done.returncode == 1
    [line] = error_lines(done)
    assert line.startswith(
        "Error: a.png: 422 invalid_webhook_url: webhook URL points at a loopback"
    )


def test_waiting_gives_up_after_the_timeout(
    run: Run, api: StandInApi, files: Callable[..., list[str]]
) -> None:
    [name] = files(slow_png=PNG + b"SLOW")
    done = run(name, "--wait", "--timeout", "0.5")
    assert done.returncode == 1
    assert error_lines(done) == ["Error: slow.png: timeout: still running after 0.5s (--timeout)"]
    assert api.polls  # it did look, gently: not hundreds of times in half a second
    assert max(api.polls.values()) <= 4


def test_the_api_key_comes_from_the_flag_or_the_environment(
    run: Run, api: StandInApi, files: Callable[..., list[str]]
) -> None:
    api.api_key = "s3cret"
    names = files(a_png=PNG, b_png=PNG)
    refused = run(*names)
    assert refused.returncode == 1
    assert error_lines(refused) == [
        "Error: 401 unauthorized: missing or invalid API key; pass --api-key or set "
        "TASKMILL_API_KEY"
    ], "one line for the whole run, not one per file"
    assert run(*names, "--api-key", "s3cret").returncode == 0
    assert run(*names, TASKMILL_API_KEY="s3cret").returncode == 0
    assert run(*names, TASKMILL_API_KEYS="s3cret,other").returncode == 0  # the server's own
    assert len(api.uploads) == 6  # the refused run stopped at its first file
    assert {u.headers.get("authorization") for u in api.uploads} == {"Bearer s3cret"}


def test_an_unreachable_api_is_one_line(run: Run, files: Callable[..., list[str]]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    names = files(a_png=PNG, b_png=PNG)
    done = run(*names, "--url", f"http://127.0.0.1:{port}/")
    assert done.returncode == 1 and done.stdout == ""
    [line] = error_lines(done)
    assert line.startswith(f"Error: cannot reach the taskmill API at http://127.0.0.1:{port} (")
    assert "TASKMILL_PUBLIC_URL" in line


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((), "Missing argument 'FILE...'"),
        (("missing.png",), "'missing.png' does not exist"),
        (("a.png", "--renditions", "{bad"), "--renditions': not valid JSON"),
        (("a.png", "--renditions", "[1]"), "must be a JSON object"),
        (("a.png", "--url", "ftp://host"), "must start with http:// or https://"),
        (("a.png", "--timeout", "-1"), "--timeout"),
    ],
)
def test_usage_errors_exit_2(
    run: Run, files: Callable[..., list[str]], args: tuple[str, ...], fragment: str
) -> None:
    files(a_png=PNG)
    done = run(*args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and fragment in done.stderr, done.stderr


def test_a_terminal_sees_the_upload_progress_in_bytes(
    run: Run, files: Callable[..., list[str]]
) -> None:
    [name] = files(big_png=PNG + b"\x00" * 600_000)
    done = run(name, TTY_COMPATIBLE="1")
    assert done.returncode == 0, done.stderr
    # The bar counts the request body: the file and a few hundred bytes of multipart framing.
    sent = re.search(r"big\.png .*?(600\.\d)/(600\.\d) kB", done.stderr)
    assert sent and sent.group(1) == sent.group(2), done.stderr
