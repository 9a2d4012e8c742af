"""Running one attempt of a job inside a child process and classifying how it ended."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
import traceback
from typing import Any

from taskmill.app import Taskmill
from taskmill.context import JobContext, ProgressSink, bind_job, unbind_job
from taskmill.errors import PermanentError, Retry, TaskmillError, TransientError
from taskmill.tasks import to_json
from taskmill.worker.protocol import JobSpec, Report, ReportKind

MAX_ERROR_CHARS = 2000
MAX_TRACEBACK_CHARS = 20000


def describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:MAX_ERROR_CHARS]


class Runner:
    """Runs attempts for one child: sync tasks directly, `async def` tasks on one event loop
    that lives as long as the child (a loop per job would cost more than a no-op job)."""

    def __init__(self, app: Taskmill, progress: ProgressSink | None = None) -> None:
        self.app = app
        self.progress: ProgressSink = progress or (lambda *_: None)
        self._loop: asyncio.AbstractEventLoop | None = None

    def run(self, spec: JobSpec) -> Report:
        started = time.time()
        token = bind_job(JobContext(spec.id, spec.task, spec.attempt, self.progress, self.app))
        try:
            value = self._call(spec)
            result = to_json(value, "the task's result")
        except Retry as exc:
            return self._report(spec, started, ReportKind.RETRY, exc, retry_delay_s=exc.delay)
        except TransientError as exc:  # the database or storage was away: try again later
            return self._report(spec, started, ReportKind.ERROR, exc)
        except (PermanentError, TaskmillError) as exc:
            # TaskmillError here: unknown task in this worker, a non-JSON result — retrying
            # the same code cannot help.
            return self._report(spec, started, ReportKind.PERMANENT, exc)
        except Exception as exc:
            return self._report(spec, started, ReportKind.ERROR, exc)
        finally:
            unbind_job(token)
        return Report(spec.id, spec.attempt, ReportKind.OK, started, time.time(), result)

    def _call(self, spec: JobSpec) -> Any:
        fn = self.app.get_task(spec.task).fn
        args = json.loads(spec.args_json) if spec.args_json != "[]" else ()
        kwargs = json.loads(spec.kwargs_json) if spec.kwargs_json != "{}" else {}
        value = fn(*args, **kwargs)
        if inspect.isawaitable(value):
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
            value = self._loop.run_until_complete(value)
        return value

    @staticmethod
    def _report(
        spec: JobSpec,
        started: float,
        kind: ReportKind,
        exc: BaseException,
        retry_delay_s: float | None = None,
    ) -> Report:
        tb = "".join(traceback.format_exception(exc))[-MAX_TRACEBACK_CHARS:]
        return Report(
            spec.id, spec.attempt, kind, started, time.time(),
            error=describe(exc), traceback=tb, retry_delay_s=retry_delay_s,
        )  # fmt: skip

    def close(self) -> None:
        if self._loop is not None:
            self._loop.close()
