"""The app the dashboard's browser tests serve with `taskmill up -A`: the demo tasks (for the
submit form) and the shared test tasks (a job that runs for as long as asked, one that fails
at once), but not the image tasks, so the images API is absent as on a server without them."""

from __future__ import annotations

from taskmill import Taskmill
from taskmill.demo import register_demo_tasks
from tests.tasks_for_tests import register_test_tasks

app = register_demo_tasks(register_test_tasks(Taskmill()))
