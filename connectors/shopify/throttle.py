"""Shopify's cost-based rate limit, seen from the client: a leaky bucket per shop.

The GraphQL Admin API gives each shop a bucket of ``maximumAvailable`` cost
points that refills at ``restoreRate`` points a second; a request whose
``requestedQueryCost`` exceeds what is available is refused as THROTTLED
(nothing done). Every answer carries the bucket's state in
``extensions.cost.throttleStatus``. :class:`CostBucket` keeps the last state
seen, refills it with the clock, and makes a request wait until its cost is
available, so a busy client mostly never sees THROTTLED.

Before the first answer the bucket is assumed full at Shopify's standard size
(``maximum``/``restore_rate`` of the constructor); the first answer corrects it.
Requests in flight have their cost taken out when they start (``acquire``); the
next answer's ``currentlyAvailable`` replaces the estimate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

#: Shopify's standard plan (points, points/s): the assumption before the first answer.
DEFAULT_MAXIMUM = 1000.0
DEFAULT_RESTORE_RATE = 50.0


class CostBucket:
    def __init__(
        self,
        maximum: float = DEFAULT_MAXIMUM,
        restore_rate: float = DEFAULT_RESTORE_RATE,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.maximum = float(maximum)
        self.restore_rate = float(restore_rate)
        self._clock = clock
        self._available = self.maximum
        self._stamp = clock()
        self._lock: asyncio.Lock | None = None

    @property
    def available(self) -> float:
        now = self._clock()
        self._available = min(self.maximum, self._available + max(0.0, now - self._stamp) * self.restore_rate)
        self._stamp = now
        return self._available

    def update(self, status: Mapping[str, Any]) -> None:
        """Take the shop's own figures from an answer's ``throttleStatus``."""
        try:
            maximum = float(status["maximumAvailable"])
            current = float(status["currentlyAvailable"])
            rate = float(status["restoreRate"])
        except (KeyError, TypeError, ValueError):
            return
        if maximum > 0 and rate > 0:
            self.maximum, self.restore_rate = maximum, rate
        self._available = max(0.0, min(self.maximum, current))
        self._stamp = self._clock()

    def delay(self, cost: float) -> float:
        """Seconds until ``cost`` points are available (0: now). A cost above the
        maximum waits for a full bucket (the shop then refuses it as too costly)."""
        needed = min(cost, self.maximum)
        return max(0.0, (needed - self.available) / self.restore_rate)

    def take(self, cost: float) -> None:
        self.available  # refill first
        self._available = max(0.0, self._available - cost)

    async def acquire(self, cost: float) -> float:
        """Wait until ``cost`` is available, take it; the seconds waited. Waiters go in turn."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        waited = 0.0
        async with self._lock:
            while (pause := self.delay(cost)) > 0:
                waited += pause
                await asyncio.sleep(pause)
            self.take(cost)
        return waited
