"""Long-running processes: migrate, worker, and up (API + worker + more, as one command)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from taskmill.app import Taskmill
from taskmill.cli.api import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    GRACEFUL_SHUTDOWN_S,
    base_url,
    bind,
    check_exposure,
    print_banner,
)
from taskmill.cli.base import app_option, database_option, open_app, setup_logging
from taskmill.cli.output import console
from taskmill.cli.procgroup import ProcessGroup, ProcessSpec
from taskmill.demo import seed_demo_jobs
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


# -- up -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpPlan:
    """What `taskmill up` runs: every component gets the same app and database."""

    app_ref: str | None
    database_url: str
    api_fd: int
    host: str
    insecure: bool
    worker_flags: tuple[str, ...]

    def command(self, name: str, *args: str) -> list[str]:
        app = ["-A", self.app_ref] if self.app_ref else []
        return [sys.executable, "-m", "taskmill", name, *app,
                "--database-url", self.database_url, *args]  # fmt: skip


def api_process(plan: UpPlan) -> ProcessSpec:
    args = ["--fd", str(plan.api_fd), "--host", plan.host]
    args += ["--insecure"] if plan.insecure else []
    return ProcessSpec("api", plan.command("api", *args), pass_fds=(plan.api_fd,))


def worker_process(plan: UpPlan) -> ProcessSpec:
    return ProcessSpec("worker", plan.command("worker", *plan.worker_flags))


def scheduler_process(plan: UpPlan) -> ProcessSpec:
    return ProcessSpec("scheduler", plan.command("scheduler"))


def up_processes(plan: UpPlan) -> list[ProcessSpec]:
    """The components of `taskmill up`, one process each, started in this order and
    stopped together."""
    return [api_process(plan), worker_process(plan), scheduler_process(plan)]


def worker_flags(given: dict[str, Any]) -> tuple[str, ...]:
    """The worker options `up` was given, as flags for its worker process: every option of
    `taskmill worker` is one of `up` too, and passes through unchanged."""
    flags: list[str] = []
    for param in worker.params:
        value = given.get(param.name or "")
        if not isinstance(param, click.Option) or param.name in {"app_ref", "database_url"}:
            continue
        if isinstance(value, bool):
            flags += [param.opts[0]] if value else []
        elif value is not None:
            flags += [param.opts[0], str(value)]
    return tuple(flags)


def _prepare(app: Taskmill, *, demo: bool) -> int:
    with console.status("migrating the database..."):
        version = app.migrate()
    if demo:
        with console.status("seeding demo jobs..."):
            seeded = seed_demo_jobs(app)
        console.print(f"seeded {len(seeded)} demo jobs")
    return version


def _print_up_banner(url: str, app: Taskmill, specs: list[ProcessSpec], **details: str) -> None:
    print_banner(url, app, components="up: " + ", ".join(s.name for s in specs))
    for label, text in details.items():
        console.print(f"  {label:<10} {text}", highlight=False)
    console.print("Ctrl-C stops everything.")


@click.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address of the API.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
    help="Port of the API (0: any free one).",
)  # fmt: skip
@click.option("--insecure", is_flag=True, help="Allow listening beyond loopback without API keys.")
@click.option("--demo", is_flag=True, help="Seed a few demo jobs to watch.")
@app_option
@database_option
@_with_worker_options
def up(
    host: str, port: int, insecure: bool, demo: bool, app_ref: str | None,
    database_url: str | None, **worker_options: Any,
) -> None:  # fmt: skip
    """The whole system on one machine: migrate, then the API (and dashboard) and a worker,
    until Ctrl-C stops them all (a second Ctrl-C stops at once)."""
    app = open_app(app_ref, database_url)
    check_exposure(host, app.settings.api_keys, insecure=insecure)
    queues = _parse_queues(worker_options.get("queues"))  # bad flags fail before anything starts
    version = _prepare(app, demo=demo)
    sock = bind(host, port)
    plan = UpPlan(
        app_ref=app_ref, database_url=app.settings.database_url, api_fd=sock.fileno(),
        host=host, insecure=insecure, worker_flags=worker_flags(worker_options),
    )  # fmt: skip
    specs = up_processes(plan)
    processes = worker_options.get("concurrency") or os.cpu_count() or 1
    _print_up_banner(
        base_url(sock), app, specs, schema=f"version {version}",
        worker=f"{processes} processes, queues: {','.join(queues or ['all'])}",
    )  # fmt: skip
    app.close()  # this process only watches now; it holds no connections while others work
    stop_timeout_s = float(worker_options["grace"]) + GRACEFUL_SHUTDOWN_S + 15
    group = ProcessGroup(specs, stop_timeout_s=stop_timeout_s, on_event=console.print)
    code = group.run()
    sock.close()
    console.print("stopped" if code == 0 else f"stopped: {group.failed or 'a process failed'}")
    raise SystemExit(code)
