"""An app with periodic tasks, for `-A tests.scheduler.periodic_app:app` (CLI tests)."""

from __future__ import annotations

from taskmill import Taskmill
from tests.tasks_for_tests import register_test_tasks

app = register_test_tasks(Taskmill())


@app.periodic("*/10 * * * * *")
def heartbeat() -> None:
    """Every ten seconds."""


app.schedule("add", "0 9 * * 1-5", name="add.weekdays", tz="Europe/Paris", args=[1, 2])
