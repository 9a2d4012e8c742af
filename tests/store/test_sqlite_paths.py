"""Where the SQLite file cannot be, the error says so (no OSError traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskmill import StoreUnavailable, Taskmill
from taskmill.config import Settings


def test_a_database_path_under_a_file_is_a_clear_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    app = Taskmill(settings=Settings.from_env({}, database_url=f"sqlite:///{blocker}/tm.db"))
    with pytest.raises(StoreUnavailable, match=r"cannot create .*not-a-directory/tm\.db"):
        app.migrate()
    app.close()
