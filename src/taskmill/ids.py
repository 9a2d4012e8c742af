"""Job ids: UUIDv7 strings, so ids sort by creation time (cursor pagination, index locality)."""

from __future__ import annotations

import random
import threading
import time


class _Uuid7Source:
    """UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then a 12-bit counter that keeps ids
    from one process strictly increasing within a millisecond, then 62 random bits (the
    random module reseeds itself after a fork, so children never repeat a parent's draws)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._counter = 0

    def _tick(self) -> tuple[int, int]:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms > self._last_ms:
                self._last_ms, self._counter = ms, 0
            else:
                self._counter += 1
                if self._counter > 0xFFF:  # counter spent: borrow the next millisecond
                    self._last_ms, self._counter = self._last_ms + 1, 0
            return self._last_ms, self._counter

    def __call__(self) -> str:
        ms, seq = self._tick()
        # Not a secret (ids grant nothing; API keys do) — a fast draw beats a syscall here.
        rand = random.getrandbits(62)
        h = "%032x" % ((ms << 80) | (0x7 << 76) | (seq << 64) | (0b10 << 62) | rand)
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


new_id = _Uuid7Source()
"""A new job id: a UUIDv7 string, increasing within this process."""
