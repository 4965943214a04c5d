"""The shared HTTP delivery core every API destination sends through.

One place decides what an HTTP outcome means, so every destination retries the same way:

- 2xx: done, the response goes back to the destination;
- 408, 429, 5xx, connection errors and timeouts: transient, retried within the run with
  exponential backoff and full jitter (or exactly the server's ``Retry-After``), at most
  ``max_retries`` times, then :class:`~revseg.errors.TransientDeliveryError`;
- anything else, redirects included (never followed: a redirect would replay credentials
  and a signed body to a host the user did not configure): :class:`DeliveryError`.

An API that says more in its error bodies (a 400 that is really a rate limit, a 200 that
carries per-record rejections) plugs in a ``classify`` hook returning a :class:`Verdict`;
:attr:`Outcome.OK` hands even a 4xx response back so the destination can map its errors
to records. Logs go to the ``revseg.http`` logger with credentials redacted.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Self

import httpx

from revseg import __version__
from revseg.destinations.base import DeliverySettings
from revseg.destinations.ratelimit import Sleep, TokenBucket
from revseg.destinations.redact import excerpt, redact_headers, redact_text, redact_url
from revseg.destinations.retry import RetryPolicy, parse_retry_after
from revseg.errors import DeliveryError, PossiblyDeliveredError, TransientDeliveryError

__all__ = [
    "DEFAULT_TIMEOUT",
    "EXTRA_SLEEP",
    "EXTRA_TRANSPORT",
    "USER_AGENT",
    "HttpCore",
    "Outcome",
    "PossiblyDeliveredError",
    "ResponseClassifier",
    "RetryPolicy",
    "Verdict",
    "classify_status",
    "parse_retry_after",
]

log = logging.getLogger("revseg.http")


class _RedactUrls(logging.Filter):
    """httpx logs each request's full URL at INFO; redact it like our own logs do."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_url(a) if isinstance(a, httpx.URL) else a for a in record.args
            )
        return True


logging.getLogger("httpx").addFilter(_RedactUrls())

USER_AGENT = f"revseg/{__version__}"
DEFAULT_TIMEOUT = 30.0
#: keys of ``DeliverySettings.extra`` that tests use to inject a transport and a sleep.
EXTRA_TRANSPORT = "http_transport"
EXTRA_SLEEP = "http_sleep"

Prepare = Callable[[httpx.Request, int], None]


class Outcome(Enum):
    """OK hands the response to the destination; TRANSIENT retries; TERMINAL fails the batch."""

    OK = "ok"
    TRANSIENT = "transient"
    TERMINAL = "terminal"


@dataclass(frozen=True)
class Verdict:
    """What one attempt's response means; ``retry_after`` (seconds) overrides the header."""

    outcome: Outcome
    reason: str = ""
    retry_after: float | None = None


#: API-specific hook: a Verdict for responses it understands, None for the default rules.
ResponseClassifier = Callable[[httpx.Response], "Verdict | None"]


def classify_status(status: int) -> Outcome:
    """The default meaning of an HTTP status (SPEC 3.1)."""
    if 200 <= status < 300:
        return Outcome.OK
    if status in (408, 429) or status >= 500:
        return Outcome.TRANSIENT
    return Outcome.TERMINAL


# Errors raised before any byte of the request could have reached the server.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_TRANSIENT_ERRORS = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)


@dataclass(frozen=True)
class _Attempt:
    verdict: Verdict
    response: httpx.Response | None
    #: False only when the request provably never reached the API (connect error, 408, 429).
    maybe_delivered: bool


class HttpCore:
    """One ``httpx.Client`` plus the retry, rate-limit, classification and logging rules."""

    def __init__(
        self,
        *,
        name: str = "http",
        base_url: str = "",
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        policy: RetryPolicy | None = None,
        rate_limit_per_s: float | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        secrets: Iterable[str] = (),
        classify: ResponseClassifier | None = None,
    ) -> None:
        self.name = name
        self.policy = policy or RetryPolicy()
        self.secrets = tuple(s for s in secrets if s)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._classify_hook = classify
        self._limiter = TokenBucket(rate_limit_per_s, sleep=sleep) if rate_limit_per_s else None
        self._client = httpx.Client(
            base_url=base_url,
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            headers={"user-agent": USER_AGENT, **(headers or {})},
            transport=transport,
            follow_redirects=False,
        )

    @classmethod
    def from_settings(cls, settings: DeliverySettings, **kwargs: Any) -> HttpCore:
        """A core honouring a destination's delivery settings (and test injections)."""
        policy = kwargs.pop("policy", None) or RetryPolicy(max_retries=settings.max_retries)
        kwargs.setdefault("transport", settings.extra.get(EXTRA_TRANSPORT))
        kwargs.setdefault("sleep", settings.extra.get(EXTRA_SLEEP) or time.sleep)
        return cls(policy=policy, rate_limit_per_s=settings.rate_limit_per_s, **kwargs)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def classify(self, response: httpx.Response) -> Verdict:
        """The Verdict for one response: the API hook first, then the status rules."""
        verdict = self._classify_hook(response) if self._classify_hook else None
        if verdict is None:
            verdict = Verdict(classify_status(response.status_code))
        if not verdict.reason:
            verdict = replace(verdict, reason=self._describe(response))
        if verdict.outcome is Outcome.TRANSIENT and verdict.retry_after is None:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            verdict = replace(verdict, retry_after=retry_after)
        return verdict

    def request(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        prepare: Prepare | None = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        """Send with retries; return the accepted response or raise DeliveryError.

        ``prepare(request, attempt)`` runs before every attempt (per-attempt timestamps and
        signatures). ``idempotent=False`` retries only failures that prove the request never
        reached the API (connect errors, 408, 429); others raise PossiblyDeliveredError.
        """

        def build() -> httpx.Request:  # afresh per attempt: prepare() may change headers
            return self._client.build_request(
                method, url, content=content, json=json, params=params, headers=headers
            )

        try:
            shown = f"{method} {redact_url(build().url, self.secrets)}"
        except (httpx.InvalidURL, httpx.HTTPError) as exc:  # unusable URL: no retry helps
            raise DeliveryError(redact_text(f"{method}: {exc}", self.secrets)) from None
        attempts = self.policy.max_retries + 1
        reached = False  # whether any attempt may have reached the API
        for attempt in range(1, attempts + 1):
            if self._limiter is not None:
                self._limiter.acquire()
            request = build()
            if prepare is not None:
                prepare(request, attempt)
            result = self._attempt(request, shown, attempt, attempts)
            verdict = result.verdict
            reached = reached or result.maybe_delivered
            if verdict.outcome is Outcome.OK:
                assert result.response is not None
                return result.response
            reason = f"{shown}: {verdict.reason}"
            if verdict.outcome is Outcome.TERMINAL:
                raise DeliveryError(reason)
            if not idempotent and result.maybe_delivered:
                raise PossiblyDeliveredError(f"{reason} (may have been delivered; not resent)")
            retry_after = verdict.retry_after
            if retry_after is not None and retry_after > self.policy.max_retry_after:
                raise TransientDeliveryError(
                    f"{reason}; the API asks to wait {retry_after:.0f}s, longer than a run waits",
                    retry_after=retry_after,
                    maybe_delivered=reached,
                )
            if attempt == attempts:
                raise TransientDeliveryError(
                    f"{reason} (gave up after {attempts} attempts)",
                    retry_after=retry_after,
                    maybe_delivered=reached,
                )
            delay = (
                retry_after if retry_after is not None else self.policy.backoff(attempt, self._rng)
            )
            log.warning(
                "%s %s: %s; retry in %.2fs (attempt %d/%d)",
                self.name,
                shown,
                verdict.reason,
                delay,
                attempt,
                attempts,
            )
            self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(self, request: httpx.Request, shown: str, attempt: int, attempts: int) -> _Attempt:
        """One send, classified; the transport's exceptions become Verdicts too."""
        started = time.monotonic()
        try:
            response = self._client.send(request)
        except _TRANSIENT_ERRORS as exc:
            reason = redact_text(f"{type(exc).__name__}: {exc}".rstrip(": "), self.secrets)
            log.info("%s %s -> %s (attempt %d/%d)", self.name, shown, reason, attempt, attempts)
            verdict = Verdict(Outcome.TRANSIENT, reason)
            return _Attempt(verdict, None, maybe_delivered=not isinstance(exc, _NOT_SENT))
        except httpx.HTTPError as exc:  # unsupported scheme, invalid URL, ...
            reason = redact_text(f"{type(exc).__name__}: {exc}", self.secrets)
            raise DeliveryError(f"{shown}: {reason}") from None
        log.debug(
            "%s %s -> %d in %.0f ms (attempt %d/%d) request headers %s",
            self.name,
            shown,
            response.status_code,
            (time.monotonic() - started) * 1000,
            attempt,
            attempts,
            redact_headers(request.headers),
        )
        maybe_delivered = response.status_code not in (408, 429)
        return _Attempt(self.classify(response), response, maybe_delivered)

    def _describe(self, response: httpx.Response) -> str:
        """``HTTP 404 Not Found: <excerpt>``; redirects also name their (redacted) target."""
        text = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
        if response.is_redirect:
            location = response.headers.get("location", "")
            location = redact_url(location, self.secrets) if location else "none"
            text += f" (redirects are not followed; Location: {location})"
        body = excerpt(response, self.secrets)
        return f"{text}: {body}" if body else text
