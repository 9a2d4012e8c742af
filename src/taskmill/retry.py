"""What happens after an attempt: back-off with jitter and the next state — pure."""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass

from taskmill.jobs import JobStatus

DEFAULT_BACKOFF_CAP_S = 3600.0


class FailureKind(enum.Enum):
    ERROR = "error"  # an ordinary exception: retry with back-off while retries remain
    PERMANENT = "permanent"  # PermanentError: fail now
    RETRY = "retry"  # Retry(delay=...): another attempt, at the delay asked for
    TIMEOUT = "timeout"  # killed at its deadline: counts like an error
    CRASH = "crash"  # its process died under it: counts like an error


@dataclass(frozen=True, slots=True)
class Decision:
    status: JobStatus  # PENDING (retry scheduled) or FAILED
    delay_s: float = 0.0


def backoff_delay_s(
    backoff: float,
    attempt: int,
    *,
    cap_s: float = DEFAULT_BACKOFF_CAP_S,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before the attempt after `attempt` (1-based): `backoff ** attempt`,
    capped at `cap_s`, with "equal jitter" — a uniform draw from the upper half — so that
    jobs failing together do not all come back in the same instant."""
    try:
        power = backoff**attempt
    except OverflowError:  # e.g. backoff 10 at attempt 400: max_retries allows 1000
        power = math.inf
    base = min(cap_s, power) if backoff > 0 else 0.0
    draw = (rng or random).random()
    return base / 2 + draw * base / 2


def decide(
    kind: FailureKind,
    *,
    attempts: int,
    max_retries: int,
    backoff: float,
    requested_delay_s: float | None = None,
    rng: random.Random | None = None,
) -> Decision:
    """Next state of a job whose attempt number `attempts` just failed in the way `kind`.

    A job may run `max_retries + 1` times in all; every kind but PERMANENT asks for another
    attempt while that budget lasts.
    """
    if kind is FailureKind.PERMANENT or attempts > max_retries:
        return Decision(JobStatus.FAILED)
    if kind is FailureKind.RETRY and requested_delay_s is not None:
        return Decision(JobStatus.PENDING, max(0.0, requested_delay_s))
    return Decision(JobStatus.PENDING, backoff_delay_s(backoff, attempts, rng=rng))
