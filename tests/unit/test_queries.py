"""Named SQL blocks: the parser, and that every name the stores use exists in their
dialect's queries.sql (a typo would otherwise surface only when that path first runs)."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator

import pytest

from taskmill.store import postgres, sqlite
from taskmill.store.queries import parse_queries, queries

TEXT = """\
-- A header comment that belongs to no query.

-- name: first
-- what it does
SELECT 1
FROM t

--   name:   second
UPDATE t SET a = 1  -- trailing comment stays
RETURNING *
-- name: third
SELECT 3
"""


def test_parse_queries_splits_named_blocks() -> None:
    parsed = parse_queries(TEXT)
    assert list(parsed) == ["first", "second", "third"]
    assert parsed["first"] == "-- what it does\nSELECT 1\nFROM t"
    assert parsed["second"] == "UPDATE t SET a = 1  -- trailing comment stays\nRETURNING *"
    assert parsed["third"] == "SELECT 3"


def test_parse_queries_of_text_without_names_is_empty() -> None:
    assert parse_queries("-- only a comment\nSELECT 1\n") == {}


def test_a_name_must_be_a_whole_comment_line() -> None:
    parsed = parse_queries("-- name: a\nSELECT '-- name: b'\n")
    assert parsed == {"a": "SELECT '-- name: b'"}


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_every_dialect_file_parses_into_non_empty_blocks(dialect: str) -> None:
    blocks = queries(dialect)
    assert {"insert_jobs", "claim_jobs_any", "finish_jobs", "schema_version"} <= set(blocks)
    for name, body in blocks.items():
        assert body and "-- name:" not in body, name


QUERY_METHODS = {"_rows", "_jobs", "_execute", "_read", "_write", "_guarded"}


def _constants(node: ast.expr) -> Iterator[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.IfExp):
        yield from _constants(node.body)
        yield from _constants(node.orelse)


def used_query_names(module: object) -> set[str]:
    """Names a store module passes to Q[...] or to its query-running helpers."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(inspect.getsource(module))):  # type: ignore[arg-type]
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            if node.value.id == "Q":
                names.update(_constants(node.slice))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in QUERY_METHODS
            and node.args
        ):
            names.update(_constants(node.args[0]))
    return names


@pytest.mark.parametrize(("module", "dialect"), [(sqlite, "sqlite"), (postgres, "postgres")])
def test_every_query_a_store_uses_is_defined(module: object, dialect: str) -> None:
    used = used_query_names(module)
    assert len(used) > 15  # the scan found the store's queries at all
    assert used - set(queries(dialect)) == set()
