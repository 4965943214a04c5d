"""Retry timing for the HTTP core: bounded attempts, full-jitter backoff, ``Retry-After``.

Full jitter (a uniform delay between zero and the exponential cap) spreads the retries of
many clients hit by one outage instead of having them return in lockstep; a server's
``Retry-After`` is the one exception: it is honoured exactly.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP-date."""
    if not value or not value.strip():
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now()
    return max(0.0, seconds) if math.isfinite(seconds) else None


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: ``max_retries`` after the first attempt, full-jitter backoff."""

    max_retries: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    #: a Retry-After longer than this ends the run's attempts at once (the next run retries).
    max_retry_after: float = 300.0

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Delay before retry number ``retry`` (from 1): uniform in [0, base * 2**(retry-1)]."""
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * 2 ** (retry - 1)))
