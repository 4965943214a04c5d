"""What the ad-audience destinations (Meta, LinkedIn) share: their options and the rule for
members that carry no identifier the API can match.

Ad APIs hold people, not records: a member reaches the audience only through hashed
identifiers, so a member whose identifiers are all unusable (a malformed email, a phone
without its country code) cannot be added. SPEC 3 wants it reported, never dropped:
:func:`unusable_reason` words the per-record rejection without echoing the raw value (a
rejection reason lands in the state tables and in ``--json``, where PII does not belong).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Annotated

import httpx
from pydantic import BeforeValidator, SecretStr, field_validator

from revseg.destinations.base import DestinationOptions
from revseg.durations import parse_duration

Timeout = Annotated[timedelta, BeforeValidator(parse_duration)]


class AudienceOptions(DestinationOptions):
    """Options every ad-audience destination takes (the subclass adds its ids and defaults)."""

    access_token: SecretStr
    base_url: str
    timeout: Timeout = timedelta(seconds=30)

    @field_validator("base_url")
    @classmethod
    def _absolute_http_url(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise ValueError("base_url must be an absolute http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("timeout must be positive")
        return value

    @field_validator("access_token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("access_token must not be empty")
        return value


def unusable_reason(api: str, bad: Iterable[str], wants: str) -> str:
    """``no identifier Meta can match (email is not usable; ...): it needs ...``."""
    bad = sorted(bad)
    detail = f" ({', '.join(bad)} not usable after normalization)" if bad else ""
    return f"no identifier {api} can match{detail}: it needs {wants}"


def numeric_id(value: str, name: str) -> str:
    """Ad-platform object ids are decimal numbers; anything else is a configuration typo."""
    value = value.strip()
    if not value.isdigit():
        raise ValueError(f"{name} must be the numeric id (digits only)")
    return value
