"""Job ids: UUIDv7 strings that sort by creation time (cursor pagination relies on it)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from taskmill.ids import new_id, new_ids


def unix_ms(job_id: str) -> int:
    return uuid.UUID(job_id).int >> 80


def test_ids_are_canonical_uuid7_strings() -> None:
    job_id = new_id()
    parsed = uuid.UUID(job_id)
    assert str(parsed) == job_id  # lowercase, hyphenated, 36 characters
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


def test_ids_carry_the_current_unix_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    job_id = new_id()
    after = time.time_ns() // 1_000_000
    assert before <= unix_ms(job_id) <= after + 1


def test_ids_strictly_increase_within_a_process() -> None:
    ids = [new_id() for _ in range(20_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert [uuid.UUID(i).int for i in ids] == sorted(uuid.UUID(i).int for i in ids)


def test_ids_keep_increasing_when_the_counter_of_a_millisecond_is_spent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frozen_ns = time.time_ns()
    monkeypatch.setattr("taskmill.ids.time.time_ns", lambda: frozen_ns)
    ids = [new_id() for _ in range(10_000)]  # more than the 4096 ids one millisecond holds
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert unix_ms(ids[-1]) - unix_ms(ids[0]) <= 3  # borrowed only the few ms it needed


def test_ids_keep_increasing_when_the_clock_steps_back(monkeypatch: pytest.MonkeyPatch) -> None:
    first = new_id()
    real_time_ns = time.time_ns
    monkeypatch.setattr("taskmill.ids.time.time_ns", lambda: real_time_ns() - 60_000_000_000)
    later = [new_id() for _ in range(100)]
    assert [first, *later] == sorted([first, *later])


def test_ids_are_unique_across_threads() -> None:
    results: list[list[str]] = [[] for _ in range(4)]

    def make(bucket: list[str]) -> None:
        bucket.extend(new_id() for _ in range(5_000))

    threads = [threading.Thread(target=make, args=(bucket,)) for bucket in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for bucket in results for i in bucket]
    assert len(set(every)) == len(every)
    assert all(bucket == sorted(bucket) for bucket in results)


def test_ids_drawn_in_bulk_are_uuid7_and_continue_the_sequence() -> None:
    before = new_id()
    bulk = new_ids(5_000)  # more than one millisecond's counter holds
    after = new_id()
    every = [before, *bulk, after]
    assert every == sorted(every) and len(set(every)) == len(every)
    assert all(str(uuid.UUID(i)) == i and uuid.UUID(i).version == 7 for i in bulk)
    assert all(uuid.UUID(i).variant == uuid.RFC_4122 for i in bulk)
    assert new_ids(0) == []
