"""The SQLite listener: on Linux an inotify descriptor wakes a waiting worker when another
process commits; elsewhere, or when inotify cannot be had, `check` is polled."""

from __future__ import annotations

import errno
import logging
import os
import select
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskmill.store import inotify
from taskmill.store.sqlite import SQLiteListener
from tests.helpers import enqueue_keys, make_app, migrate_database, run_in_processes, wait_until

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux-only")

AWAIT_S = 5.0  # for an event that is awaited: only a very loaded machine takes long
ABSENT_S = 0.2  # for asserting that nothing happens


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A migrated database that no connection has open (so it has no -wal file)."""
    path = tmp_path / "taskmill.db"
    app = make_app(f"sqlite:///{path}")
    app.migrate()
    app.close()
    return path


@pytest.fixture
def listener(db_path: Path) -> Iterator[SQLiteListener]:
    listener = SQLiteListener(str(db_path))
    listener.check()  # the first call reports "maybe": nothing to compare with yet
    yield listener
    listener.close()


def enqueue_in_another_process(path: Path) -> None:
    run_in_processes(enqueue_keys, [(f"sqlite:///{path}", [os.urandom(8).hex()])])


def readable(fd: int | None, timeout_s: float) -> bool:
    assert fd is not None, "the listener gave no descriptor to wait on"
    return select.select([fd], [], [], timeout_s)[0] == [fd]


@linux_only
def test_a_commit_in_another_process_makes_the_descriptor_readable(
    db_path: Path, listener: SQLiteListener
) -> None:
    enqueue_in_another_process(db_path)

    assert readable(listener.fileno(), AWAIT_S)
    assert listener.check() is True
    assert listener.check() is False
    assert not readable(listener.fileno(), 0)


@linux_only
def test_without_a_commit_the_descriptor_stays_quiet(
    db_path: Path, listener: SQLiteListener
) -> None:
    reader = make_app(f"sqlite:///{db_path}")
    try:
        # Reads from another connection wake no one.
        assert reader.store.get_job("00000000-0000-7000-8000-000000000000") is None

        assert not readable(listener.fileno(), ABSENT_S)
        assert listener.check() is False
    finally:
        reader.close()


@linux_only
def test_a_wal_file_created_after_the_listener_is_watched(db_path: Path) -> None:
    wal = Path(f"{db_path}-wal")
    assert not wal.exists()
    listener = SQLiteListener(str(db_path))
    try:
        listener.check()
        enqueue_in_another_process(db_path)

        assert wal.exists()
        assert readable(listener.fileno(), AWAIT_S)
        assert listener.check() is True
    finally:
        listener.close()


@linux_only
def test_a_database_created_after_the_listener_is_watched(tmp_path: Path) -> None:
    """A worker may start before `taskmill migrate`: no tables, no WAL mode, no -wal."""
    path = tmp_path / "later.db"
    listener = SQLiteListener(str(path))
    try:
        listener.check()
        run_in_processes(migrate_database, [(f"sqlite:///{path}",)])

        assert readable(listener.fileno(), AWAIT_S)
        assert listener.check() is True
    finally:
        listener.close()


@linux_only
def test_commits_after_a_checkpoint_truncated_the_wal_are_seen(
    db_path: Path, listener: SQLiteListener
) -> None:
    enqueue_in_another_process(db_path)
    assert readable(listener.fileno(), AWAIT_S)
    assert listener.check() is True
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        busy, _, _ = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
    finally:
        other.close()
    assert Path(f"{db_path}-wal").stat().st_size == 0
    listener.check()  # "maybe": SQLite counts the reset of the WAL as a change
    assert listener.check() is False

    enqueue_in_another_process(db_path)
    assert listener.check() is True
    enqueue_in_another_process(db_path)  # and the descriptor is back in use
    assert readable(listener.fileno(), AWAIT_S)
    assert listener.check() is True


# A transaction that does not fit the page cache writes to the -wal file before it commits,
# as every commit does before its fsync: the listener hears of it before it can see it.
HOLD_A_TRANSACTION_OPEN = textwrap.dedent(
    """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("PRAGMA cache_size = 1")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("CREATE TABLE filler (data BLOB)")
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200) "
        "INSERT INTO filler SELECT randomblob(4000) FROM n"
    )
    print("written", flush=True)
    sys.stdin.readline()
    conn.execute("COMMIT")
    """
)


@linux_only
def test_an_event_ahead_of_its_commit_switches_to_polling_until_the_commit_shows(
    db_path: Path, listener: SQLiteListener
) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_TRANSACTION_OPEN, str(db_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "written\n"
        assert readable(listener.fileno(), AWAIT_S)

        assert listener.check() is False
        assert listener.fileno() is None
        assert listener.poll_interval_s < SQLiteListener.BUSY_POLL_S

        writer.communicate("commit\n", timeout=AWAIT_S)
        assert writer.returncode == 0
        assert listener.check() is True
        assert listener.fileno() is not None
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.communicate()


def test_without_inotify_the_listener_polls(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """inotify_init1 failing (the per-user instance limit, a libc without it) cannot be
    caused from here without starving the whole test run of descriptors, so the call is
    replaced by one that fails as the kernel would."""

    def fail(*_: object) -> int:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(inotify, "inotify_init", fail)
    with caplog.at_level(logging.DEBUG, logger="taskmill.store"):
        listener = SQLiteListener(str(db_path))
    try:
        assert [r.getMessage() for r in caplog.records] == [
            "SQLite listener polls: no inotify watch ([Errno 24] Too many open files)"
        ]
        assert listener.fileno() is None
        assert listener.poll_interval_s == SQLiteListener.BUSY_POLL_S
        listener.check()
        assert listener.check() is False

        enqueue_in_another_process(db_path)

        wait_until(listener.check, timeout_s=AWAIT_S, what="polling to see the enqueue")
        assert listener.check() is False
    finally:
        listener.close()


@linux_only
def test_close_closes_the_inotify_descriptor(db_path: Path) -> None:
    listener = SQLiteListener(str(db_path))
    fd = listener.fileno()
    assert fd is not None
    assert os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
    listener.close()
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)
