"""Everything the CLI prints: job tables for people, JSON for scripts."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from taskmill.jobs import Job

console = Console()

_STATUS_STYLE = {
    "pending": "yellow",
    "running": "cyan",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def job_as_dict(job: Job) -> dict[str, Any]:
    data = dataclasses.asdict(job)
    for key, value in data.items():
        if isinstance(value, datetime):
            data[key] = value.isoformat()
    data["status"] = job.status.value
    return data


def print_json(value: Any) -> None:
    click_echo(json.dumps(value, indent=2, default=str))


def click_echo(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def print_job(job: Job) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    style = _STATUS_STYLE.get(job.status.value, "")
    rows: list[tuple[str, str]] = [
        ("id", job.id),
        ("task", job.task),
        ("status", f"[{style}]{job.status.value}[/]"),
        ("queue / priority", f"{job.queue} / {job.priority}"),
        ("attempts", f"{job.attempts} of {job.max_retries + 1}"),
        ("created", job.created_at.isoformat()),
        ("scheduled", job.scheduled_at.isoformat()),
    ]
    optional = {
        "started": job.started_at and job.started_at.isoformat(),
        "finished": job.finished_at and job.finished_at.isoformat(),
        "duration": job.duration_s is not None and f"{job.duration_s:.3f}s",
        "worker": job.worker,
        "progress": job.progress is not None and f"{job.progress:.0%} {job.progress_message or ''}",
        "result": job.status.value == "completed" and json.dumps(job.result),
        "error": job.error,
    }
    rows += [(k, str(v)) for k, v in optional.items() if v]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
