"""Back-off with jitter and the next state after a failed attempt — pure functions."""

from __future__ import annotations

import random

import pytest

from taskmill.jobs import JobStatus
from taskmill.retry import DEFAULT_BACKOFF_CAP_S, Decision, FailureKind, backoff_delay_s, decide


class FixedRandom(random.Random):
    """A random source whose draws are all `value`, to pin the jitter."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


LOWEST, HIGHEST = FixedRandom(0.0), FixedRandom(0.999999999)


@pytest.mark.parametrize(
    ("backoff", "attempt", "cap_s", "base"),
    [
        (2.0, 1, DEFAULT_BACKOFF_CAP_S, 2.0),
        (2.0, 3, DEFAULT_BACKOFF_CAP_S, 8.0),
        (3.0, 4, DEFAULT_BACKOFF_CAP_S, 81.0),
        (1.5, 2, DEFAULT_BACKOFF_CAP_S, 2.25),
        (2.0, 20, DEFAULT_BACKOFF_CAP_S, DEFAULT_BACKOFF_CAP_S),  # 2**20 s is capped
        (10.0, 3, 60.0, 60.0),
        (0.5, 2, DEFAULT_BACKOFF_CAP_S, 0.25),
    ],
)
def test_delay_lies_between_half_and_all_of_the_capped_power(
    backoff: float, attempt: int, cap_s: float, base: float
) -> None:
    assert backoff_delay_s(backoff, attempt, cap_s=cap_s, rng=LOWEST) == pytest.approx(base / 2)
    assert backoff_delay_s(backoff, attempt, cap_s=cap_s, rng=HIGHEST) == pytest.approx(base)
    assert backoff_delay_s(backoff, attempt, cap_s=cap_s, rng=FixedRandom(0.5)) == pytest.approx(
        base * 0.75
    )


def test_zero_backoff_retries_at_once() -> None:
    assert backoff_delay_s(0.0, 5, rng=HIGHEST) == 0.0


def test_huge_powers_are_capped_instead_of_overflowing() -> None:
    # max_retries may be 1000, so attempt 1000 with backoff 10 is reachable.
    assert backoff_delay_s(10.0, 1000, rng=HIGHEST) == pytest.approx(DEFAULT_BACKOFF_CAP_S)
    assert backoff_delay_s(1e300, 2, rng=LOWEST) == pytest.approx(DEFAULT_BACKOFF_CAP_S / 2)


def test_jitter_spreads_jobs_that_failed_together() -> None:
    rng = random.Random(1234)
    delays = [backoff_delay_s(2.0, 3, rng=rng) for _ in range(200)]
    assert all(4.0 <= d <= 8.0 for d in delays)
    assert len({round(d, 3) for d in delays}) > 150
    assert min(delays) < 4.5 and max(delays) > 7.5


def test_default_random_source_stays_in_bounds() -> None:
    assert all(16.0 <= backoff_delay_s(2.0, 5) <= 32.0 for _ in range(100))


# -- decide ---------------------------------------------------------------------------------


def test_permanent_error_fails_at_once_whatever_the_budget() -> None:
    assert decide(FailureKind.PERMANENT, attempts=1, max_retries=10, backoff=2.0) == Decision(
        JobStatus.FAILED
    )


@pytest.mark.parametrize("kind", [FailureKind.ERROR, FailureKind.TIMEOUT, FailureKind.CRASH])
@pytest.mark.parametrize("max_retries", [0, 1, 3])
def test_errors_retry_until_max_retries_plus_one_attempts_ran(
    kind: FailureKind, max_retries: int
) -> None:
    statuses = [
        decide(kind, attempts=a, max_retries=max_retries, backoff=2.0, rng=LOWEST).status
        for a in range(1, max_retries + 2)
    ]
    assert statuses == [JobStatus.PENDING] * max_retries + [JobStatus.FAILED]


def test_error_retry_waits_the_backoff_of_that_attempt() -> None:
    for attempt in (1, 2, 3):
        decision = decide(
            FailureKind.ERROR, attempts=attempt, max_retries=5, backoff=3.0, rng=LOWEST
        )
        assert decision == Decision(JobStatus.PENDING, 3.0**attempt / 2)


def test_retry_request_honours_the_delay_asked_for() -> None:
    decision = decide(
        FailureKind.RETRY, attempts=1, max_retries=3, backoff=2.0, requested_delay_s=7.5
    )
    assert decision == Decision(JobStatus.PENDING, 7.5)
    negative = decide(
        FailureKind.RETRY, attempts=1, max_retries=3, backoff=2.0, requested_delay_s=-3
    )
    assert negative == Decision(JobStatus.PENDING, 0.0)


def test_retry_request_without_delay_uses_the_backoff() -> None:
    decision = decide(FailureKind.RETRY, attempts=2, max_retries=3, backoff=2.0, rng=HIGHEST)
    assert decision.status is JobStatus.PENDING
    assert decision.delay_s == pytest.approx(4.0)


def test_retry_request_still_counts_against_max_retries() -> None:
    decision = decide(
        FailureKind.RETRY, attempts=4, max_retries=3, backoff=2.0, requested_delay_s=1.0
    )
    assert decision == Decision(JobStatus.FAILED)
