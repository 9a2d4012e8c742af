"""Finding an app from a `module:attribute` reference, as `-A` takes it."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from taskmill.app import Taskmill
from taskmill.errors import ConfigError

BUILTIN_APP = "taskmill.builtin:app"


def load_app(ref: str | None) -> Taskmill:
    """Import `module:attribute` (attribute defaults to `app`) from the current directory or
    the Python path. Raises ConfigError with what went wrong."""
    ref = ref or BUILTIN_APP
    module_name, _, attr = ref.partition(":")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # `-A mytasks:app` from the project directory
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"-A {ref}: cannot import {module_name!r}: {exc}") from None
    app = getattr(module, attr or "app", None)
    if not isinstance(app, Taskmill):
        raise ConfigError(f"-A {ref}: {module_name}.{attr or 'app'} is not a Taskmill app")
    return app
