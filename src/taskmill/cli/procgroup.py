"""The processes of `taskmill up`, started, watched and stopped together.

Each child runs in a process group of its own, so Ctrl-C at the terminal reaches only this
process, and we decide what each child gets: exactly one SIGTERM on the first Ctrl-C (each
component's graceful shutdown: the API finishes open requests, the worker lets running jobs
finish and hands the rest back), SIGINT on the second (each one's "stop now"), SIGKILL to
their whole groups on the third or when they overstay. On Linux a child also gets SIGTERM
if this process dies without a word (kill -9), so nothing is left behind either way.

This process is also a child subreaper (Linux): a grandchild orphaned when its parent exits
(multiprocessing's resource tracker, a job's own subprocess) becomes our child, not init's,
and is reaped here before we exit, rather than lingering, or staying a zombie in containers
whose PID 1 does not reap.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
POLL_S = 0.5  # without pidfds (not Linux), how often to look for dead children
ADOPTED_GRACE_S = 5.0  # orphans we adopted get this long to exit on their own


@dataclass(frozen=True)
class ProcessSpec:
    """One component: a name for messages and the command that runs it."""

    name: str
    argv: list[str]
    pass_fds: tuple[int, ...] = ()


@dataclass
class Child:
    spec: ProcessSpec
    process: subprocess.Popen[bytes]
    pidfd: int | None = None
    exit_code: int | None = None


def _prctl(option: int, value: int) -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(option, value)


def _die_with_parent() -> None:  # runs in the child, between fork and exec
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _adopted_children() -> list[int]:
    """Our children other than those we started: orphans we adopted as subreaper."""
    mine = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            if entry.name.isdigit():
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                    mine.append(int(entry.name))
    return mine


@dataclass
class ProcessGroup:
    """Run `specs` until a signal or until one of them exits; then stop the rest."""

    specs: Sequence[ProcessSpec]
    stop_timeout_s: float = 60.0  # after the first stop, SIGKILL whatever is still there
    on_event: Callable[[str], None] = lambda message: None
    children: list[Child] = field(default_factory=list)
    signals: int = 0
    failed: str | None = None
    _kill_at: float | None = None

    def run(self) -> int:
        """0 when stopped by a signal and every child exited cleanly; 1 otherwise."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        old_wakeup = signal.set_wakeup_fd(wake_w)
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        try:
            self.start_children()
            while self.alive():
                self._wait(wake_r)
                self.reap()
                self._escalate()
        finally:
            self.kill_all()
            self.reap_adopted()
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(wake_r)
            os.close(wake_w)
        return self._exit_code()

    def start_children(self) -> None:
        for spec in self.specs:
            process = subprocess.Popen(
                spec.argv, pass_fds=spec.pass_fds, process_group=0, stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - we start no threads before this
            )  # fmt: skip
            pidfd = os.pidfd_open(process.pid) if hasattr(os, "pidfd_open") else None
            self.children.append(Child(spec, process, pidfd))

    def alive(self) -> list[Child]:
        return [c for c in self.children if c.exit_code is None]

    def reap(self) -> None:
        for child in self.alive():
            code = child.process.poll()
            if code is None:
                continue
            child.exit_code = code
            if child.pidfd is not None:
                os.close(child.pidfd)
            if self.signals == 0 and self.failed is None:
                self.failed = f"{child.spec.name} exited with code {code}"
                self.on_event(f"{self.failed}: stopping the others")
                self.stop_children(signal.SIGTERM)

    def stop_children(self, signum: int) -> None:
        if self._kill_at is None:
            self._kill_at = time.monotonic() + self.stop_timeout_s
        for child in self.alive():
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signum)

    def kill_all(self) -> None:
        """SIGKILL every child's process group (a worker's own children with it)."""
        for child in self.children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, signal.SIGKILL)
            if child.exit_code is None:
                child.exit_code = child.process.wait()
                if child.pidfd is not None:
                    os.close(child.pidfd)

    def reap_adopted(self) -> None:
        """Wait for orphans we adopted (every child we started is reaped already), killing
        those still there after ADOPTED_GRACE_S."""
        deadline = time.monotonic() + ADOPTED_GRACE_S
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return  # no children left
            if pid:
                continue
            if time.monotonic() >= deadline:
                for orphan in _adopted_children():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(orphan, signal.SIGKILL)
            time.sleep(0.02)

    def _on_signal(self, _signum: int, _frame: object) -> None:
        self.signals += 1
        if self.signals == 1:
            self.on_event("stopping (Ctrl-C again to stop at once)")
            self.stop_children(signal.SIGTERM)
        elif self.signals == 2:
            self.on_event("stopping at once")
            self.stop_children(signal.SIGINT)
        else:
            self._kill_at = time.monotonic()

    def _wait(self, wake_r: int) -> None:
        fds = [c.pidfd for c in self.alive() if c.pidfd is not None]
        timeout = POLL_S if len(fds) < len(self.alive()) else None
        if self._kill_at is not None:
            until_kill = max(0.0, self._kill_at - time.monotonic())
            timeout = until_kill if timeout is None else min(timeout, until_kill)
        ready, _, _ = select.select([wake_r, *fds], [], [], timeout)
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 512)

    def _escalate(self) -> None:
        if self._kill_at is not None and time.monotonic() >= self._kill_at and self.alive():
            names = ", ".join(c.spec.name for c in self.alive())
            self.on_event(f"{names} did not stop in time: killing")
            self.failed = self.failed or f"{names} had to be killed"
            self.kill_all()

    def _exit_code(self) -> int:
        if self.failed is not None:
            return 1
        # A child stopped by our signal may report -SIGTERM/-SIGINT: that is a clean stop.
        clean = {0, -signal.SIGTERM, -signal.SIGINT}
        return 0 if all(c.exit_code in clean for c in self.children) else 1
