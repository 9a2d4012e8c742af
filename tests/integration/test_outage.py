"""Workers survive PostgreSQL going away: on a cluster this test owns, restarted mid-run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskmill import JobStatus, Taskmill
from tests.helpers import make_app, wait_until
from tests.integration.conftest import StartWorker
from tests.integration.workers import read_run_log
from tests.pg import PgCluster, find_bin_dir
from tests.worker_app import app as worker_app


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    if find_bin_dir() is None:  # pragma: no cover - every CI machine has one
        pytest.fail("an outage test needs initdb/pg_ctl to own a cluster")
    with PgCluster() as owned:
        yield owned


@pytest.fixture
def cluster_app(cluster: PgCluster) -> Iterator[Taskmill]:
    app = make_app(cluster.url)
    app.include(worker_app)
    app.migrate()
    yield app
    app.close()


@pytest.mark.slow
@pytest.mark.postgres_only
def test_postgres_restart_mid_run_loses_nothing(
    backend: str, cluster: PgCluster, cluster_app: Taskmill, start_worker: StartWorker,
    run_log: Path,
) -> None:  # fmt: skip
    app = cluster_app
    jobs = app.enqueue_many(
        [{"task": "record", "kwargs": {"tag": str(i), "seconds": 0.02}} for i in range(300)]
    )
    worker = start_worker("-c", "2", url=cluster.url, lease_s=5)
    wait_until(lambda: len(read_run_log(run_log)) >= 50, timeout_s=60, what="50 runs")

    cluster.stop(mode="immediate")  # a crash, as far as clients can tell
    wait_until(lambda: "store call failed" in worker.log(), timeout_s=30, what="outage seen")
    assert worker.process.poll() is None, "the worker must ride out the outage"
    cluster.start()

    app.close()  # the app's pooled connections died with the server
    wait_until(
        lambda: sum(c.count for c in app.store.queue_counts() if c.status is JobStatus.COMPLETED)
        == 300,
        timeout_s=120, interval_s=0.2, what="all 300 completed",
    )  # fmt: skip
    runs = Counter(job_id for job_id, _, _, _ in read_run_log(run_log))
    assert set(runs) == {j.id for j in jobs}
    assert "store reachable again" in worker.log()
    assert worker.stop() == 0
