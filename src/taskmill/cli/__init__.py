"""The `taskmill` command. Each module holds one group of commands; they only parse flags
and call into the package."""

from __future__ import annotations

import logging

from taskmill.cli.api import api
from taskmill.cli.base import cli
from taskmill.cli.bench import bench
from taskmill.cli.images import image
from taskmill.cli.jobs import cancel, retry, status, submit
from taskmill.cli.processes import migrate, up, worker
from taskmill.cli.scheduler import scheduler, schedules
from taskmill.cli.stats import stats

for command in (up, api, worker, migrate, submit, status, cancel, retry, stats, image, bench):
    cli.add_command(command)
cli.add_command(scheduler)
cli.add_command(schedules)


def main() -> None:
    # Without logging set up (one-shot commands), Python prints a library's warnings raw
    # on stderr: psycopg's pool would print each failed connection attempt before our one
    # error line. A handler here stops that; commands that set up logging (worker, api, up)
    # still get those records through the root logger.
    logging.getLogger("psycopg").addHandler(logging.NullHandler())
    cli(prog_name="taskmill")


__all__ = ["cli", "main"]
