"""The exception tree: everything taskmill raises derives from TaskmillError."""

from __future__ import annotations


class TaskmillError(Exception):
    """Base of every error taskmill raises on purpose."""


class ConfigError(TaskmillError):
    """A setting (environment variable, flag or argument) has a value taskmill cannot use."""


class ValidationError(TaskmillError, ValueError):
    """Input to enqueue (task name, arguments, options) is refused; nothing was stored."""


class UnknownTaskError(ValidationError):
    """The task name is not registered with this app."""


class JobNotFound(TaskmillError, LookupError):
    """No job has this id."""


class InvalidTransition(TaskmillError):
    """The job's current state does not allow the requested change (e.g. cancel a completed job)."""

    def __init__(self, job_id: str, status: str, action: str) -> None:
        super().__init__(f"cannot {action} job {job_id}: it is {status}")
        self.job_id = job_id
        self.status = status
        self.action = action


class TransientError(TaskmillError):
    """A failure that may pass if the operation is retried: a task that raises one gets
    another attempt, unlike other TaskmillErrors (which say the input cannot work)."""


class StoreError(TransientError):
    """The database failed or could not be reached; the operation may be retried."""


class StoreUnavailable(StoreError):
    """The database cannot be reached at all (connection refused, DNS, authentication)."""


class PermanentError(Exception):
    """Raised by a task: fail the job now, without further retries."""


class Retry(Exception):
    """Raised by a task: ask for another attempt, optionally after `delay` seconds.

    The attempt still counts against `max_retries`.
    """

    def __init__(self, delay: float | None = None, reason: str = "retry requested") -> None:
        super().__init__(reason)
        self.delay = delay
