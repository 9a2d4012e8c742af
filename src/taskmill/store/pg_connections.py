"""PostgreSQL connections: telling that the server ended one, and a connection kept for a
single hot statement next to the store's pool.

`enqueue` stores one job per committed transaction, so the disk's flush bounds it and what
is left to win is the client's own work around the round trip. Measured per insert on a
2-core machine: taking a connection from psycopg_pool and handing it back ~35-70 µs, and a
new cursor per statement ~25 µs (it looks up a dumper for each of the eleven parameters
again); together a fifth of a bare INSERT + commit. A connection and a cursor of its own,
reused, cost neither. One thread uses it at a time; a thread that finds it busy is told so
and takes a pool connection instead of waiting.
"""

from __future__ import annotations

import select
import threading
from collections.abc import Callable
from typing import Any

import psycopg


def ended_by_server(conn: psycopg.Connection[Any]) -> bool:
    """An idle connection has nothing to read unless the server ended it (a restart, a
    failover, an idle timeout, pg_terminate_backend) or sent something unasked for. One
    poll, no round trip: checked before use, a dead connection is replaced instead of
    failing the statement sent on it."""
    if conn.closed:
        return True
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    return bool(readable)


class DedicatedConnection:
    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: int,
        configure: Callable[[psycopg.Connection[Any]], None],
    ) -> None:
        self._url = url
        self._connect_timeout_s = connect_timeout_s
        self._configure = configure
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._cursor: psycopg.Cursor[Any] | None = None

    def try_fetchone(self, query: str, params: dict[str, Any]) -> tuple[bool, Any]:
        """(True, the first row or None) if the statement ran here, (False, None) if another
        thread holds the connection. Driver errors propagate; after one that may have
        broken the connection, the next call opens a new one."""
        if not self._lock.acquire(blocking=False):
            return False, None
        try:
            cursor = self._ready_cursor()
            cursor.execute(query, params)
            return True, cursor.fetchone()
        except psycopg.OperationalError:
            self._discard()
            raise
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            self._discard()

    def _ready_cursor(self) -> psycopg.Cursor[Any]:
        if self._conn is None or self._cursor is None or ended_by_server(self._conn):
            self._discard()
            conn = psycopg.connect(
                self._url, autocommit=True, connect_timeout=self._connect_timeout_s
            )
            self._configure(conn)
            self._conn, self._cursor = conn, conn.cursor()
        return self._cursor

    def _discard(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = self._cursor = None
