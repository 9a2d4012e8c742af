"""`taskmill bench`: the benchmarks of a taskmill checkout (bench/), each with its baseline
run in the same run, a progress display and a results table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

import taskmill

BENCHMARKS = ("engine", "api", "images", "chaos")


def checkout_root() -> Path | None:
    """The source checkout this taskmill runs from (an editable install, as `make` makes),
    or None for an installed wheel, which carries no benchmarks."""
    root = Path(taskmill.__file__).resolve().parents[2]
    return root if (root / "bench" / "common.py").is_file() else None


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("which", type=click.Choice([*BENCHMARKS, "all"]), default="all")
@click.argument("options", nargs=-1, type=click.UNPROCESSED)
def bench(which: str, options: tuple[str, ...]) -> None:
    """Run a benchmark (default: engine, api and images, one after the other); OPTIONS go
    to it, e.g. `taskmill bench engine --quick` (`taskmill bench images -- --help` for its
    own help). See bench/README.md for what each measures and against which baseline."""
    root = checkout_root()
    if root is None:
        raise click.ClickException(
            "the benchmarks live in the taskmill source tree (bench/); run this from a "
            "checkout installed with `make` (pip install -e .)"
        )
    names = ("engine", "api", "images") if which == "all" else (which,)
    path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    for name in names:
        done = subprocess.run(
            [sys.executable, "-m", f"bench.{name}", *options], cwd=root, env=env, check=False
        )
        if done.returncode != 0:
            raise SystemExit(done.returncode)
