"""Options every HTTP destination shares: ``base_url`` and ``timeout`` (SPEC 3), checked once.

Each API's options class inherits these and adds its ids and credentials; the validators
here apply to a subclass that redeclares a field (e.g. a required ``base_url``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import httpx
from pydantic import BeforeValidator, SecretStr, field_validator

from revseg.destinations.base import DestinationOptions
from revseg.durations import parse_duration

Timeout = Annotated[timedelta, BeforeValidator(parse_duration)]


def absolute_http_url(value: str) -> str:
    """``value`` without a trailing slash; ValueError unless it is an absolute http(s) URL."""
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise ValueError("base_url must be an absolute http:// or https:// URL")
    return value.rstrip("/")


def not_blank(value: SecretStr, name: str) -> SecretStr:
    if not value.get_secret_value().strip():
        raise ValueError(f"{name} must not be empty")
    return value


class HttpOptions(DestinationOptions):
    """``base_url`` (the API's root, version path included) and a per-request ``timeout``."""

    base_url: str | None = None
    timeout: Timeout = timedelta(seconds=30)

    @field_validator("base_url")
    @classmethod
    def _absolute_http_url(cls, value: str | None) -> str | None:
        return None if value is None else absolute_http_url(value)

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("timeout must be positive")
        return value
