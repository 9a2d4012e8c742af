"""Recording outcomes off the supervisor's loop.

Writing a batch of outcomes waits on the database (the commit is flushed to disk). On its
own thread and connection, that wait overlaps the loop's claims and dispatches, as two
connections would; the driver releases the GIL while it waits."""

from __future__ import annotations

import logging
import threading
import time

from taskmill.errors import StoreError
from taskmill.store.base import Outcome, Store

log = logging.getLogger("taskmill.worker")

RETRY_MAX_S = 10.0


class OutcomeWriter:
    """Writes submitted outcomes in order, batching whatever piled up meanwhile. On a
    store failure it keeps them and retries with back-off: none is ever dropped while the
    process lives."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: list[Outcome] = []
        self._writing = 0
        self._closing = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="taskmill-outcomes", daemon=True)
        self._thread.start()

    def submit(self, outcomes: list[Outcome]) -> None:
        with self._cond:
            self._pending.extend(outcomes)
            self._cond.notify_all()

    @property
    def backlog(self) -> int:
        with self._cond:
            return len(self._pending) + self._writing

    def close(self, timeout_s: float) -> int:
        """Wait up to `timeout_s` for everything submitted to be written; returns how
        many outcomes could not be (their jobs come back when their leases expire)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            while self._pending or self._writing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return len(self._pending) + self._writing

    def _run(self) -> None:
        backoff_s = 0.0
        while True:
            with self._cond:
                while not self._pending:
                    if self._closing:
                        return
                    self._cond.wait()
                batch, self._pending = self._pending, []
                self._writing = len(batch)
            try:
                self.store.finish_jobs(batch)
            except StoreError as exc:
                backoff_s = min(RETRY_MAX_S, max(0.25, backoff_s * 2))
                log.error(
                    "store call failed, keeping %d outcomes, retrying in %.1fs: %s",
                    len(batch), backoff_s, exc, extra={"action": "store_unavailable"},
                )  # fmt: skip
                with self._cond:
                    self._pending[:0] = batch
                    self._writing = 0
                    self._cond.wait(backoff_s)
                continue
            backoff_s = 0.0
            with self._cond:
                self._writing = 0
                self._cond.notify_all()
