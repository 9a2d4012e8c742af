"""Fixtures for API tests: the API in process (TestClient), both ways a request can be
served (the fast path and the FastAPI routes), on each backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from taskmill import Taskmill
from taskmill.api import create_app
from taskmill.config import Settings
from tests.helpers import make_app
from tests.tasks_for_tests import register_test_tasks

MakeClient = Callable[..., TestClient]


@pytest.fixture(params=["fast", "routes"])
def serving(request: pytest.FixtureRequest) -> str:
    """How /api/tasks is served: by the fast path, or by the FastAPI routes alone. Both
    must give the same answers."""
    return str(request.param)


@pytest.fixture
def make_client() -> Iterator[MakeClient]:
    """`make_client(app, **create_app_options)`: a started TestClient (stats never cached
    unless asked), closed after the test."""
    clients: list[TestClient] = []

    def make(app: Taskmill, **options: object) -> TestClient:
        options.setdefault("stats_max_age_s", 0.0)
        client = TestClient(create_app(app, **options))  # type: ignore[arg-type]
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(app: Taskmill, make_client: MakeClient, serving: str) -> TestClient:
    """The API over the test's app (test tasks, both backends, both ways of serving), no
    API keys."""
    return make_client(app, fast_path=serving == "fast")


def app_with_keys(database_url: str, *keys: str) -> Taskmill:
    return register_test_tasks(
        Taskmill(settings=Settings.from_env({}, database_url=database_url, api_keys=keys))
    )


@pytest.fixture(scope="module")
def shared_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Taskmill]:
    """One migrated SQLite app for a whole module: for tests of input the API refuses before
    the store is involved (so the backend does not matter and nothing is stored)."""
    app = make_app(f"sqlite:///{tmp_path_factory.mktemp('api')}/taskmill.db")
    app.migrate()
    yield app
    app.close()


@pytest.fixture(scope="module", params=["fast", "routes"])
def shared_client(shared_app: Taskmill, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    with TestClient(create_app(shared_app, fast_path=request.param == "fast")) as client:
        yield client


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The API with one key, "k-1", on a SQLite app of its own (for the module)."""
    app = app_with_keys(f"sqlite:///{tmp_path_factory.mktemp('keys')}/taskmill.db", "k-1")
    app.migrate()
    with TestClient(create_app(app)) as client:
        yield client
    app.close()
