"""current_job(): what a running task knows about itself, and how it reports progress."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from taskmill.errors import TaskmillError, ValidationError

if TYPE_CHECKING:
    from taskmill.app import Taskmill

ProgressSink = Callable[[str, float, str | None], None]


@dataclass(frozen=True, slots=True)
class JobContext:
    id: str
    task: str
    attempt: int
    _sink: ProgressSink
    app: Taskmill | None = None  # the app the worker runs: its store, settings and tasks

    def set_progress(self, fraction: float, message: str | None = None) -> None:
        """Record progress between 0.0 and 1.0 with an optional short message.

        Updates are coalesced by the worker, so calling this often is cheap."""
        if not isinstance(fraction, int | float) or not math.isfinite(fraction):
            raise ValidationError(f"progress must be a number from 0 to 1, got {fraction!r}")
        if not 0.0 <= fraction <= 1.0:
            raise ValidationError(f"progress must be from 0 to 1, got {fraction}")
        if message is not None and not isinstance(message, str):
            raise ValidationError(
                f"progress message must be a string, got {type(message).__name__}"
            )
        self._sink(self.id, float(fraction), message[:500] if message else message)


_current: ContextVar[JobContext | None] = ContextVar("taskmill_current_job", default=None)


def current_job() -> JobContext:
    """The job the calling task is running as. Raises TaskmillError outside a worker."""
    ctx = _current.get()
    if ctx is None:
        raise TaskmillError("current_job() was called outside a running taskmill job")
    return ctx


def running_app(default: Taskmill) -> Taskmill:
    """The app the worker runs (a user's app may include tasks registered on `default`),
    else `default`. Only inside a running job."""
    return current_job().app or default


def bind_job(ctx: JobContext | None) -> object:
    """Make `ctx` the current job; returns a token for `unbind_job`."""
    return _current.set(ctx)


def unbind_job(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]
