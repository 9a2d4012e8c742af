"""How a task's exception decides the job's fate: another attempt or failure now."""

from __future__ import annotations

import pytest

from taskmill import PermanentError, Taskmill
from taskmill.config import Settings
from taskmill.errors import StoreUnavailable, TaskmillError, ValidationError
from taskmill.images.errors import StorageError
from taskmill.worker.protocol import JobSpec, ReportKind
from taskmill.worker.runner import Runner


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (StoreUnavailable("database away"), ReportKind.ERROR),
        (StorageError("bucket unreachable"), ReportKind.ERROR),
        (RuntimeError("flaky"), ReportKind.ERROR),
        (ValidationError("bad input"), ReportKind.PERMANENT),
        (TaskmillError("cannot work"), ReportKind.PERMANENT),
        (PermanentError("give up"), ReportKind.PERMANENT),
    ],
)
def test_transient_errors_are_retried_and_input_errors_are_not(
    exc: Exception, kind: ReportKind
) -> None:
    app = Taskmill(settings=Settings(database_url="sqlite:///unused.db"))

    @app.task
    def fails() -> None:
        raise exc

    report = Runner(app).run(
        JobSpec("00000000-0000-7000-8000-000000000000", 1, "fails", "[]", "{}")
    )
    assert report.kind is kind
    assert report.error is not None and str(exc) in report.error
