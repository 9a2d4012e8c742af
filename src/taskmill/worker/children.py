"""The supervisor's view of one child process: what it was given, and since when."""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess

from taskmill.store.base import ClaimedJob
from taskmill.worker import protocol
from taskmill.worker.child import child_main
from taskmill.worker.protocol import JobSpec

# Unread bytes we allow in a child's inbound pipe (Linux pipes hold 64 KiB). Staying under
# it means a send to a child never blocks, so a child blocked on sending us a large result
# can never deadlock against us blocked on sending it work.
PIPE_BUDGET_BYTES = 48 * 1024
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
SPEC_OVERHEAD_BYTES = 160  # a pickled JobSpec beyond its argument text (ids, task name)


@dataclass
class Assigned:
    job: ClaimedJob
    size: int


@dataclass
class ChildHandle:
    index: int
    process: BaseProcess
    conn: Connection
    assigned: deque[Assigned] = field(default_factory=deque)
    ready: bool = False
    head_since: float = 0.0  # monotonic time the first assigned job started (or was sent)
    jobs_done: int = 0

    @property
    def head(self) -> ClaimedJob | None:
        return self.assigned[0].job if self.assigned else None

    @property
    def pending_bytes(self) -> int:
        return sum(a.size for a in self.assigned)

    def send_jobs(self, jobs: list[ClaimedJob]) -> list[ClaimedJob]:
        """Hand over as many of `jobs` as the pipe budget allows; returns the ones left."""
        budget = PIPE_BUDGET_BYTES - self.pending_bytes
        given: list[Assigned] = []
        specs: list[JobSpec] = []
        for job in jobs:
            spec = JobSpec(job.id, job.attempt, job.task, job.args_json, job.kwargs_json)
            size = len(job.args_json) + len(job.kwargs_json) + SPEC_OVERHEAD_BYTES
            if size > budget and (given or self.assigned):
                break  # an oversized job goes alone, to a child that is idle and reading
            given.append(Assigned(job, size))
            specs.append(spec)
            budget -= size
        if given:
            self.conn.send((protocol.RUN, specs))
            if not self.assigned:
                self.head_since = time.monotonic()
            self.assigned.extend(given)
        return jobs[len(given) :]

    def finish(self, job_id: str) -> ClaimedJob | None:
        """The child reported `job_id` done: drop it; the next one starts now."""
        for i, item in enumerate(self.assigned):
            if item.job.id == job_id:
                del self.assigned[i]
                if i == 0:
                    self.head_since = time.monotonic()
                self.jobs_done += 1
                return item.job
        return None

    def rss_mib(self) -> float:
        """Resident memory of the child process (Linux /proc; 0 where unavailable)."""
        try:
            with open(f"/proc/{self.process.pid}/statm") as statm:
                return int(statm.read().split()[1]) * PAGE_BYTES / 2**20
        except (OSError, ValueError, IndexError):
            return 0.0

    def take(self, job_ids: list[str]) -> list[ClaimedJob]:
        """Remove these jobs (handed back unstarted) and return them."""
        wanted = set(job_ids)
        taken = [a.job for a in self.assigned if a.job.id in wanted]
        self.assigned = deque(a for a in self.assigned if a.job.id not in wanted)
        return taken

    def assigned_jobs(self) -> list[ClaimedJob]:
        """Everything still assigned, removed (the child is gone)."""
        jobs = [a.job for a in self.assigned]
        self.assigned.clear()
        return jobs


def spawn_child(ctx: BaseContext, index: int, app_ref: str | None) -> ChildHandle:
    # glibc gives every thread an arena; a long-lived child decoding large images then
    # keeps ~30 % more memory than one job needs. Two arenas hold it at the one-job peak.
    # (Read by glibc at process start, so it is set for the child, from here.)
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    parent_conn, child_conn = ctx.Pipe(duplex=True)
    process = ctx.Process(  # type: ignore[attr-defined]
        target=child_main, args=(app_ref, child_conn), name=f"taskmill-child-{index}"
    )
    process.start()
    child_conn.close()
    return ChildHandle(index, process, parent_conn)
