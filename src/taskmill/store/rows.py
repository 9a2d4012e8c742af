"""Turning stored rows into Job records, shared by both backends."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from taskmill.jobs import Job, JobStatus

_TIME_FIELDS = ("created_at", "scheduled_at", "started_at", "finished_at", "lease_expires_at")
_JSON_FIELDS = ("args", "kwargs", "result")


def job_from_row(row: Mapping[str, Any], *, epoch_times: bool, json_text: bool) -> Job:
    """`epoch_times`: timestamps are Unix seconds (SQLite); `json_text`: JSON columns come as
    text rather than decoded (SQLite)."""
    values = dict(row)
    values["id"] = str(values["id"])
    values["status"] = JobStatus(values["status"])
    values["cancel_requested"] = bool(values["cancel_requested"])
    values["backoff"] = float(values["backoff"])
    if epoch_times:
        for name in _TIME_FIELDS:
            if values[name] is not None:
                values[name] = datetime.fromtimestamp(values[name], UTC)
    if json_text:
        for name in _JSON_FIELDS:
            if values[name] is not None:
                values[name] = json.loads(values[name])
    return Job(**values)
