"""The built-in app that `taskmill up` and `-A`-less commands use."""

from __future__ import annotations

from taskmill.app import Taskmill

app = Taskmill()
