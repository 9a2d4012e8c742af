"""Long-running processes: migrate, worker, up."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from taskmill.cli.base import app_option, database_option, open_app, setup_logging
from taskmill.errors import ValidationError
from taskmill.tasks import check_queue
from taskmill.worker import Supervisor, WorkerOptions


@click.command()
@app_option
@database_option
def migrate(app_ref: str | None, database_url: str | None) -> None:
    """Create or upgrade the database schema (safe to run again, or concurrently)."""
    app = open_app(app_ref, database_url)
    version = app.migrate()
    click.echo(f"schema at version {version} ({app.settings.database_url})")


def _parse_queues(text: str | None) -> tuple[str, ...] | None:
    if not text:
        return None
    queues = tuple(q.strip() for q in text.split(",") if q.strip())
    if not queues:
        raise ValidationError("-Q needs at least one queue name")
    return tuple(check_queue(q) for q in queues)


F = TypeVar("F", bound=Callable[..., Any])

worker_options = [
    click.option("-Q", "--queues", default=None, help="Comma-separated queues (default: all)."),
    click.option("-c", "--concurrency", type=click.IntRange(1, 512), default=None,
                 help="Child processes (default: CPU count)."),
    click.option("--grace", type=click.FloatRange(0), default=30.0, show_default=True,
                 help="Seconds running jobs may take to finish after SIGTERM."),
    click.option("--max-tasks-per-child", type=click.IntRange(1), default=None,
                 help="Replace a child after it ran this many jobs."),
    click.option("--max-memory-per-child", type=click.IntRange(16), default=None, metavar="MIB",
                 help="Replace a child whose resident memory grew past this many MiB."),
]  # fmt: skip


def _with_worker_options(fn: F) -> F:
    for option in reversed(worker_options):
        fn = option(fn)
    return fn


def _run_worker(
    app_ref: str | None, database_url: str | None, queues: str | None,
    concurrency: int | None, grace: float, max_tasks_per_child: int | None,
    max_memory_per_child: int | None, *, migrate: bool,
) -> None:  # fmt: skip
    setup_logging()
    app = open_app(app_ref, database_url)
    if migrate:
        app.migrate()
    options = WorkerOptions(
        app_ref=app_ref, queues=_parse_queues(queues), grace_s=grace,
        max_tasks_per_child=max_tasks_per_child, max_memory_per_child_mib=max_memory_per_child,
        concurrency=concurrency or os.cpu_count() or 1,
    )  # fmt: skip
    raise SystemExit(Supervisor(app, options).run())


@click.command()
@app_option
@database_option
@_with_worker_options
def worker(
    app_ref: str | None, database_url: str | None, queues: str | None,
    concurrency: int | None, grace: float, max_tasks_per_child: int | None,
    max_memory_per_child: int | None,
) -> None:  # fmt: skip
    """Run jobs until SIGTERM/SIGINT (a second signal stops at once)."""
    _run_worker(app_ref, database_url, queues, concurrency, grace, max_tasks_per_child,
                max_memory_per_child,
                migrate=False)  # fmt: skip


@click.command()
@app_option
@database_option
@_with_worker_options
def up(
    app_ref: str | None, database_url: str | None, queues: str | None,
    concurrency: int | None, grace: float, max_tasks_per_child: int | None,
    max_memory_per_child: int | None,
) -> None:  # fmt: skip
    """The whole system on one machine: migrate, then serve."""
    _run_worker(app_ref, database_url, queues, concurrency, grace, max_tasks_per_child,
                max_memory_per_child,
                migrate=True)  # fmt: skip
