"""The CLI as a user runs it: commands as subprocesses, and the process tree they leave."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.processes import ROOT, TASKMILL


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without TASKMILL_* settings of whoever runs the tests, plus `extra`;
    the repository on the path so `-A tests.worker_app:app` imports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKMILL_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["COLUMNS"] = "200"  # rich tables unwrapped, so tests read whole lines
    return {**env, **extra}


def run(
    *args: str, cwd: Path, env: dict[str, str], timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TASKMILL, *args], cwd=cwd, env=env, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=timeout_s, check=False,
    )  # fmt: skip


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(pid: int) -> set[int]:
    """Every process below `pid` now (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = _parent_of(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Running, or exited but not yet reaped by its parent (a zombie holds on, too)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "X"
