"""Fixtures for the image tests: storages of each kind (a local folder, a bucket on the
test run's real S3 server from tests/s3.py), sample files, and the media route served by
uvicorn on a real socket."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from taskmill.images.storage import FileStorage, Storage, object_key, open_storage
from tests import s3
from tests.s3 import S3Endpoint

# The S3 server's fixtures, for the tests of this folder (tests/conftest.py reports it).
s3_server = s3.s3_server
s3_env = s3.s3_env
s3_bucket = s3.s3_bucket

STORAGE_KINDS = ("file", "s3")
NewKey = Callable[..., str]


@pytest.fixture
def secret() -> bytes:
    """The key that signs local media URLs in these tests."""
    return b"media-test-secret"


@pytest.fixture
def new_key() -> NewKey:
    """`new_key(prefix="resized", extension="jpg")`: a key for a new image id."""

    def make(prefix: str = "resized", extension: str = "jpg") -> str:
        return object_key(prefix, str(uuid.uuid4()), extension)

    return make


@pytest.fixture
def file_storage(tmp_path: Path, secret: bytes) -> FileStorage:
    """A local storage in this test's tmp_path (the folder is not created yet)."""
    storage = open_storage(f"file://{tmp_path}/media", secret=secret)
    assert isinstance(storage, FileStorage)
    return storage


@pytest.fixture
def s3_storage(s3_env: S3Endpoint, s3_bucket: str, secret: bytes) -> Storage:
    """An S3 storage on a new bucket of the shared server, opened from its URL with the
    credentials in the AWS variables, as a deployment would."""
    return open_storage(s3_env.storage_url(s3_bucket), secret=secret)


@pytest.fixture(params=STORAGE_KINDS)
def storage(request: pytest.FixtureRequest) -> Storage:
    """Each kind of storage in turn: the contract is the same."""
    found: Storage = request.getfixturevalue(f"{request.param}_storage")
    return found


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """A 100 KiB file of random bytes (content does not matter to storage)."""
    path = tmp_path / "sample.bin"
    path.write_bytes(os.urandom(100 * 1024))
    return path


class ServerThread:
    """uvicorn serving `app` on a free loopback port, in a thread of the test process (so
    tests can watch what the app does with its storage)."""

    def __init__(self, app: FastAPI) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, http="h11", ws="none", lifespan="off",
            log_level="warning", access_log=False,
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="media-server", daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        for _ in range(500):
            if self.server.started or not self.thread.is_alive():
                break
            self.thread.join(0.01)
        if not self.server.started:
            raise RuntimeError("uvicorn did not start")
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


Serve = Callable[[FastAPI], str]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """`serve(app)` -> base URL of `app` on a real socket; stopped after the test."""
    servers: list[ServerThread] = []

    def start(app: FastAPI) -> str:
        servers.append(ServerThread(app))
        return servers[-1].__enter__()

    yield start
    for server in servers:
        server.__exit__()
