"""The one exception tree of revseg, and the located problems validation reports.

::

    RevsegError
    ├── ProjectError            invalid project or usage: a list of Problems   (exit 2)
    ├── WarehouseError          the warehouse could not be reached / a query failed (exit 3)
    ├── StateError              the state schema is unusable (newer version, ...) (exit 3)
    ├── LockError               another run holds the lock on a segment        (exit 1)
    └── DeliveryError           a destination failed a whole batch             (exit 1)
        └── TransientDeliveryError   retryable (429, 5xx, timeouts); `retry_after` hint

Transient vs terminal is a mixin-like subclass, so retry loops catch exactly the
retryable kind (dlt's split of transient and terminal exceptions).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Position:
    """A place in a project file: path relative to the project dir, line and column from 1."""

    path: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.path
        return f"{self.path}:{self.line}:{self.col}"


@dataclass(frozen=True, order=True)
class Problem:
    """One located user error. `code` is stable (e.g. ``unknown-key``) for tooling."""

    position: Position
    message: str
    code: str = "invalid"

    def __str__(self) -> str:
        return f"{self.position}: {self.message}"


class RevsegError(Exception):
    """Base of every error revseg raises on purpose."""

    exit_code = 1


class ProjectError(RevsegError):
    """The project is invalid; carries every problem found, sorted by position."""

    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(p) for p in self.problems))


class UsageError(RevsegError):
    """The command line asks for something impossible (unknown segment, bad --as-of)."""

    exit_code = 2


class WarehouseError(RevsegError):
    """The warehouse could not be reached, or a query failed (``reason``: the first line of the
    engine's own message, without the query, for a caller that reports it elsewhere)."""

    exit_code = 3

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message.splitlines()[0]

    @classmethod
    def query_failed(cls, engine: str, error: BaseException, sql: str) -> WarehouseError:
        message = str(error).strip()
        return cls(f"query failed on {engine}: {message}\n  query: {sql[:500]}", message.splitlines()[0] if message else None)


class StateError(RevsegError):
    """revseg's own tables in the warehouse are unusable."""

    exit_code = 3


class LockError(RevsegError):
    """Another live run holds the lock on a segment."""

    exit_code = 1


class DeliveryError(RevsegError):
    """A destination failed a whole batch for this run; the next run delivers it again."""

    exit_code = 1


class TransientDeliveryError(DeliveryError):
    """A retryable failure (429, 5xx, timeout, connection error).

    ``maybe_delivered`` is False when no attempt can have reached the API (connection
    refused, 408, 429): a trigger batch that failed so was not sent and may be sent again.
    """

    def __init__(self, message: str, retry_after: float | None = None, *,
                 maybe_delivered: bool = True) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.maybe_delivered = maybe_delivered


class PossiblyDeliveredError(DeliveryError):
    """A non-idempotent request failed after it may have reached the API; never resent.

    Trigger sends (SMS) have no idempotency key, so SPEC 3 wants them at most once.
    """


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a close choice exists, else an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
