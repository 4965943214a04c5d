"""Braze's wire details for the braze destination: user objects, per-object errors, and the
request window Braze reports in its ``X-RateLimit-*`` headers.

Kept apart from :mod:`revseg.destinations.braze` so the destination reads as the flow of a
batch (group by user, build objects, post, map errors) and these rules can be tested alone.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from revseg.destinations.base import Operation
from revseg.destinations.http import Outcome, Verdict
from revseg.errors import TransientDeliveryError

Sleep = Callable[[float], None]
Clock = Callable[[], float]

#: current docs: at most 75 objects across ``attributes`` + ``events`` + ``purchases``.
MAX_OBJECTS = 75
#: keys of an attributes object that are not user attributes: a trait of one of these names
#: would change who the object identifies or how it is processed, so it is never sent.
RESERVED_KEYS = frozenset(
    {
        "external_id",
        "user_alias",
        "braze_id",
        "_update_existing_only",
        "subscription_groups",
        "push_token_import",
    }
)
#: the reset is a whole second: wait a little past it so our clock and theirs agree.
RESET_MARGIN = 0.05
PII_MASK = "<pii>"


@dataclass
class User:
    """One Braze user of a batch: the operation sent for it and every record it stands for."""

    kind: str  # external_id | email | phone: the identifier the object is keyed by
    value: str
    op: str  # add | update | remove
    operation: Operation
    ids: list[str] = field(default_factory=list)
    pii: set[str] = field(default_factory=set)  # raw values never to appear in a reason

    @property
    def key(self) -> tuple[str, str]:
        """The identity as Braze compares it (email addresses are case-insensitive)."""
        return (self.kind, self.value.lower() if self.kind == "email" else self.value)


def traits_as_attributes(
    traits: Mapping[str, Any], *, drop: Iterable[str], keep_null: bool
) -> dict[str, Any]:
    """The traits to write as user attributes (standard ones such as ``first_name`` or
    custom ones alike). ``null`` removes an attribute in Braze, so it is sent only when the
    trait *became* null (``keep_null``, updates); on an add it would only spend a data point.
    """
    skip = RESERVED_KEYS | set(drop)
    return {
        name: value
        for name, value in traits.items()
        if name not in skip and (keep_null or value is not None)
    }


def object_errors(document: Mapping[str, Any], count: int) -> tuple[dict[int, str], list[str]]:
    """``({index: type}, unplaced)`` from a response's ``errors``: those of ``attributes``
    objects with an index inside the request, and the text of every other error.

    >>> object_errors({"errors": [{"type": "'email' is not valid", "input_array": "attributes",
    ...                "index": 1}, {"type": "odd"}]}, 2)
    ({1: "'email' is not valid"}, ['odd'])
    """
    placed: dict[int, str] = {}
    unplaced: list[str] = []
    for error in document.get("errors") or []:
        if not isinstance(error, dict):
            continue
        text = str(error.get("type") or error.get("message") or "rejected")
        index = error.get("index")
        if (
            error.get("input_array") == "attributes"
            and isinstance(index, int)
            and not isinstance(index, bool)
            and 0 <= index < count
        ):
            placed[index] = f"{placed[index]}; {text}" if index in placed else text
        else:
            unplaced.append(text)
    return placed, unplaced


def mask_pii(reason: str, values: Iterable[str]) -> str:
    """``reason`` without any of ``values`` (emails, phones; any case)."""
    for value in sorted({v for v in values if v}, key=len, reverse=True):
        reason = re.sub(re.escape(value), PII_MASK, reason, flags=re.IGNORECASE)
    return reason


class RequestWindow:
    """The workspace's request window as Braze reports it on every response.

    ``X-RateLimit-Remaining`` reaching 0 makes the next request wait for
    ``X-RateLimit-Reset`` (UTC epoch seconds) instead of spending a 429; a 429 retries at
    the reset (the doc: no ``Retry-After``, wait until the reset). MAU-plan workspaces have
    hourly windows: a reset further away than ``max_wait`` ends the run's attempts at once
    (the next run sends the batch again) instead of holding the run for an hour.
    """

    def __init__(
        self, *, clock: Clock = time.time, sleep: Sleep = time.sleep, max_wait: float = 300.0
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self.max_wait = max_wait
        self._reset: float | None = None
        self._lock = threading.Lock()

    def observe(self, response: httpx.Response) -> float | None:
        """Record the headers; the seconds until the reset when the window is spent."""
        remaining = _number(response.headers.get("x-ratelimit-remaining"))
        reset = _number(response.headers.get("x-ratelimit-reset"))
        with self._lock:
            if remaining is not None and remaining <= 0 and reset is not None:
                self._reset = reset
                return max(0.0, reset - self._clock()) + RESET_MARGIN
            if remaining is not None and remaining > 0:
                self._reset = None
        return None

    def wait(self) -> float:
        """Sleep until the reset if the last response said the window was spent."""
        with self._lock:
            reset, self._reset = self._reset, None
        delay = 0.0 if reset is None else reset - self._clock() + RESET_MARGIN
        if delay > self.max_wait:
            raise TransientDeliveryError(
                f"Braze's request window is spent until {reset:.0f} (in {delay:.0f}s), "
                "longer than a run waits; the batch is sent again on the next run",
                retry_after=delay,
            )
        if delay > 0:
            self._sleep(delay)
        return max(0.0, delay)

    def classify(self, response: httpx.Response) -> Verdict | None:
        until_reset = self.observe(response)
        if response.status_code == 429:
            return Verdict(Outcome.TRANSIENT, retry_after=until_reset)
        return None


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
