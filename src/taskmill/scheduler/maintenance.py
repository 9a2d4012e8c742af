"""Maintenance the scheduler runs on a timer: expired-lease recovery and job retention.

Lease recovery is the same store call workers make (one implementation); running it here
too means jobs of a dead worker come back even when no other worker is up. Every
scheduler may run both at once: recovery is a guarded UPDATE and retention deletes rows
the others skip (SKIP LOCKED on PostgreSQL, one writer at a time on SQLite).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taskmill.app import Taskmill

log = logging.getLogger("taskmill.scheduler")

PRUNE_EVERY_S = 60.0
PRUNE_BATCH = 1000  # rows per DELETE: short transactions, no long lock on the jobs table


class Maintenance:
    """Runs each chore when due (`run_due`), or on demand. Store failures propagate as
    StoreError; a chore that failed is due again on the next call."""

    def __init__(
        self,
        app: Taskmill,
        *,
        batch_size: int = PRUNE_BATCH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.batch_size = batch_size
        self.clock = clock
        self._due_at = {"recover": 0.0, "prune": 0.0}

    def run_due(self) -> float:
        """Run the chores that are due; returns seconds until the next one is."""
        now = self.clock()
        if now >= self._due_at["recover"]:
            self.recover_leases()
            self._due_at["recover"] = now + self.app.settings.lease_s / 2
        if now >= self._due_at["prune"]:
            # A full batch means more may be waiting: go on at the next turn of the loop,
            # so a large backlog never holds periodic ticks back.
            more = self.prune_batch() == self.batch_size
            self._due_at["prune"] = now if more else now + PRUNE_EVERY_S
        return max(0.0, min(self._due_at.values()) - now)

    def recover_leases(self) -> int:
        """Return jobs whose worker vanished to pending (or fail them when out of
        attempts); returns how many."""
        recovered = self.app.store.recover_expired_leases()
        if recovered:
            log.warning(
                "recovered %d jobs whose worker vanished", recovered,
                extra={"action": "lease_expired"},
            )  # fmt: skip
        return recovered

    def prune_batch(self) -> int:
        """Delete one batch of jobs finished longer than TASKMILL_JOB_RETENTION ago (0
        keeps them forever); returns how many."""
        retention_s = self.app.settings.job_retention_s
        if retention_s <= 0:
            return 0
        pruned = self.app.store.prune_jobs(older_than_s=retention_s, limit=self.batch_size)
        if pruned:
            log.info(
                "pruned %d jobs finished more than %gs ago", pruned, retention_s,
                extra={"action": "jobs_pruned"},
            )  # fmt: skip
        return pruned

    def prune_jobs(self) -> int:
        """Prune batch after batch until none is left; returns how many in all."""
        total = 0
        while (pruned := self.prune_batch()) > 0:
            total += pruned
            if pruned < self.batch_size:
                break
        return total
