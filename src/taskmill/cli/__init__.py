"""The `taskmill` command. Each module holds one group of commands; they only parse flags
and call into the package."""

from __future__ import annotations

from taskmill.cli.base import cli
from taskmill.cli.jobs import cancel, retry, status, submit
from taskmill.cli.processes import migrate, up, worker

for command in (migrate, worker, up, submit, status, cancel, retry):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="taskmill")


__all__ = ["cli", "main"]
