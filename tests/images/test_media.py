"""Signed local media URLs: the secret that signs them, the signature check, and the /media
route, in process and through a real socket, including every way a request might name a
file outside the storage folder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import taskmill.secrets
from taskmill.api.errors import install_error_handlers
from taskmill.api.routes import media
from taskmill.config import Settings
from taskmill.errors import ConfigError
from taskmill.images.storage import FileStorage, sign_media, verify_media_signature
from taskmill.secrets import load_secret
from tests.images.helpers import rewritten_in_a_loop

NewKey = Callable[..., str]
Serve = Callable[[FastAPI], str]
ID = "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"


def settings_in(data_dir: Path, **overrides: str) -> Settings:
    """Settings whose data dir is `data_dir` (beside the SQLite database), TASKMILL_*
    variables of the machine ignored."""
    return Settings.from_env({}, database_url=f"sqlite:///{data_dir}/taskmill.db", **overrides)


# -- the secret ---------------------------------------------------------------------------------


def test_secret_is_generated_once_private_and_reused(tmp_path: Path) -> None:
    settings = settings_in(tmp_path / "data")
    key = load_secret(settings)
    assert len(key) >= 43  # 32 random bytes, URL-safe base64
    path = tmp_path / "data" / "secret.key"
    assert path.read_bytes().strip() == key
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    assert load_secret(settings) == key
    assert load_secret(settings_in(tmp_path / "data")) == key
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]  # no temporary files


def test_secret_key_setting_wins(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"TASKMILL_SECRET_KEY": "from-the-environment"},
        database_url=f"sqlite:///{tmp_path}/taskmill.db",
    )
    assert load_secret(settings) == b"from-the-environment"
    assert not (tmp_path / "secret.key").exists()


def test_loser_of_a_race_takes_the_winners_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process writes its key between our look and our write: ours is dropped."""
    create_once = taskmill.secrets._create_once

    def create_after_the_winner(path: Path, key: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("the-winners-key\n")
        create_once(path, key)

    monkeypatch.setattr(taskmill.secrets, "_create_once", create_after_the_winner)
    assert load_secret(settings_in(tmp_path)) == b"the-winners-key"
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]


RACER = """
import sys
from taskmill.config import Settings
from taskmill.secrets import load_secret
settings = Settings.from_env({}, database_url=sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
print(load_secret(settings).decode(), flush=True)
"""


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKMILL_")}
    url = f"sqlite:///{tmp_path}/new-data-dir/taskmill.db"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    try:
        for racer in racers:  # all imported and waiting: then release them at once
            assert racer.stdout is not None and racer.stdout.readline() == "ready\n"
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.write("go\n")
            racer.stdin.flush()
        keys = {racer.communicate(timeout=30)[0].strip() for racer in racers}
    finally:
        for racer in racers:
            racer.kill()
            racer.wait()
    assert all(racer.returncode == 0 for racer in racers)
    assert keys == {(tmp_path / "new-data-dir" / "secret.key").read_text().strip()}


def test_an_empty_secret_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.key").write_text("\n")
    with pytest.raises(ConfigError, match=r"secret key file .*secret.key is empty"):
        load_secret(settings_in(tmp_path))


def test_an_unusable_data_dir_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file where the data dir should be")
    with pytest.raises(ConfigError, match="TASKMILL_SECRET_KEY"):
        load_secret(settings_in(tmp_path / "data"))


# -- the signature ------------------------------------------------------------------------------

KEY = f"resized/{ID}.jpg"
SECRET = b"k"
NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("key", "expires", "signature", "reason"),
    [
        (KEY, "1800000060", sign_media(SECRET, KEY, 1800000060), None),
        (KEY, "1800000000", sign_media(SECRET, KEY, 1800000000), "expired"),
        (KEY, "1799999999", sign_media(SECRET, KEY, 1799999999), "expired"),
        (KEY, "", sign_media(SECRET, KEY, 1800000060), "missing expires"),
        (KEY, "1800000060", "", "missing signature"),
        (KEY, "18e8", sign_media(SECRET, KEY, 1800000060), "malformed expires"),
        (KEY, "-1", sign_media(SECRET, KEY, 1800000060), "malformed expires"),
        (KEY, "1800000061", sign_media(SECRET, KEY, 1800000060), "invalid signature"),
        (KEY, "1800000060", sign_media(b"other", KEY, 1800000060), "invalid signature"),
        (KEY, "1800000060", sign_media(SECRET, KEY, 1800000060).upper(), "invalid signature"),
        (KEY, "1800000060", sign_media(SECRET, KEY, 1800000060)[:-1], "invalid signature"),
        (f"resized/{ID}.png", "1800000060", sign_media(SECRET, KEY, 1800000060),
         "invalid signature"),
        (KEY, "1700000000", sign_media(SECRET, KEY, 1800000060), "invalid signature"),
    ],
)  # fmt: skip
def test_verify_media_signature(key: str, expires: str, signature: str, reason: str) -> None:
    assert verify_media_signature(SECRET, key, expires, signature, now=NOW) == reason


# -- the route, in process ----------------------------------------------------------------------


def media_app(storage: FileStorage) -> FastAPI:
    """The media route alone, with the API's error bodies."""
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(media.router(storage))
    return app


@pytest.fixture
def client(file_storage: FileStorage, secret: bytes) -> TestClient:
    return TestClient(media_app(file_storage))


def relative(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def put(storage: FileStorage, key: str, content: bytes, tmp_path: Path) -> None:
    source = tmp_path / "upload"
    source.write_bytes(content)
    storage.put_file(key, source, content_type="")


def test_serves_the_exact_bytes_with_type_and_cache_lifetime(
    client: TestClient, file_storage: FileStorage, tmp_path: Path, new_key: NewKey
) -> None:
    content = os.urandom(700 * 1024)
    key = new_key("thumbnails", "webp")
    put(file_storage, key, content, tmp_path)
    answer = client.get(relative(file_storage.url(key, expires_s=600, base_url="")))
    assert answer.status_code == 200
    assert answer.content == content
    assert answer.headers["content-type"] == "image/webp"
    assert answer.headers["content-length"] == str(len(content))
    assert answer.headers["x-content-type-options"] == "nosniff"
    cache, _, max_age = answer.headers["cache-control"].partition(", max-age=")
    assert cache == "private"
    assert 598 <= int(max_age) <= 600


def test_head_sends_headers_only(
    client: TestClient, file_storage: FileStorage, tmp_path: Path, new_key: NewKey
) -> None:
    key = new_key("originals", "png")
    put(file_storage, key, b"\x89PNG not really", tmp_path)
    answer = client.head(relative(file_storage.url(key, expires_s=60, base_url="")))
    assert answer.status_code == 200
    assert (answer.headers["content-type"], answer.headers["content-length"]) == ("image/png", "15")
    assert answer.content == b""


class Answer(Protocol):
    status_code: int

    def json(self) -> Any: ...


def refusal(answer: Answer) -> tuple[int, str, str]:
    error = answer.json()["error"]
    return answer.status_code, error["code"], error["message"]


def test_signature_problems_are_403_saying_which(
    client: TestClient, file_storage: FileStorage, secret: bytes, tmp_path: Path, new_key: NewKey
) -> None:
    key, other = new_key(), new_key()
    for k in (key, other):
        put(file_storage, k, b"jpeg bytes", tmp_path)
    url = relative(file_storage.url(key, expires_s=60, base_url=""))
    tampered = url[:-1] + ("0" if url[-1] != "0" else "1")
    expires = int(time.time()) - 1
    expired = f"/media/{key}?expires={expires}&signature={sign_media(secret, key, expires)}"
    for_other = relative(file_storage.url(other, expires_s=60, base_url="")).replace(other, key)
    cases = {
        tampered: "invalid signature",
        expired: "expired",
        for_other: "invalid signature",
        f"/media/{key}": "missing expires",
        url.partition("&")[0]: "missing signature",
    }
    for request, reason in cases.items():
        assert refusal(client.get(request)) == (403, "forbidden", f"media URL refused: {reason}")
    assert client.get(url).content == b"jpeg bytes"  # the untouched URL works


def test_valid_signature_for_a_missing_object_is_404(
    client: TestClient, file_storage: FileStorage, new_key: NewKey
) -> None:
    answer = client.get(relative(file_storage.url(new_key(), expires_s=60, base_url="")))
    assert refusal(answer) == (404, "not_found", "no such media object")


def test_not_in_the_openapi_schema(client: TestClient) -> None:
    assert client.app.openapi()["paths"] == {}  # type: ignore[attr-defined]


# -- the route, on a real socket --------------------------------------------------------------


class RecordingStorage(FileStorage):
    """A FileStorage that notes every key the route asks it for."""

    def __init__(self, root: Path, secret: bytes) -> None:
        super().__init__(root, secret)
        self.asked: list[str] = []

    def local_path(self, key: str) -> Path:
        self.asked.append(key)
        return super().local_path(key)


def raw_get(base_url: str, target: str) -> tuple[int, bytes]:
    """GET `target` exactly as written (an HTTP client would normalize "../" away)."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def signed_query(secret: bytes, key: str) -> str:
    expires = int(time.time()) + 600
    return f"?expires={expires}&signature={sign_media(secret, key, expires)}"


def test_url_is_served_through_a_real_socket(
    file_storage: FileStorage, secret: bytes, serve: Serve, tmp_path: Path, new_key: NewKey
) -> None:
    base_url = serve(media_app(file_storage))
    content = os.urandom(3 * 1024 * 1024 + 17)  # several chunks, and a short last one
    key = new_key("originals")
    put(file_storage, key, content, tmp_path)
    answer = httpx.get(file_storage.url(key, expires_s=60, base_url=base_url))
    assert answer.status_code == 200
    assert answer.content == content
    assert answer.headers["content-type"] == "image/jpeg"


def traversal_targets(root: Path, existing_key: str) -> Iterable[tuple[str, str]]:
    """(request target path, the key the server decodes it to) for ways out of `root`."""
    outside = root.parent / "outside.jpg"
    yield "/media/../outside.jpg", "../outside.jpg"
    yield "/media/../secret.key", "../secret.key"
    yield "/media/originals/../../outside.jpg", "originals/../../outside.jpg"
    yield "/media/%2e%2e/outside.jpg", "../outside.jpg"
    yield "/media/%2E%2E%2Foutside.jpg", "../outside.jpg"
    yield "/media/..%2f..%2f..%2fetc%2fpasswd", "../../../etc/passwd"
    yield f"/media/{outside}", str(outside)  # absolute: /media//tmp/...
    yield "/media/%2Fetc%2Fpasswd", "/etc/passwd"
    yield "/media/originals%5C..%5C..%5Coutside.jpg", "originals\\..\\..\\outside.jpg"
    yield f"/media/{existing_key}%00.txt", f"{existing_key}\x00.txt"
    yield f"/media/{existing_key}%00", f"{existing_key}\x00"
    yield f"/media/resized/../{existing_key}", f"resized/../{existing_key}"
    yield f"/media/other/{ID}.jpg", f"other/{ID}.jpg"
    yield "/media/", ""
    yield "/media/resized/", "resized/"
    yield "/media/resized", "resized"


def test_no_request_reaches_outside_the_storage_folder(
    tmp_path: Path, secret: bytes, serve: Serve, new_key: NewKey
) -> None:
    """Even with a valid signature for the path it names (as if the secret had leaked),
    no request gets a file outside the folder, and the storage is never even asked."""
    storage = RecordingStorage(tmp_path / "media", secret)
    (tmp_path / "outside.jpg").write_bytes(b"OUTSIDE-THE-STORAGE")
    (tmp_path / "secret.key").write_bytes(b"OUTSIDE-THE-STORAGE")
    existing = new_key("originals")
    put(storage, existing, b"INSIDE", tmp_path)
    base_url = serve(media_app(storage))
    for target, key in traversal_targets(storage.root, existing):
        for query in ("", signed_query(secret, key)):
            status, response = raw_get(base_url, target + query)
            assert status == 404, (target, status)
            assert b"no such media object" in response  # refused by the route itself
            assert b"OUTSIDE" not in response and b"root:" not in response
            assert b"INSIDE" not in response
    assert storage.asked == []
    assert raw_get(base_url, f"/media/{existing}{signed_query(secret, existing)}")[0] == 200


def test_a_file_rewritten_while_served_is_never_torn(
    file_storage: FileStorage, secret: bytes, serve: Serve, tmp_path: Path, new_key: NewKey
) -> None:
    """Re-runs rewrite objects in place: each response is one version whole, with its own
    length (a server that stats, sends headers, then reopens the path would mix them)."""
    base_url = serve(media_app(file_storage))
    key = new_key()
    versions = [os.urandom(200 * 1024), os.urandom(600 * 1024)]
    url = file_storage.url(key, expires_s=60, base_url=base_url)
    seen = set()
    with rewritten_in_a_loop(file_storage, key, versions, tmp_path), httpx.Client() as http:
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            answer = http.get(url)
            assert answer.status_code == 200
            assert answer.content in versions
            seen.add(versions.index(answer.content))
    assert seen == {0, 1}
