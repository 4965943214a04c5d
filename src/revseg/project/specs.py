"""Raw specs: pydantic models that mirror the YAML files one to one (unknown keys forbidden).

These are the "unparsed" layer. :mod:`revseg.project.resolve` turns them into the domain
objects of :mod:`revseg.spec` that the compiler sees. Conditions (``where:``) are kept as
raw data here and parsed by :mod:`revseg.project.conditions`, which reports positions
per node.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from revseg.cron import Cron
from revseg.durations import parse_duration

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]

_CRON_FIELD = r"(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*"
_CRON = re.compile(rf"^\s*{_CRON_FIELD}(\s+{_CRON_FIELD}){{4}}\s*$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_refresh(value: object) -> str:
    """``continuous`` | ``manual`` | a duration | a five-field cron expression."""
    if not isinstance(value, str):
        raise ValueError("refresh must be a string: continuous, manual, a duration or a cron")
    if value in ("continuous", "manual"):
        return value
    if _CRON.match(value):
        try:
            Cron(value)
        except ValueError as exc:
            raise ValueError(f"bad refresh {value!r}: {exc}") from None
        return value
    try:
        parse_duration(value)
    except ValueError:
        raise ValueError(
            f"bad refresh {value!r}: expected continuous, manual, a duration (30s, 5m, 1h) "
            "or a five-field cron expression"
        ) from None
    return value


def check_name(value: object) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(
            f"bad name {value!r}: use letters, digits and underscores, starting with a letter"
        )
    return value


Refresh = Annotated[str, BeforeValidator(check_refresh)]
Name = Annotated[str, BeforeValidator(check_name)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TargetSpec(BaseModel):
    """A warehouse connection. Keys beyond ``type`` are checked by the engine's adapter."""

    model_config = ConfigDict(extra="allow")
    type: Literal["duckdb", "postgres", "snowflake", "bigquery", "databricks"]


class ModelSpec(Strict):
    table: str | None = None
    sql: str | None = None
    primary_key: str | None = None
    entity_key: str | None = None
    timestamp: str | None = None
    name: str | None = None
    updated_at: str | None = None
    loaded_at: str | None = None
    lookback: Duration = timedelta(minutes=10)


class ServeSpec(Strict):
    api_token: str | None = None
    write_key: str | None = None


class ProjectSpec(Strict):
    name: Name
    target: str | None = None
    targets: dict[str, TargetSpec]
    state_schema: Name = "revseg"
    entity: str | None = None
    models: dict[str, ModelSpec]
    vars: dict[str, Any] = Field(default_factory=dict)
    refresh: Refresh = "1h"
    full_refresh_every: Duration = timedelta(days=1)
    sql_dialect: str | None = None
    history_retention: Duration = timedelta(days=400)
    serve: ServeSpec | None = None


class QuietHoursSpec(Strict):
    """No trigger message between ``start`` and ``end`` (local time of the recipient)."""

    start: str
    end: str
    timezone: str = "UTC"
    timezone_trait: str | None = None

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError(f"bad time {value!r}: expected HH:MM (24-hour), e.g. 21:00")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}: use an IANA name such as Europe/Paris") from None
        return value


class SyncSpec(Strict):
    destination: str
    mode: Literal["mirror", "upsert", "trigger"] = "mirror"
    identifiers: dict[str, str] = Field(default_factory=dict)
    on: Literal["enter", "exit"] = "enter"
    template: str | None = None
    cooldown: Duration | None = None
    backfill: bool = False
    max_removes: int | None = Field(default=None, ge=0)
    max_remove_pct: float | None = Field(default=None, ge=0, le=100)
    max_attempts: int = Field(default=5, ge=1)
    batch_size: int | None = Field(default=None, ge=1)
    quiet_hours: QuietHoursSpec | None = None


class SegmentSpec(Strict):
    name: Name
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    entity: str | None = None
    refresh: Refresh | None = None
    where: Any = None
    sql: str | None = None
    traits: dict[str, str] = Field(default_factory=dict)
    syncs: list[SyncSpec] = Field(default_factory=list)
    full_refresh_every: Duration | None = None

    @field_validator("tags")
    @classmethod
    def _tags_are_names(cls, tags: list[str]) -> list[str]:
        for tag in tags:
            check_name(tag)
        return tags


class DestinationSpec(Strict):
    name: Name
    type: str
    options: dict[str, Any] = Field(default_factory=dict)
    batch_size: int | None = Field(default=None, ge=1)
    rate_limit: str | None = None
    max_retries: int = Field(default=5, ge=0)

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate(value)
        return value


def parse_rate(value: str) -> float:
    """``10/s``, ``600/m`` or ``1000/h`` as requests per second."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*/\s*([smh])\s*", value)
    if not match:
        raise ValueError(f"bad rate_limit {value!r}: expected a count per unit, e.g. 10/s or 600/m")
    per = {"s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2)]
    return float(match.group(1)) / per
