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

from pydantic import SecretStr, field_validator

from revseg.destinations.options import HttpOptions, not_blank


class AudienceOptions(HttpOptions):
    """Options every ad-audience destination takes (the subclass adds its ids and defaults)."""

    access_token: SecretStr
    base_url: str

    @field_validator("access_token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        return not_blank(value, "access_token")


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
