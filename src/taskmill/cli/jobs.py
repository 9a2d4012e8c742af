"""Job control from the shell: submit, status, cancel, retry."""

from __future__ import annotations

import json
from typing import Any

import click

from taskmill.cli.base import app_option, database_option, open_app
from taskmill.cli.output import job_as_dict, print_job, print_json
from taskmill.errors import ValidationError
from taskmill.jobs import Job

json_flag = click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")


def _parse_json(text: str | None, what: str, kind: type) -> Any:
    if text is None:
        return kind()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, kind):
        raise ValidationError(f"{what} must be a JSON {'array' if kind is list else 'object'}")
    return value


def _show(job: Job, as_json: bool) -> None:
    if as_json:
        print_json(job_as_dict(job))
    else:
        print_job(job)


@click.command()
@click.argument("task")
@click.option("--args", "args_text", metavar="JSON", help="Positional arguments, e.g. '[2, 3]'.")
@click.option(
    "--kwargs", "kwargs_text", metavar="JSON", help='Keyword arguments, e.g. \'{"to": "a@b.c"}\'.'
)
@click.option("--queue", default=None)
@click.option("--priority", type=int, default=None)
@click.option("--delay", type=float, default=None, help="Seconds before it may start.")
@click.option("--idempotency-key", default=None)
@click.option(
    "--wait",
    "wait_s",
    is_flag=False,
    flag_value=300.0,
    type=float,
    default=None,
    help="Wait for the job to finish (optionally at most this many seconds).",
)
@app_option
@database_option
@json_flag
def submit(
    task: str, args_text: str | None, kwargs_text: str | None, queue: str | None,
    priority: int | None, delay: float | None, idempotency_key: str | None,
    wait_s: float | None, app_ref: str | None, database_url: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Enqueue TASK and print the job."""
    app = open_app(app_ref, database_url)
    job = app.enqueue(
        task, _parse_json(args_text, "--args", list), _parse_json(kwargs_text, "--kwargs", dict),
        queue=queue, priority=priority, delay=delay, idempotency_key=idempotency_key,
    )  # fmt: skip
    if wait_s is not None:
        job = app.wait(job.id, timeout=wait_s)
    _show(job, as_json)
    if job.status.value == "failed":
        raise SystemExit(1)


@click.command()
@click.argument("job_id")
@app_option
@database_option
@json_flag
def status(job_id: str, app_ref: str | None, database_url: str | None, as_json: bool) -> None:
    """Show a job."""
    _show(open_app(app_ref, database_url).get(job_id), as_json)


@click.command()
@click.argument("job_id")
@app_option
@database_option
@json_flag
def cancel(job_id: str, app_ref: str | None, database_url: str | None, as_json: bool) -> None:
    """Cancel a pending job, or have a running one killed."""
    _show(open_app(app_ref, database_url).cancel(job_id), as_json)


@click.command()
@click.argument("job_id")
@app_option
@database_option
@json_flag
def retry(job_id: str, app_ref: str | None, database_url: str | None, as_json: bool) -> None:
    """Run a failed or cancelled job again."""
    _show(open_app(app_ref, database_url).retry(job_id), as_json)
