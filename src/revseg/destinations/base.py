"""The destination plugin interface: capabilities as data, and one method to send a batch.

A destination never touches SQL and never decides what to send: the runner streams the
delta out of the warehouse, cuts it into batches no larger than
``capabilities.max_batch_size`` (or the sync's smaller ``batch_size``), and calls
:meth:`Destination.send` once per batch. Retries of transient failures live in the shared
HTTP core (:mod:`revseg.destinations.http`), not in each plugin.

Outcome of ``send``:

- returns a :class:`BatchResult`: every operation not listed in ``rejected`` is
  acknowledged; rejected ones carry the API's reason and are retried on later runs;
- raises :class:`~revseg.errors.DeliveryError`: the whole batch failed for this run
  (the sync's snapshot does not advance for it, so the next run sends it again).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

OpKind = Literal["add", "remove", "update", "trigger"]
Mode = Literal["mirror", "upsert", "trigger"]


@dataclass(frozen=True)
class Capabilities:
    """What a destination can do; the runner and `validate` read this, never the code."""

    modes: frozenset[str] = frozenset({"mirror", "upsert", "trigger"})
    max_batch_size: int = 10_000
    #: identifier kinds the API knows (``email``, ``phone`` ...); None accepts any name.
    identifier_kinds: frozenset[str] | None = None
    #: identifier kinds the API wants normalized and SHA-256 hashed by revseg.
    hashed_identifiers: frozenset[str] = frozenset()
    #: whether members need at least one identifier to be sent (ad APIs do; a file does not).
    requires_identifier: bool = False
    #: True when the API applies trait changes of existing members (``update`` ops).
    supports_update: bool = True
    #: fewest matched members before the audience can be used (LinkedIn: 300); None: no floor.
    #: Informational: a smaller segment still syncs, but `validate`/`plan` may warn about it.
    min_audience_size: int | None = None
    #: how long the API takes to apply a change (audiences read right after a sync lag it)
    processing_lag: timedelta | None = None


@dataclass(frozen=True)
class Operation:
    """One change for one entity. ``id`` is the entity's primary key as text."""

    op: OpKind
    id: str
    traits: Mapping[str, Any] = field(default_factory=dict)
    identifiers: Mapping[str, str] = field(default_factory=dict)
    message: str | None = None  # trigger mode: the rendered template


@dataclass(frozen=True)
class Batch:
    """A batch of operations of one sync within one run."""

    run_id: str
    sync: str  # "<segment>.<destination>"
    segment: str
    number: int  # counts the batches of this sync within the run, from 1
    seq: int  # counts every delivery of the run across all syncs, from 1; stable on retry
    as_of: datetime
    #: a tuple, or the runner's columns (:class:`~revseg.destinations.columns.OperationColumns`)
    operations: Sequence[Operation]
    #: what the destination's :meth:`Destination.encode` made of the operations (None: not encoded)
    encoded: Any = None


@dataclass(frozen=True)
class BatchResult:
    """Acknowledgement of a batch: everything not in ``rejected`` (id -> reason) was applied."""

    rejected: Mapping[str, str] = field(default_factory=dict)


class DestinationOptions(BaseModel):
    """Base of each destination's ``options:`` schema (unknown keys are errors).

    Options hold tokens and keys, so validation errors never echo the offending input.
    """

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class Destination(ABC):
    """A destination type. Subclasses set ``capabilities`` and ``Options``."""

    capabilities: ClassVar[Capabilities] = Capabilities()
    Options: ClassVar[type[DestinationOptions]] = DestinationOptions

    def __init__(self, name: str, options: DestinationOptions, settings: DeliverySettings) -> None:
        self.name = name
        self.options = options
        self.settings = settings

    def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire connections; called once before the first batch of a run."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; called once after the last batch, also on failure."""

    def encode(self, batch: Batch) -> Batch:
        """The batch with the work that needs no network done (normalizing, hashing), kept
        in ``batch.encoded`` for :meth:`send`. The runner calls it for the next batch, in a
        thread of its own, while the previous one is in flight, so that work is off the
        send path: it must not use the destination's connection or change its state. By
        default ``send`` does everything."""
        return batch

    @abstractmethod
    def send(self, batch: Batch) -> BatchResult:
        """Deliver one batch, or raise DeliveryError (TransientDeliveryError if retryable)."""

    def __enter__(self) -> Destination:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class DeliverySettings:
    """Per-destination delivery knobs from the destination file (SPEC 3)."""

    batch_size: int | None = None
    rate_limit_per_s: float | None = None
    max_retries: int = 5
    extra: Mapping[str, Any] = field(default_factory=dict)
