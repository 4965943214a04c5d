"""A resolved project: models, segments, syncs and destinations, with their positions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from sqlglot import exp

from revseg.errors import Position
from revseg.secrets import Secrets
from revseg.spec.conditions import Condition


@dataclass(frozen=True)
class Model:
    """A table (or ``sql:`` query) of the warehouse that segments read."""

    name: str
    table: exp.Table | None
    query: exp.Query | None
    primary_key: str | None
    entity_key: str | None
    timestamp: str | None
    event_name: str | None
    updated_at: str | None
    loaded_at: str | None
    lookback: timedelta
    position: Position
    #: where each column-naming key sits, for "unknown column" errors
    key_positions: dict[str, Position] = field(default_factory=dict, compare=False)

    @property
    def is_event_model(self) -> bool:
        return self.event_name is not None


@dataclass(frozen=True)
class Trait:
    name: str
    tree: exp.Expr
    position: Position


@dataclass(frozen=True)
class QuietHours:
    """Trigger messages wait while the recipient's local time is in [start, end)."""

    start: time
    end: time
    timezone: str
    timezone_trait: str | None

    def active(self, moment: datetime, zone: str | None) -> bool:
        """Whether ``moment`` (naive UTC) falls in quiet hours in ``zone`` (else the default)."""
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            tz = ZoneInfo(zone) if zone else ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            tz = ZoneInfo(self.timezone)  # a trait with a bad zone falls back to the default
        local = moment.replace(tzinfo=UTC).astimezone(tz).time()
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # spans midnight


@dataclass(frozen=True)
class Sync:
    segment: str
    destination: str
    mode: str
    identifiers: dict[str, str]
    on: str
    template: str | None
    cooldown: timedelta | None
    backfill: bool
    max_removes: int | None
    max_remove_pct: float | None
    max_attempts: int
    batch_size: int | None
    position: Position
    quiet_hours: QuietHours | None = None

    @property
    def name(self) -> str:
        return f"{self.segment}.{self.destination}"


@dataclass(frozen=True)
class Segment:
    name: str
    description: str | None
    tags: tuple[str, ...]
    entity: str
    refresh: str
    where: Condition | None
    query: exp.Query | None
    traits: tuple[Trait, ...]
    syncs: tuple[Sync, ...]
    full_refresh_every: timedelta
    position: Position
    #: the segment's definition as loaded; its hash forces a full run when it changes
    definition: str = ""
    #: where its ``sql:`` stands, for errors the warehouse finds in it
    sql_position: Position | None = None


@dataclass(frozen=True)
class DestinationConfig:
    name: str
    type: str
    options: Any  # the destination type's validated Options model
    batch_size: int | None
    rate_limit_per_s: float | None
    max_retries: int
    position: Position
    options_position: Position


@dataclass
class Project:
    name: str
    directory: Path
    target_name: str
    target: dict[str, Any]
    state_schema: str
    sql_dialect: str
    entity: str | None
    models: dict[str, Model]
    segments: dict[str, Segment]
    destinations: dict[str, DestinationConfig]
    variables: dict[str, Any]
    secrets: Secrets
    serve: dict[str, str | None]
    history_retention: timedelta
    refresh: str
