"""Messages between the supervisor and its children (pickled over a pipe; internal only —
job arguments and results are JSON in the store). Tuples, because thousands a second
cross the pipe and a NamedTuple pickles several times faster than a dataclass."""

from __future__ import annotations

import enum
from typing import NamedTuple


class JobSpec(NamedTuple):
    """What a child needs to run one attempt. Arguments travel as the JSON text the store
    holds; the child decodes them (in parallel with its siblings, not in the supervisor)."""

    id: str
    attempt: int
    task: str
    args_json: str
    kwargs_json: str


class ReportKind(enum.Enum):
    OK = "ok"
    ERROR = "error"
    PERMANENT = "permanent"
    RETRY = "retry"
    SKIPPED = "skipped"  # cancelled before it started: never ran


class Report(NamedTuple):
    """How one attempt ended in the child. Times are Unix seconds."""

    job_id: str
    attempt: int
    kind: ReportKind
    started_at: float
    finished_at: float
    result_json: str | None = None
    error: str | None = None
    traceback: str | None = None
    retry_delay_s: float | None = None


# supervisor -> child
RUN = "run"  # payload: list[JobSpec], run in order after those already given
CANCEL = "cancel"  # payload: job id; skip it if it has not started
DRAIN = "drain"  # finish the current job, hand back the rest
# child -> supervisor
READY = "ready"  # payload: pid
DONE = "done"  # payload: list[Report], in the order the jobs ran
PROGRESS = "progress"  # payload: (job id, attempt, fraction, message)
RETURNED = "returned"  # payload: list of (job id, attempt) never started
