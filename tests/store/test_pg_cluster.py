"""The throwaway-cluster helper that outage tests build on (tests/pg.py), checked on a
cluster of its own: the session's shared server is never stopped or restarted."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from taskmill import JobStatus, StoreError
from tests.helpers import make_app, wait_until
from tests.pg import PgCluster, PgUnavailable, find_bin_dir, probe


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    if find_bin_dir() is None:
        pytest.skip("no initdb/pg_ctl on this machine")
    with PgCluster() as owned:
        yield owned


def test_cluster_starts_on_a_free_loopback_port(cluster: PgCluster) -> None:
    assert cluster.running and cluster.port > 0
    assert cluster.url == f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
    assert probe(cluster.url) is None


def test_restart_drops_connections_keeps_data_and_the_port(cluster: PgCluster) -> None:
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS survives (n int)")
        conn.execute("INSERT INTO survives VALUES (1)")
        port = cluster.port
        cluster.restart()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    assert cluster.port == port
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM survives").fetchone() == (1,)


def test_a_store_comes_back_by_itself_after_a_crash_and_restart(cluster: PgCluster) -> None:
    app = make_app(cluster.url)
    try:
        app.migrate()
        job = app.enqueue("add", [1, 2])
        cluster.kill()
        assert probe(cluster.url, timeout_s=1) is not None
        with pytest.raises(StoreError):
            app.get(job.id)
        cluster.start()

        def answers() -> bool:
            try:
                return app.get(job.id).status is JobStatus.PENDING
            except StoreError:  # the pool retries connecting with back-off
                return False

        wait_until(answers, timeout_s=10, what="the store to reconnect")
    finally:
        app.close()


def test_the_first_requests_after_a_restart_succeed(cluster: PgCluster) -> None:
    """Connections that died with the server while idle (pooled ones, and the one kept for
    single inserts) are noticed before use and replaced, instead of failing the request."""
    app = make_app(cluster.url)
    try:
        app.migrate()
        before = app.enqueue("add", [1, 2])
        assert app.get(before.id).status is JobStatus.PENDING  # a pooled connection, now idle
        cluster.restart()
        assert app.get(before.id).status is JobStatus.PENDING
        after = app.enqueue("add", [3, 4])
        assert after.status is JobStatus.PENDING
        assert {before.id, after.id} <= {j.id for j in app.list(limit=1000)}
    finally:
        app.close()


def test_destroy_stops_the_cluster_and_removes_its_files(cluster: PgCluster) -> None:
    # Last in this module (tests run in file order): the fixture's own destroy is a no-op.
    data_dir = cluster.data_dir
    cluster.destroy()
    assert not cluster.running and not data_dir.exists()
    assert probe(cluster.url, timeout_s=1) is not None
    with pytest.raises(PgUnavailable):
        _ = cluster.data_dir
