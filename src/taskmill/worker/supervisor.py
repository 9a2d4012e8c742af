"""The supervisor: claims jobs for its children, records what they report, and enforces
what a child cannot enforce on itself — hard timeouts, cancels, crashes, shutdown.

One thread, one loop: wait for child messages, child deaths, store news or a deadline;
then record outcomes, claim for free slots, and do housekeeping. Only this process talks
to the store for jobs it runs; children just run code."""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

from taskmill.app import Taskmill
from taskmill.errors import StoreError
from taskmill.ids import new_id
from taskmill.retry import FailureKind
from taskmill.store.base import ClaimedJob, Listener, Outcome, Progress, WorkerInfo
from taskmill.worker import outcomes, protocol
from taskmill.worker.children import ChildHandle, spawn_child
from taskmill.worker.protocol import Report
from taskmill.worker.writer import OutcomeWriter

log = logging.getLogger("taskmill.worker")
T = TypeVar("T")

TARGET_BUFFER_S = 0.05  # work a child holds in reserve: enough to never idle on us
IDLE_POLL_S = 1.0  # without news, look for due jobs (delays, retries) this often
CANCEL_CHECK_S = 0.5  # a running job is killed within this (plus a loop turn) of a cancel
PROGRESS_FLUSH_S = 0.5
MAX_WAIT_S = 0.25
OUTAGE_BACKOFF_MAX_S = 10.0
WRITER_CLOSE_S = 10.0  # at exit, how long to keep trying to record computed outcomes


@dataclass(frozen=True)
class WorkerOptions:
    app_ref: str | None = None
    queues: tuple[str, ...] | None = None  # None serves every queue
    concurrency: int = field(default_factory=lambda: os.cpu_count() or 1)
    grace_s: float = 30.0
    lease_s: float | None = None  # None: the app's settings
    max_prefetch: int = 256
    max_tasks_per_child: int | None = None
    max_memory_per_child_mib: int | None = None
    # spawn: children are our direct children, so a signal to the process group reaches
    # them (they ignore it) rather than killing a fork server we depend on; and nothing
    # inherited from our threads or connections (psycopg's pool, libvips) can deadlock them.
    start_method: str = "spawn"


class Phase(Enum):
    RUNNING = "running"
    DRAINING = "draining"  # first signal: no new claims, running jobs may finish
    STOPPED = "stopped"


class Supervisor:
    def __init__(self, app: Taskmill, options: WorkerOptions) -> None:
        self.app = app
        self.options = options
        self.store = app.store
        self.lease_s = options.lease_s or app.settings.lease_s
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{new_id()[-8:]}"
        self.ctx = multiprocessing.get_context(options.start_method)
        self.children: dict[int, ChildHandle] = {}
        self.phase = Phase.RUNNING
        self.drain_deadline = 0.0
        self.signals = 0
        self.finished: list[Outcome] = []  # outcomes of this loop turn, for the writer
        self.writer = OutcomeWriter(self.store)
        self.releases: list[tuple[str, int]] = []
        self.progress: dict[str, Progress] = {}
        self.listener: Listener | None = None
        self.maybe_work = True
        self.next_poll = 0.0
        self.avg_job_s: float | None = None  # moving average of recent job durations
        self.store_down_until = 0.0
        self.outage_backoff_s = 0.0
        self._timers: dict[str, float] = {}
        self._wake_r, self._wake_w = os.pipe()
        self.signals_seen = 0  # delivered by the OS; `signals` counts those acted on
        self.registered = False
        self.announced = False  # "ready" is logged once, when every first child is up

    # -- the verbs ------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped by signal; returns the process exit code."""
        self._install_signals()
        self.start_children()
        log.info(
            "worker %s started: %d children, queues %s",
            self.worker_id, len(self.children), ",".join(self.options.queues or ["*"]),
            extra={"action": "worker_started", "worker": self.worker_id},
        )  # fmt: skip
        try:
            while self.phase is not Phase.STOPPED and self.signals_seen < 2:
                self.step()
        finally:
            self.stop_children()
            self._flush(force=True)
            unwritten = self.writer.close(WRITER_CLOSE_S if self.signals_seen < 2 else 1.0)
            if unwritten:
                log.error(
                    "could not record %d outcomes; their jobs run again once their leases "
                    "expire", unwritten, extra={"action": "outcomes_unwritten"},
                )  # fmt: skip
            self._guarded(lambda: self.store.unregister_worker(self.worker_id))
            if self.listener is not None:
                self.listener.close()
            log.info("worker %s stopped", self.worker_id, extra={"action": "worker_stopped"})
        return 0

    def start_children(self) -> None:
        for index in range(self.options.concurrency):
            self.children[index] = spawn_child(self.ctx, index, self.options.app_ref)

    def stop_children(self) -> None:
        for child in self.children.values():
            if child.process.is_alive():
                child.process.kill()
        for child in self.children.values():
            child.process.join(5)
            child.conn.close()
            self._release(child.assigned_jobs())
        self.children.clear()

    def check_children(self, *, respawn: bool = True) -> None:
        """Reap children that died; their running job counts a crashed attempt."""
        for index, child in list(self.children.items()):
            if child.process.is_alive():
                continue
            child.process.join()
            self._read_child(child.conn)  # what it reported before dying still counts
            code = child.process.exitcode
            self._fail_head(child, FailureKind.CRASH, f"worker child died (exit code {code})")
            self._replace(index, respawn=respawn)

    def request_stop(self) -> None:
        """First call: drain (no new claims, running jobs finish within the grace period,
        unstarted ones go back). Second call: stop now."""
        self.signals += 1
        if self.signals > 1:
            self.phase = Phase.STOPPED
            return
        log.info(
            "stopping: finishing running jobs (grace %.0fs)", self.options.grace_s,
            extra={"action": "worker_draining"},
        )  # fmt: skip
        self.phase = Phase.DRAINING
        self.drain_deadline = time.monotonic() + self.options.grace_s
        for child in self.children.values():
            self._send(child, (protocol.DRAIN, None))

    # -- one turn of the loop -------------------------------------------------------------

    def step(self) -> None:
        self._wait(self._wait_timeout())
        self._consume_signals()
        self.check_children(respawn=self.phase is Phase.RUNNING)
        self._enforce_deadlines()
        # An idle child waits on the claim: claim before handing outcomes to the writer
        # thread (on SQLite a claim that meets the writer's commit waits out the busy
        # handler's first sleep, 1 ms or more). Children with jobs queued wait on nothing,
        # and with short jobs the writer is the bottleneck: outcomes first then.
        claim_first = self.phase is Phase.RUNNING and self._has_idle_child()
        if claim_first:
            self._claim()
        self._flush()
        self._housekeeping()  # while draining too: leases of finishing jobs must not lapse
        if self.phase is Phase.RUNNING and not claim_first:
            self._claim()
        elif self.phase is Phase.DRAINING:
            self._drain_progress()

    def _wait(self, timeout_s: float) -> None:
        waitables: list[Any] = [self._wake_r]
        for child in self.children.values():
            waitables += [child.conn, child.process.sentinel]
        fd, news = self._listener_fd()
        if fd is not None:
            waitables.append(fd)
        elif news:
            timeout_s = 0.0  # a polled store just changed: claim now, not after a nap
        for ready in wait(waitables, timeout_s):
            if isinstance(ready, Connection):
                self._read_child(ready)
            elif ready == fd:
                self._check_listener()

    def _wait_timeout(self) -> float:
        now = time.monotonic()
        horizon = [now + MAX_WAIT_S]
        # Look at the store only with a slot to fill: while every child is busy, the next
        # turn that matters comes with a child's report (and polling then would spin).
        if self.phase is Phase.RUNNING and self._free_slots():
            horizon.append(self._claim_due_at(now))
            if self.listener is not None and self.listener.fileno() is None:
                horizon.append(now + self.listener.poll_interval_s)
        for child in self.children.values():
            head = child.head
            if head is not None and head.timeout_s is not None:
                horizon.append(child.head_since + head.timeout_s)
        return max(0.0, min(horizon) - now)

    def _read_child(self, conn: Connection) -> None:
        child = next((c for c in self.children.values() if c.conn is conn), None)
        if child is None:
            return
        try:
            while conn.poll():
                self._on_message(child, conn.recv())
        except (EOFError, OSError):
            pass  # it died; check_children records that

    def _on_message(self, child: ChildHandle, message: tuple[str, Any]) -> None:
        kind, payload = message
        if kind == protocol.DONE:
            for report in payload:
                self._on_done(child, report)
        elif kind == protocol.READY:
            child.ready = True
            if not self.announced and all(c.ready for c in self.children.values()):
                self.announced = True
                log.info(
                    "worker %s ready: %d children serving", self.worker_id, len(self.children),
                    extra={"action": "worker_ready"},
                )  # fmt: skip
        elif kind == protocol.PROGRESS:
            job_id, attempt, fraction, text = payload
            self.progress[job_id] = Progress(job_id, attempt, fraction, text)
        elif kind == protocol.RETURNED:
            self._release(child.take([job_id for job_id, _ in payload]))

    def _on_done(self, child: ChildHandle, report: Report) -> None:
        job = child.finish(report.job_id)
        if job is None:
            return
        self.finished.append(outcomes.from_report(job, report))
        self.progress.pop(job.id, None)
        took = max(0.0, report.finished_at - report.started_at)
        self.avg_job_s = took if self.avg_job_s is None else 0.9 * self.avg_job_s + 0.1 * took
        if not child.assigned and self._spent(child):
            self._recycle(child, f"{child.jobs_done} jobs, {child.rss_mib():.0f} MiB resident")

    def _has_idle_child(self) -> bool:
        return any(c.ready and not c.assigned for c in self.children.values())

    def _spent(self, child: ChildHandle) -> bool:
        """A child due for replacement takes no more work and is recycled once idle."""
        limit = self.options.max_tasks_per_child
        if limit and child.jobs_done >= limit:
            return True
        memory_limit = self.options.max_memory_per_child_mib
        return bool(memory_limit and child.rss_mib() > memory_limit)

    # -- claiming -------------------------------------------------------------------------

    def _prefetch(self) -> int:
        """Jobs per child: enough short jobs to cover ~50 ms; one while durations are unknown
        or long, so a job marked running is running, not queued behind another in a child,
        and long jobs are not held back from other workers."""
        if self.avg_job_s is None:
            return 1
        return max(
            1, min(self.options.max_prefetch, int(TARGET_BUFFER_S / max(self.avg_job_s, 1e-6)))
        )

    def _free_slots(self) -> dict[int, int]:
        """Child index -> how many more jobs it takes now (children with room only)."""
        prefetch = self._prefetch()
        # Room first: `_spent` may read /proc, and this runs every turn of the loop.
        return {
            c.index: prefetch - len(c.assigned)
            for c in self.children.values()
            if c.ready and len(c.assigned) < prefetch and not self._spent(c)
        }

    def _claim_due_at(self, now: float) -> float:
        """When to look at the store next: now on news of work, else at the next poll;
        never while it is known to be down."""
        due = now if self.maybe_work else self.next_poll
        return max(due, self.store_down_until)

    def _claim(self) -> None:
        now = time.monotonic()
        if now < self._claim_due_at(now):
            return
        free = self._free_slots()
        limit = sum(free.values())
        if limit == 0:
            return
        jobs = self._guarded(
            lambda: self.store.claim_jobs(
                worker_id=self.worker_id, queues=self.options.queues, limit=limit,
                lease_s=self.lease_s,
            )
        )  # fmt: skip
        if jobs is FAILED:
            return
        jobs.sort(key=lambda j: (-j.priority, j.scheduled_at, j.id))
        self._dispatch(jobs, free)
        self.maybe_work = len(jobs) == limit
        if not self.maybe_work:
            self._schedule_poll()

    def _dispatch(self, jobs: list[ClaimedJob], free: dict[int, int]) -> None:
        # Spread in priority order, so the most urgent jobs start first on every child.
        shares: dict[int, list[ClaimedJob]] = {index: [] for index in free}
        for job in jobs:
            index = max(free, key=free.__getitem__)
            shares[index].append(job)
            free[index] -= 1
        for index, share in shares.items():
            if share:
                self._release(self._send_jobs(self.children[index], share))

    def _send_jobs(self, child: ChildHandle, jobs: list[ClaimedJob]) -> list[ClaimedJob]:
        try:
            return child.send_jobs(jobs)
        except OSError:
            return jobs  # the child just died; the jobs go back

    def _schedule_poll(self) -> None:
        due = self._guarded(lambda: self.store.next_due_in_s(self.options.queues))
        wait_s = IDLE_POLL_S if due is None or due is FAILED else min(IDLE_POLL_S, max(due, 0.0))
        self.next_poll = time.monotonic() + wait_s

    def _listener_fd(self) -> tuple[int | None, bool]:
        """The descriptor to wait on for news; without one (SQLite), poll now and say
        whether there was news."""
        if self.listener is None and time.monotonic() >= self.store_down_until:
            listener = self._guarded(self.store.listener)
            self.listener = None if listener is FAILED else listener
            self.maybe_work = True  # we may have missed news while it was down
        if self.listener is None:
            return None, False
        fd = self.listener.fileno()
        return fd, fd is None and self._check_listener()

    def _check_listener(self) -> bool:
        if self.listener is None:
            return False
        news = self._guarded(self.listener.check)
        if news is FAILED:  # the connection broke: a new one is made once the store is back
            self.listener.close()
            self.listener = None
            return False
        if news:
            self.maybe_work = True
        return news

    # -- deadlines, cancels, crashes ------------------------------------------------------

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for index, child in list(self.children.items()):
            head = child.head
            if head is None or head.timeout_s is None or child.head_since + head.timeout_s > now:
                continue
            self._kill(child)
            self._fail_head(child, FailureKind.TIMEOUT, f"timeout after {head.timeout_s:g}s")
            self._replace(index, respawn=self.phase is Phase.RUNNING)

    def _cancel_running(self) -> None:
        wanted = self._guarded(lambda: self.store.cancel_requested(worker_id=self.worker_id))
        for job_id, _attempt in [] if wanted is FAILED else wanted:
            for index, child in list(self.children.items()):
                if child.head is not None and child.head.id == job_id:
                    self._kill(child)
                    self._fail_head(child, FailureKind.PERMANENT, "cancelled while running")
                    self._replace(index, respawn=True)
                elif any(a.job.id == job_id for a in child.assigned):
                    self._send(child, (protocol.CANCEL, job_id))

    def _fail_head(self, child: ChildHandle, kind: FailureKind, error: str) -> None:
        head = child.head
        if head is None:
            return
        started = datetime.fromtimestamp(time.time() - (time.monotonic() - child.head_since), UTC)
        log.warning(
            "job %s (%s) attempt %d: %s", head.id, head.task, head.attempt, error,
            extra={"action": f"job_{kind.value}", "job_id": head.id},
        )  # fmt: skip
        self.finished.append(outcomes.failure(head, kind, error, started, datetime.now(UTC)))
        child.finish(head.id)

    def _kill(self, child: ChildHandle) -> None:
        if child.process.is_alive():
            child.process.kill()
        child.process.join(5)

    def _replace(self, index: int, *, respawn: bool) -> None:
        """Forget a dead child (its unstarted jobs go back) and start another in its slot."""
        child = self.children.pop(index)
        child.conn.close()
        self._release(child.assigned_jobs())
        if respawn:
            self.children[index] = spawn_child(self.ctx, index, self.options.app_ref)

    def _recycle(self, child: ChildHandle, why: str) -> None:
        log.info("recycling child %d: %s", child.index, why, extra={"action": "child_recycled"})
        self._kill(child)
        self._replace(child.index, respawn=True)

    def _release(self, jobs: list[ClaimedJob]) -> None:
        self.releases.extend((j.id, j.attempt) for j in jobs)

    # -- shutdown -------------------------------------------------------------------------

    def _install_signals(self) -> None:
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        signal.set_wakeup_fd(self._wake_w)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        # Only this handler writes `signals_seen`, so no signal can be lost to a race with
        # the loop; the loop acts on it (sending messages to children is no work for a
        # handler that may run between any two bytecodes of the loop).
        self.signals_seen += 1

    def _consume_signals(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_r, 512)
        while self.signals < self.signals_seen:
            self.request_stop()

    def _drain_progress(self) -> None:
        busy = [c for c in self.children.values() if c.assigned]
        if not busy:
            self.phase = Phase.STOPPED
        elif time.monotonic() >= self.drain_deadline:
            log.warning(
                "grace period over: handing %d running jobs back", len(busy),
                extra={"action": "worker_grace_expired"},
            )  # fmt: skip
            self.phase = Phase.STOPPED  # stop_children releases what is still assigned

    # -- store I/O ------------------------------------------------------------------------

    def _housekeeping(self) -> None:
        if self._due("heartbeat", self.lease_s / 3):
            if not self.registered:  # the store was down when we started
                registered = self._guarded(lambda: self.store.register_worker(self._info()))
                self.registered = registered is not FAILED
            self._guarded(
                lambda: self.store.heartbeat(worker_id=self.worker_id, lease_s=self.lease_s)
            )
        if self._due("cancel", CANCEL_CHECK_S) and any(c.assigned for c in self.children.values()):
            self._cancel_running()
        if self._due("recover", self.lease_s / 2):
            recovered = self._guarded(self.store.recover_expired_leases)
            if recovered is not FAILED and recovered:
                log.warning(
                    "recovered %d jobs whose worker vanished", recovered,
                    extra={"action": "lease_expired"},
                )  # fmt: skip
                self.maybe_work = True

    def _due(self, name: str, every_s: float) -> bool:
        now = time.monotonic()
        if now < self._timers.get(name, 0.0):
            return False
        self._timers[name] = now + every_s
        return True

    def _flush(self, *, force: bool = False) -> None:
        """Hand outcomes to the writer; write releases and progress. On a store failure
        everything is kept and written once it is back: a result computed during an outage
        is never dropped."""
        if self.finished:
            self.writer.submit(self.finished)
            self.finished = []
        if not force and time.monotonic() < self.store_down_until:
            return
        if self.releases:
            done = self.releases
            if self._guarded(lambda: self.store.release_jobs(done)) is not FAILED:
                del self.releases[: len(done)]
        if self.progress and (force or self._due("progress", PROGRESS_FLUSH_S)):
            updates = list(self.progress.values())
            if self._guarded(lambda: self.store.set_progress(updates)) is not FAILED:
                self.progress.clear()

    def _guarded(self, call: Callable[[], T]) -> T | _Failed:
        """Run a store call; on failure log it, back off, and return FAILED."""
        try:
            result = call()
        except StoreError as exc:
            self.outage_backoff_s = min(OUTAGE_BACKOFF_MAX_S, max(0.25, self.outage_backoff_s * 2))
            self.store_down_until = time.monotonic() + self.outage_backoff_s
            log.error(
                "store call failed, retrying in %.1fs: %s", self.outage_backoff_s, exc,
                extra={"action": "store_unavailable"},
            )  # fmt: skip
            return FAILED
        if self.outage_backoff_s:
            log.info("store reachable again", extra={"action": "store_recovered"})
            self.outage_backoff_s = 0.0
        return result

    def _send(self, child: ChildHandle, message: tuple[str, Any]) -> None:
        with contextlib.suppress(OSError):  # it died; check_children records that
            child.conn.send(message)

    def _info(self) -> WorkerInfo:
        queues = None if self.options.queues is None else json.dumps(list(self.options.queues))
        return WorkerInfo(
            self.worker_id, socket.gethostname(), os.getpid(), queues, self.options.concurrency
        )


class _Failed(Enum):
    FAILED = "failed"


FAILED = _Failed.FAILED  # what _guarded returns when the store call failed
