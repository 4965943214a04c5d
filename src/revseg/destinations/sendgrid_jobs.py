"""SendGrid's asynchronous contact jobs and its rate-limit headers, for the sendgrid destination.

Both list calls SendGrid offers are jobs: ``PUT /v3/marketing/contacts`` and ``DELETE
/v3/marketing/lists/{id}/contacts`` answer ``202 {"job_id"}`` and apply the change later.
A batch is acknowledged only once its job is finished (``GET
/v3/marketing/contacts/imports/{id}``: ``pending`` until it is, then ``completed``,
``errored`` or ``failed``), so the runner's snapshot never runs ahead of the list.

SendGrid limits each endpoint to a number of requests per refresh period and says where a
client stands on every response (``X-RateLimit-Remaining``, ``X-RateLimit-Reset`` in Unix
seconds). :class:`RateLimits` reads those headers from every attempt's response, makes the
next request to an exhausted endpoint wait for its reset instead of spending a 429, and
turns a 429's reset into the retry delay.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from revseg.destinations.http import HttpCore, Outcome, Verdict
from revseg.errors import DeliveryError, TransientDeliveryError

Sleep = Callable[[float], None]
Clock = Callable[[], float]

_ID_SEGMENT = re.compile(r"/[0-9a-fA-F-]{16,}(?=/|$)")
#: the reset is a whole second: wait a little past it so our clock and theirs agree.
RESET_MARGIN = 0.05


def endpoint(method: str, path: str) -> str:
    """``DELETE /v3/marketing/lists/{id}/contacts``: the key SendGrid's limits are counted by
    (any path prefix of a proxying ``base_url`` left out).

    >>> endpoint("GET", "/proxy/v3/marketing/contacts/imports/2387e363-4104-4225-8960-4a5758492351")
    'GET /v3/marketing/contacts/imports/{id}'
    """
    start = path.find("/v3/")
    return f"{method} {_ID_SEGMENT.sub('/{id}', path[start:] if start >= 0 else path)}"


class RateLimits:
    """Per-endpoint state from SendGrid's ``X-RateLimit-*`` headers."""

    def __init__(self, *, clock: Clock = time.time, sleep: Sleep = time.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._exhausted: dict[str, float] = {}  # endpoint -> reset (Unix seconds)
        self._lock = threading.Lock()

    def observe(self, response: httpx.Response) -> float | None:
        """Record the headers; return the seconds until reset when the endpoint is exhausted."""
        remaining = _number(response.headers.get("x-ratelimit-remaining"))
        reset = _number(response.headers.get("x-ratelimit-reset"))
        key = endpoint(response.request.method, response.request.url.path)
        with self._lock:
            if remaining is not None and remaining <= 0 and reset is not None:
                self._exhausted[key] = reset
                return max(0.0, reset - self._clock()) + RESET_MARGIN
            if remaining is not None and remaining > 0:
                self._exhausted.pop(key, None)
        return None

    def wait(self, method: str, path: str) -> float:
        """Sleep until the endpoint's reset if its last response said it was exhausted."""
        key = endpoint(method, path)
        with self._lock:
            reset = self._exhausted.pop(key, None)
        delay = 0.0 if reset is None else reset - self._clock() + RESET_MARGIN
        if delay > 0:
            self._sleep(delay)
        return max(0.0, delay)

    def classify(self, response: httpx.Response) -> Verdict | None:
        """A 429 retries when the endpoint resets (the doc: "wait until X-RateLimit-Reset")."""
        until_reset = self.observe(response)
        if response.status_code == 429:
            return Verdict(Outcome.TRANSIENT, retry_after=until_reset)
        return None


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Job:
    """A finished (or given-up) job as ``GET …/imports/{id}`` reports it."""

    id: str
    status: str  # completed | errored | failed | unknown (the API does not track it)
    results: Mapping[str, Any]

    @property
    def errored_count(self) -> int:
        value = self.results.get("errored_count")
        return int(value) if isinstance(value, int | float) else 0


class JobWaiter:
    """Polls a job to completion: quickly at first (small jobs finish in seconds), then
    backing off to ``max_interval``; gives up after ``timeout`` seconds."""

    def __init__(
        self,
        http: HttpCore,
        limits: RateLimits,
        *,
        timeout: float,
        sleep: Sleep = time.sleep,
        clock: Clock = time.monotonic,
        first_interval: float = 0.1,
        max_interval: float = 10.0,
    ) -> None:
        self.http = http
        self.limits = limits
        self.timeout = timeout
        self._sleep = sleep
        self._clock = clock
        self.first_interval = first_interval
        self.max_interval = max_interval

    def wait(self, job_id: str, *, untracked_ok: bool = False) -> Job:
        """The job once it is no longer ``pending``.

        ``untracked_ok``: a 404 means the API keeps no status for this kind of job (list
        removals are documented only as returning a job id), so its 202 is the answer.
        """
        if not job_id:
            if untracked_ok:
                return Job("", "unknown", {})
            raise DeliveryError("SendGrid accepted the request but returned no job_id")
        url = f"/v3/marketing/contacts/imports/{job_id}"
        deadline = self._clock() + self.timeout
        interval = self.first_interval
        while True:
            self.limits.wait("GET", url)
            response = self.http.request("GET", url)
            if response.status_code == 404:
                if untracked_ok:
                    return Job(job_id, "unknown", {})
                raise DeliveryError(f"SendGrid does not know job {job_id} (HTTP 404)")
            document = response.json() if response.content else {}
            status = str(document.get("status", "")).lower()
            if status and status != "pending":
                results = document.get("results")
                return Job(job_id, status, results if isinstance(results, dict) else {})
            if self._clock() + interval > deadline:
                raise TransientDeliveryError(
                    f"SendGrid job {job_id} still pending after {self.timeout:.0f}s; the batch "
                    "is sent again on the next run (the upsert is idempotent)"
                )
            self._sleep(interval)
            interval = min(self.max_interval, interval * 2)
