"""Prometheus metrics, derived from the store at scrape time.

Workers, schedulers and API servers are separate processes, often on separate machines;
the store is the one place that knows what all of them did. So nothing is counted in
process memory: each scrape reads the same stats snapshot /api/stats serves (shared, at most
one scan per second however many scrapers and dashboards ask), and any API server answers
for the whole system. Put one API server in the scrape config, or several and aggregate
with `max by (...)` rather than `sum`: each reports the same totals.

Counters are derived from the jobs the store holds, so pruning old jobs would make them
go down; Prometheus would read that as a counter reset and `rate()` would show a spike.
`MonotonicGuard` keeps every exposed counter from decreasing (per API process): a fall is
absorbed into an offset, at the price of not counting jobs that were both finished and
pruned between two scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from taskmill.stats import Snapshot, StatsService, TaskTotals
from taskmill.store.base import DURATION_BOUNDS_S

TASK_LABELS = ["task", "queue"]

# name (without _total), help, what to read from TaskTotals
_COUNTERS: tuple[tuple[str, str, Callable[[TaskTotals], int]], ...] = (
    ("taskmill_jobs_enqueued", "Jobs stored", lambda t: t.enqueued),
    ("taskmill_jobs_started", "Attempts started", lambda t: t.started),
    ("taskmill_jobs_completed", "Jobs completed", lambda t: t.counts.completed),
    ("taskmill_jobs_failed", "Jobs failed for good", lambda t: t.counts.failed),
    ("taskmill_jobs_cancelled", "Jobs cancelled", lambda t: t.counts.cancelled),
    ("taskmill_jobs_retried", "Attempts after the first, begun or scheduled", lambda t: t.retried),
)


class MonotonicGuard:
    """Exposed counter values that never decrease, whatever the raw values do."""

    def __init__(self) -> None:
        self._state: dict[tuple[str, ...], tuple[float, float]] = {}  # key -> (raw, offset)

    def value(self, key: tuple[str, ...], raw: float) -> float:
        last_raw, offset = self._state.get(key, (raw, 0.0))
        if raw < last_raw:
            offset += last_raw - raw
        self._state[key] = (raw, offset)
        return raw + offset


class StoreCollector(Collector):
    def __init__(self, stats: StatsService) -> None:
        self.stats = stats
        self.guard = MonotonicGuard()

    def describe(self) -> list[Metric]:
        return []  # registering must not query the database

    def collect(self) -> Iterator[Metric]:
        """Raises StoreError when the database cannot be read: the scrape fails (503)
        rather than reporting zeros."""
        snapshot = self.stats.snapshot()
        yield from self._counters(snapshot.tasks)
        yield self._durations(snapshot.tasks)
        yield from self._gauges(snapshot)

    def _counters(self, tasks: list[TaskTotals]) -> Iterator[Metric]:
        for name, text, read in _COUNTERS:
            family = CounterMetricFamily(name, text, labels=TASK_LABELS)
            for t in tasks:
                raw = float(read(t))
                family.add_metric([t.task, t.queue], self.guard.value((name, t.task, t.queue), raw))
            yield family

    def _durations(self, tasks: list[TaskTotals]) -> Metric:
        family = HistogramMetricFamily(
            "taskmill_job_duration_seconds",
            "Run time of the last attempt of completed and failed jobs",
            labels=TASK_LABELS,
        )
        for t in tasks:
            key = ("duration", t.task, t.queue)
            buckets, floor = [], 0.0
            labels = [f"{b:g}" for b in DURATION_BOUNDS_S] + ["+Inf"]
            for le, raw in zip(labels, [*t.duration_le, t.timed], strict=True):
                # Guarded separately, buckets could lose their order: keep them cumulative.
                floor = max(floor, self.guard.value((*key, le), float(raw)))
                buckets.append((le, floor))
            total = self.guard.value((*key, "sum"), t.duration_sum_s)
            family.add_metric([t.task, t.queue], buckets, sum_value=total)
        return family

    def _gauges(self, snapshot: Snapshot) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "taskmill_jobs", "Jobs in each state now", labels=["queue", "status"]
        )
        depth = GaugeMetricFamily("taskmill_queue_depth", "Pending jobs", labels=["queue"])
        rate = GaugeMetricFamily(
            "taskmill_jobs_per_second",
            f"Jobs completed or failed per second over the last {snapshot.window_s:g}s",
            labels=["queue"],
        )
        for queue, counts in snapshot.queues.items():
            for status in ("pending", "running", "completed", "failed", "cancelled"):
                jobs.add_metric([queue, status], getattr(counts, status))
            depth.add_metric([queue], counts.pending)
            rate.add_metric([queue], counts.jobs_per_s)
        yield from (jobs, depth, rate)
        yield GaugeMetricFamily("taskmill_workers_online", "Workers with a recent heartbeat",
                                value=snapshot.workers_online)  # fmt: skip
        yield GaugeMetricFamily("taskmill_worker_slots", "Jobs the online workers can run at once",
                                value=snapshot.worker_slots)  # fmt: skip


def metrics_registry(stats: StatsService) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(stats))
    return registry
