"""`taskmill stats`: queues x states, workers and throughput, read from the store."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from rich.table import Table

from taskmill.cli.base import app_option, database_option, open_app
from taskmill.cli.output import console, print_json
from taskmill.stats import Snapshot, StateCounts, collect

STATES = ("pending", "running", "completed", "failed", "cancelled")
STATE_STYLES = ("yellow", "cyan", "green", "red", "magenta")


def _row(name: str, counts: StateCounts) -> list[str]:
    return [name, *(str(getattr(counts, s)) for s in STATES), f"{counts.jobs_per_s:.2f}"]


def queues_table(snapshot: Snapshot) -> Table:
    table = Table(title="jobs", title_justify="left", show_footer=bool(snapshot.queues))
    table.add_column("queue", footer="all")
    totals = _row("all", snapshot.totals)
    for index, (state, style) in enumerate(zip(STATES, STATE_STYLES, strict=True), start=1):
        table.add_column(state, justify="right", style=style, footer=totals[index])
    table.add_column("jobs/s", justify="right", footer=totals[-1])
    for queue, counts in snapshot.queues.items():
        table.add_row(*_row(queue, counts))
    return table


def workers_table(snapshot: Snapshot) -> Table:
    table = Table(title="workers online", title_justify="left")
    for column in ("id", "queues", "processes", "up for", "heartbeat"):
        table.add_column(column, justify="right" if column != "id" else "left")
    now = datetime.now(UTC)
    for w in snapshot.workers:
        up_s = (now - w.started_at).total_seconds()
        beat_s = (now - w.heartbeat_at).total_seconds()
        queues = ",".join(w.queues) if w.queues is not None else "all"
        table.add_row(w.id, queues, str(w.concurrency), f"{up_s:.0f}s", f"{beat_s:.0f}s ago")
    return table


def print_snapshot(snapshot: Snapshot) -> None:
    if snapshot.queues:
        console.print(queues_table(snapshot))
    else:
        console.print("no jobs yet")
    if snapshot.workers:
        console.print(workers_table(snapshot))
    console.print(
        f"{snapshot.workers_online} workers online ({snapshot.worker_slots} processes); "
        f"{snapshot.totals.jobs_per_s:.2f} jobs/s over the last {snapshot.window_s:g}s",
        highlight=False,
    )


@click.command()
@app_option
@database_option
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (as GET /api/stats), for scripts."
)
def stats(app_ref: str | None, database_url: str | None, as_json: bool) -> None:
    """Queue depths by state, workers online and throughput."""
    app = open_app(app_ref, database_url)
    snapshot = collect(app.store, online_within_s=app.settings.lease_s)
    if as_json:
        from taskmill.api.routes.stats import stats_out  # the API's wire format, loaded late

        print_json(stats_out(snapshot).model_dump(mode="json"))
    else:
        print_snapshot(snapshot)
