"""schemathesis against /openapi.json, in process: for generated requests to every
documented operation, valid ones and invalid ones, no 5xx, and every response matches the
schema (status documented, body valid, content type right). Bounded, so it stays fast."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

from taskmill import Taskmill
from taskmill.api import create_app
from taskmill.demo import register_demo_tasks
from tests.images.helpers import make_image_app
from tests.tasks_for_tests import register_test_tasks

MAX_EXAMPLES = 12
# Whether a submit is accepted depends on the registered tasks and their signatures, which
# the schema does not (and should not) spell out: a schema-valid submit may rightly be 422.
# Likewise an upload: whether its bytes are an image, or its webhook URL reachable.
SCHEMA_CANNOT_TELL = {
    "POST /api/tasks": [checks.positive_data_acceptance],
    "POST /api/images": [checks.positive_data_acceptance],
}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The API over a SQLite app that knows the demo tasks (the schema's examples use them,
    so some generated submits are accepted), the test tasks and the image tasks (so the
    image routes are in the schema too)."""
    folder = tmp_path_factory.mktemp("schema")
    app: Taskmill = make_image_app(f"sqlite:///{folder}/taskmill.db", folder / "media")
    register_demo_tasks(register_test_tasks(app))
    app.migrate()
    app.enqueue("add", [1, 2])
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(app))
    app.close()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_response_matches_the_schema_and_none_is_5xx(
    api_schema: Any, mode: GenerationMode
) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 13  # tasks x5, images x4, stats, healthz, readyz, metrics
    tested = []
    for operation in operations:
        takes_input = any(True for _ in operation.iter_parameters()) or len(operation.body) > 0
        if mode is GenerationMode.NEGATIVE and not takes_input:
            continue  # no input to get wrong
        try:
            check_operation(operation, mode)
        except Unsatisfiable:
            # Negative mode only: an operation whose input cannot be made invalid (a path
            # segment takes any string).
            assert mode is GenerationMode.NEGATIVE, operation.label
            continue
        tested.append(operation.label)
    assert {"POST /api/tasks", "GET /api/tasks", "POST /api/images", "GET /api/images"} <= set(
        tested
    )


def check_operation(operation: Any, mode: GenerationMode) -> None:
    excluded = SCHEMA_CANNOT_TELL.get(operation.label, [])

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        case.call_and_validate(excluded_checks=excluded)

    check()
