"""Demo tasks of the built-in app, and the jobs `taskmill up --demo` seeds."""

from __future__ import annotations

from taskmill.demo.seed import DEMO_JOBS, seed_demo_jobs
from taskmill.demo.tasks import DEMO_TASKS, register_demo_tasks

__all__ = ["DEMO_JOBS", "DEMO_TASKS", "register_demo_tasks", "seed_demo_jobs"]
