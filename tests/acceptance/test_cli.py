"""Commands as subprocesses: what they print, and that bad input is one clear line and a
non-zero exit, never a traceback."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from tests.acceptance.processes import clean_env, run
from tests.pg import free_port

Cli = Callable[..., CompletedProcess[str]]
APP = ("-A", "tests.worker_app:app")


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """`cli("submit", "add", ...)` runs `taskmill` on a SQLite database of this test."""
    env = clean_env(TASKMILL_DATABASE_URL=f"sqlite:///{tmp_path}/taskmill.db")

    def invoke(*args: str, **extra_env: str) -> CompletedProcess[str]:
        return run(*args, cwd=tmp_path, env={**env, **extra_env})

    return invoke


def one_error_line(done: CompletedProcess[str], *fragments: str) -> str:
    """Check `done` failed with exactly one line on stderr, naming every fragment."""
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_job_control_round_trip(cli: Cli) -> None:
    assert "schema at version" in cli("migrate").stdout
    submitted = cli("submit", "add", "--args", "[2, 3]", "--json", *APP)
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    assert job["status"] == "pending" and job["args"] == [2, 3]
    shown = cli("status", job["id"], "--json", *APP)
    assert json.loads(shown.stdout)["id"] == job["id"]
    cancelled = cli("cancel", job["id"], *APP)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    one_error_line(cli("cancel", job["id"], *APP), "cannot cancel", "cancelled")
    retried = cli("retry", job["id"], "--json", *APP)
    assert json.loads(retried.stdout)["status"] == "pending"


def test_stats_shows_queues_by_state_and_as_json(cli: Cli) -> None:
    cli("migrate")
    for task, args in (("add", "[1, 2]"), ("add", "[3, 4]"), ("urgent", "[1]")):
        assert cli("submit", task, "--args", args, *APP).returncode == 0
    table = cli("stats", *APP)
    assert table.returncode == 0, table.stderr
    cells = [line.replace("\u2502", " ").split() for line in table.stdout.splitlines()]
    rows = {c[0]: c[1:] for c in cells if c and c[0] in {"default", "high", "all"}}
    assert rows["default"][:2] == ["2", "0"] and rows["high"][:2] == ["1", "0"]
    assert rows["all"][0] == "3"
    assert "0 workers online" in table.stdout
    data = json.loads(cli("stats", "--json", *APP).stdout)
    assert data["totals"]["pending"] == 3 and {q["queue"] for q in data["queues"]} == {
        "default", "high",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("submit", "nope"), ("unknown task 'nope'",)),
        (("submit", "add", "--kwargs", "{bad"), ("--kwargs is not valid JSON",)),
        (("submit", "add", "--args", '{"a": 1}'), ("--args must be a JSON array",)),
        (("submit", "add", "--args", "[1]"), ("bad arguments", "'b'")),
        (("status", "not-a-job"), ("no job with id",)),
        (("worker", "-Q", "bad queue!"), ("queue must be",)),
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(
    cli: Cli, args: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    one_error_line(cli(*args, *APP), *fragments)  # refused before the database is read


def test_an_unreachable_database_is_one_line(cli: Cli) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    one_error_line(cli("stats", "--database-url", url), "PostgreSQL unreachable")


@pytest.mark.parametrize("command", ["api", "up"])
def test_listening_beyond_loopback_needs_keys_or_insecure(cli: Cli, command: str) -> None:
    one_error_line(cli(command, "--host", "0.0.0.0"), "refusing", "TASKMILL_API_KEYS", "--insecure")


def test_a_taken_port_is_one_line(cli: Cli) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        one_error_line(cli("api", "--port", str(port)), f"cannot listen on 127.0.0.1:{port}")


def test_up_passes_every_worker_option_to_its_worker() -> None:
    from taskmill.cli.processes import UpPlan, up, up_processes, worker, worker_flags

    assert {p.name for p in worker.params} <= {p.name for p in up.params}
    given = {"queues": "high,low", "concurrency": 3, "grace": 5.0,
             "max_tasks_per_child": None, "max_memory_per_child": 256}  # fmt: skip
    flags = worker_flags(given)
    assert flags == ("-Q", "high,low", "-c", "3", "--grace", "5.0",
                     "--max-memory-per-child", "256")  # fmt: skip
    plan = UpPlan(app_ref="my:app", database_url="sqlite:///x.db", api_fd=7, host="127.0.0.1",
                  insecure=False, worker_flags=flags)  # fmt: skip
    api, worker_spec, scheduler_spec = up_processes(plan)
    assert api.pass_fds == (7,) and "--fd" in api.argv and "my:app" in api.argv
    assert worker_spec.argv[-len(flags) :] == list(flags)
    assert worker_spec.argv[3:5] == ["worker", "-A"]
    assert scheduler_spec.argv[3:6] == ["scheduler", "-A", "my:app"]
