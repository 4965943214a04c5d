"""A token bucket that keeps a destination under its API's request rate (``rate_limit``).

Callers *reserve* a token and then sleep off any debt, rather than polling until one is
free: the wait is computed once, so an injected fake sleep (tests) never spins, and
concurrent callers queue in arrival order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Sleep = Callable[[float], None]
Clock = Callable[[], float]


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst`` (default: one second's worth)."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._updated = clock()
        self._lock = threading.Lock()

    def reserve(self, tokens: float = 1.0) -> float:
        """Take ``tokens`` now (possibly into debt); return the seconds to wait before using them."""
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._updated)
            self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
            self._updated = now
            self._tokens -= tokens
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self, tokens: float = 1.0) -> float:
        """Block until ``tokens`` may be spent; return how long it waited."""
        wait = self.reserve(tokens)
        if wait > 0:
            self._sleep(wait)
        return wait
