"""Argument checks at enqueue: the quick path for positional arguments accepts exactly what
binding to the task's signature accepts, and refusals keep bind's message."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from taskmill import Taskmill, ValidationError


def no_params() -> None: ...
def two(a: int, b: int) -> None: ...
def defaults(a: int, b: int = 1, c: int = 2) -> None: ...
def positional_only(a: int, /, b: int = 0) -> None: ...
def var_args(a: int, *rest: int) -> None: ...
def optional_keyword_only(a: int, *, flag: bool = False) -> None: ...
def required_keyword_only(a: int, *, flag: bool) -> None: ...
def var_keywords(a: int = 0, **options: Any) -> None: ...


SIGNATURES = [no_params, two, defaults, positional_only, var_args, optional_keyword_only,
              required_keyword_only, var_keywords]  # fmt: skip


def binds(fn: Callable[..., Any], args: list[int], kwargs: dict[str, Any]) -> bool:
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError:
        return False
    return True


@pytest.mark.parametrize("fn", SIGNATURES, ids=lambda fn: fn.__name__)
@pytest.mark.parametrize("count", range(5))
@pytest.mark.parametrize("kwargs", [{}, {"flag": True}, {"a": 1}])
def test_argument_check_accepts_exactly_what_the_signature_binds(
    fn: Callable[..., Any], count: int, kwargs: dict[str, Any]
) -> None:
    task = Taskmill("sqlite:///unused.db").task(fn)
    args = list(range(count))
    if binds(fn, args, kwargs):
        task.check_arguments(args, kwargs)
        assert task.new_job(args, kwargs).args == args
    else:
        with pytest.raises(ValidationError, match=rf"^bad arguments for task '{fn.__name__}': "):
            task.check_arguments(args, kwargs)
