"""A token bucket per client (API key, else address) for routes that cost real work.

Kept in the API process: with several API processes each allows the full rate. That is
the usual trade for not putting a shared counter on every request's path."""

from __future__ import annotations

import math
import time
from collections import OrderedDict

from taskmill.api.errors import ApiError
from taskmill.config import RateLimit

MAX_CLIENTS = 10_000  # least recently seen clients are forgotten beyond this


class RateLimiter:
    def __init__(self, limit: RateLimit) -> None:
        self.capacity = float(limit.count)
        self.per_token_s = limit.per_s / limit.count
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def take(self, client: str, *, now: float | None = None) -> float:
        """Spend one token of `client`'s bucket: 0.0 when allowed, else the seconds until
        a token is back."""
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.pop(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - at) / self.per_token_s)
        wait_s = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait_s = (1.0 - tokens) * self.per_token_s
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)
        return wait_s

    def check(self, client: str) -> None:
        """Raise 429 with Retry-After when `client` is over the limit."""
        wait_s = self.take(client)
        if wait_s > 0:
            raise ApiError(
                429, "too_many_requests",
                f"upload rate limit reached; try again in {math.ceil(wait_s)} s",
                headers={"Retry-After": str(math.ceil(wait_s))},
            )  # fmt: skip
