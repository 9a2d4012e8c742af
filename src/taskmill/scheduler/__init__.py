"""The scheduler: periodic tasks (one job per cron tick, however many schedulers run) and
maintenance (expired-lease recovery, job retention). Nothing here imports the app module
at run time, so `taskmill.app` can use `Schedule`."""

from __future__ import annotations

from taskmill.scheduler.maintenance import Maintenance
from taskmill.scheduler.periodic import Schedule, Scheduler
from taskmill.scheduler.runner import SchedulerRunner, run_scheduler

__all__ = ["Maintenance", "Schedule", "Scheduler", "SchedulerRunner", "run_scheduler"]
