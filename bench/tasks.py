"""The benchmark's app, importable by a worker as `bench.tasks:app`.

The module-level `app` reads TASKMILL_DATABASE_URL, so a worker subprocess started with that
variable uses the same database as the benchmark that started it. The benchmark itself calls
`make_app(url)` once per backend."""

from __future__ import annotations

from taskmill import Taskmill


def noop() -> None:
    """Does nothing: the engine benchmark measures the queue, not the work."""


def make_app(database_url: str | None = None) -> Taskmill:
    app = Taskmill(database_url)
    app.task(noop)
    return app


app = make_app()
