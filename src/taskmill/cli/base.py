"""The command group, shared options, and how errors reach the user: one line, exit 1."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from taskmill.app import Taskmill
from taskmill.config import Settings
from taskmill.errors import TaskmillError
from taskmill.loader import load_app


class TaskmillGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TaskmillError as exc:
            raise click.ClickException(str(exc)) from None
        except TimeoutError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=TaskmillGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="taskmill")
def cli() -> None:
    """taskmill: durable background jobs, with SQL as the queue."""


app_option = click.option(
    "-A", "--app", "app_ref", metavar="MODULE:APP", default=None,
    help="The app whose tasks to use (default: the built-in app).",
)  # fmt: skip
database_option = click.option(
    "--database-url", envvar="TASKMILL_DATABASE_URL", default=None,
    help="sqlite:///path or postgresql://... (env TASKMILL_DATABASE_URL).",
)  # fmt: skip


def open_app(app_ref: str | None, database_url: str | None) -> Taskmill:
    """The app named by -A, pointed at --database-url when that flag was given."""
    app = load_app(app_ref)
    if database_url and database_url != app.settings.database_url:
        app.close()
        app.settings = Settings.from_env(database_url=database_url)
    return app


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
