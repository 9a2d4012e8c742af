"""The built-in app that `taskmill up` and `-A`-less commands use: the demo tasks (and, in
time, the image tasks). A user's app can take them all with `app.include(builtin.app)`."""

from __future__ import annotations

from taskmill.app import Taskmill
from taskmill.demo import register_demo_tasks

app = register_demo_tasks(Taskmill())
