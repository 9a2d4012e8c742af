"""Named SQL blocks, one `queries.sql` per dialect, loaded once."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    """`-- name: x` starts block x; it runs to the next name. Other comments stay."""
    parts = _NAME.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def sql_dir(dialect: str) -> Path:
    return Path(str(resources.files("taskmill.store") / "sql" / dialect))


@cache
def queries(dialect: str) -> dict[str, str]:
    """Every named block of `queries*.sql` (one file per area: jobs, images, ...)."""
    found: dict[str, str] = {}
    for path in sorted(sql_dir(dialect).glob("queries*.sql")):
        for name, sql in parse_queries(path.read_text()).items():
            if name in found:
                raise ValueError(f"{path}: query {name!r} is defined twice")
            found[name] = sql
    return found


def schema_sql(dialect: str) -> str:
    return (sql_dir(dialect) / "schema.sql").read_text()


def migrations(dialect: str) -> list[tuple[int, str]]:
    """(version, sql) of every `migrations/NNNN_name.sql`, in order."""
    found = []
    for path in sorted((sql_dir(dialect) / "migrations").glob("*.sql")):
        found.append((int(path.name.split("_", 1)[0]), path.read_text()))
    return found
