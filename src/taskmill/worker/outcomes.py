"""From a child's report (or a kill) to the outcome the store records — pure."""

from __future__ import annotations

from datetime import UTC, datetime

from taskmill.jobs import JobStatus
from taskmill.retry import FailureKind, decide
from taskmill.store.base import ClaimedJob, Outcome
from taskmill.worker.protocol import Report, ReportKind

_FAILURE_KINDS = {
    ReportKind.ERROR: FailureKind.ERROR,
    ReportKind.PERMANENT: FailureKind.PERMANENT,
    ReportKind.RETRY: FailureKind.RETRY,
}


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def from_report(job: ClaimedJob, report: Report) -> Outcome:
    started, finished = _utc(report.started_at), _utc(report.finished_at)
    if report.kind is ReportKind.OK:
        return Outcome(
            job.id, job.attempt, JobStatus.COMPLETED, started, finished, report.result_json
        )
    if report.kind is ReportKind.SKIPPED:
        # Only a cancelled job is skipped; the store records it as cancelled.
        return failure(
            job, FailureKind.PERMANENT, "cancelled before it started", finished, finished
        )
    return failure(
        job, _FAILURE_KINDS[report.kind], report.error or "failed", started, finished,
        traceback=report.traceback, requested_delay_s=report.retry_delay_s,
    )  # fmt: skip


def failure(
    job: ClaimedJob,
    kind: FailureKind,
    error: str,
    started_at: datetime,
    finished_at: datetime,
    *,
    traceback: str | None = None,
    requested_delay_s: float | None = None,
) -> Outcome:
    """A failed attempt: retried after back-off while the job has attempts left."""
    decision = decide(
        kind,
        attempts=job.attempt,
        max_retries=job.max_retries,
        backoff=job.backoff,
        requested_delay_s=requested_delay_s,
    )
    return Outcome(
        job.id, job.attempt, decision.status, started_at, finished_at,
        error=error, traceback=traceback, retry_delay_s=decision.delay_s,
    )  # fmt: skip
