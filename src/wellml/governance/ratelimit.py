"""Per-consumer rate limits: one token bucket per access token.

A bucket holds up to ``capacity`` requests and refills at ``rate`` requests a second; a request
takes one from it, and a request that finds it empty is refused with how long to wait.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class TokenBucket:
    """One consumer's bucket."""

    rate: float
    capacity: float
    tokens: float
    updated: float

    def take(self, now: float, cost: float = 1.0) -> float:
        """Take ``cost`` from the bucket; return 0 when allowed, else the seconds to wait."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate


class RateLimiter:
    """Token buckets by key (a token id), created on first use with that key's limit."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()
        self._max_keys = max_keys

    def check(self, key: str, rate: float, burst: float | None = None) -> float:
        """Take one request from ``key``'s bucket; return 0 when allowed, else the seconds
        until one is available (the caller answers 429 with ``Retry-After``)."""
        capacity = float(burst) if burst is not None else float(max(1, math.ceil(rate)))
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None or bucket.rate != rate or bucket.capacity != capacity:
                if bucket is None and len(self._buckets) >= self._max_keys:
                    self._evict(now)
                bucket = TokenBucket(rate, capacity, capacity, now)
                self._buckets[key] = bucket
            return bucket.take(now)

    def _evict(self, now: float) -> None:
        # Buckets that have refilled completely carry no state worth keeping.
        full = [
            k
            for k, b in self._buckets.items()
            if b.tokens + (now - b.updated) * b.rate >= b.capacity
        ]
        for k in full or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[k]
