"""`taskmill bench` runs the checkout's benchmarks (their figures are reported, never
asserted in tests: see docs/benchmarks.md); here only that it reaches them."""

from __future__ import annotations

from pathlib import Path

from tests.acceptance.processes import clean_env, run


def test_bench_passes_its_options_to_the_benchmark(tmp_path: Path) -> None:
    done = run("bench", "images", "--", "--help", cwd=tmp_path, env=clean_env())
    assert done.returncode == 0, done.stderr
    assert "--count" in done.stdout and "The image benchmark" in done.stdout


def test_bench_refuses_an_unknown_benchmark(tmp_path: Path) -> None:
    done = run("bench", "nonsense", cwd=tmp_path, env=clean_env())
    assert done.returncode == 2
    assert "nonsense" in done.stderr and "engine" in done.stderr
