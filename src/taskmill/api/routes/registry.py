"""/api/task-types: the tasks this API can enqueue, for forms and clients that build one."""

from __future__ import annotations

import inspect
import json
from typing import Any

from fastapi import APIRouter

from taskmill.api.routes.responses import errors
from taskmill.api.schemas import TaskParameterOut, TaskTypeOut, TaskTypesOut
from taskmill.tasks import Task


def _annotation(parameter: inspect.Parameter) -> str | None:
    annotation = parameter.annotation
    if annotation is inspect.Parameter.empty:
        return None
    # Modules with `from __future__ import annotations` keep them as the text written.
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def _json_default(value: object) -> Any:
    """The default when JSON can carry it (a form can prefill it), else None."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return value


def parameter_out(parameter: inspect.Parameter) -> TaskParameterOut:
    empty = parameter.default is inspect.Parameter.empty
    variadic = parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    return TaskParameterOut(
        name=parameter.name,
        kind=parameter.kind.name.lower(),  # type: ignore[arg-type]  # the Literal's values
        required=empty and not variadic,
        default=None if empty else _json_default(parameter.default),
        annotation=_annotation(parameter),
    )


def _description(task: Task[Any, Any]) -> str | None:
    doc = inspect.getdoc(task.fn)
    return doc.split("\n\n", 1)[0].replace("\n", " ") if doc else None


def task_type_out(task: Task[Any, Any]) -> TaskTypeOut:
    options = task.options
    return TaskTypeOut(
        name=task.name, description=_description(task), queue=options.queue,
        priority=options.priority, max_retries=options.max_retries,
        timeout_s=options.timeout_s, backoff=options.backoff,
        parameters=[parameter_out(p) for p in task.signature.parameters.values()],
    )  # fmt: skip


def router(
    tasks: dict[str, Task[Any, Any]], dependencies: list[Any], auth_errors: tuple[int, ...]
) -> APIRouter:
    api = APIRouter(prefix="/api/task-types", tags=["tasks"], dependencies=dependencies)

    @api.get(
        "", response_model=TaskTypesOut, responses=errors(*auth_errors),
        summary="Registered tasks",
    )  # fmt: skip
    async def task_types() -> TaskTypesOut:
        """Every task `POST /api/tasks` accepts, by name: its default queue, priority,
        retries, timeout and back-off, and its parameters as the function declares them
        (`default` is null when there is none, or when it is not JSON)."""
        return TaskTypesOut(task_types=[task_type_out(tasks[n]) for n in sorted(tasks)])

    return api
