"""`taskmill scheduler` (periodic tasks and maintenance) and `taskmill schedules` (list)."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import click
from rich.table import Table

from taskmill.cli.base import app_option, database_option, open_app, setup_logging
from taskmill.cli.output import console, print_json
from taskmill.scheduler import run_scheduler
from taskmill.scheduler.periodic import (
    ScheduleInfo,
    add_env_schedules,
    describe_schedules,
    utc_now,
)


@click.command()
@app_option
@database_option
def scheduler(app_ref: str | None, database_url: str | None) -> None:
    """Run periodic tasks, expired-lease recovery and job retention until SIGTERM/SIGINT.
    Safe to run on several machines at once: each tick still makes exactly one job."""
    setup_logging()
    raise SystemExit(run_scheduler(open_app(app_ref, database_url)))


@click.command()
@app_option
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def schedules(app_ref: str | None, database_url: str | None, as_json: bool) -> None:
    """List periodic tasks with their last and next run."""
    app = open_app(app_ref, database_url)
    try:
        add_env_schedules(app, os.environ)
        infos = describe_schedules(app.schedules, app.store.schedule_states(), utc_now())
    finally:
        app.close()
    if as_json:
        print_json([_as_dict(info) for info in infos])
    else:
        _print_table(infos)


def _as_dict(info: ScheduleInfo) -> dict[str, Any]:
    return {
        "name": info.name, "task": info.task, "cron": info.cron, "tz": info.tz,
        "catch_up": info.catch_up, "registered": info.catch_up is not None,
        "last_tick_at": _iso(info.last_tick_at), "last_job_id": info.last_job_id,
        "last_job_status": info.last_job_status and info.last_job_status.value,
        "next_tick_at": _iso(info.next_tick_at), "overdue": info.overdue,
    }  # fmt: skip


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _print_table(infos: list[ScheduleInfo]) -> None:
    if not infos:
        console.print("no periodic tasks (register one with @app.periodic)")
        return
    table = Table(caption="times in UTC; --json for job ids")
    for column in ("schedule", "task", "cron (time zone)", "last run", "next run"):
        table.add_column(column)
    for info in infos:
        table.add_row(
            info.name, info.task, f"{info.cron} ({info.tz})", _last_run(info), _next_run(info)
        )
    console.print(table)


def _last_run(info: ScheduleInfo) -> str:
    if info.last_tick_at is None:
        return "never"
    status = info.last_job_status.value if info.last_job_status else "job pruned"
    return f"{info.last_tick_at:%Y-%m-%d %H:%M:%S} {status}"


def _next_run(info: ScheduleInfo) -> str:
    if info.next_tick_at is None:
        return "[dim]not in this app[/]"
    text = f"{info.next_tick_at:%Y-%m-%d %H:%M:%S}"
    return f"[red]{text} overdue: is a scheduler running?[/]" if info.overdue else text
