"""JSON encoding shared by the destinations that send revseg's own formats (webhook, file).

Trait values come straight from the warehouse, so they include types JSON has no word for.
They serialize predictably: datetimes as ISO 8601 (naive ones are UTC, SPEC 2.2, written
with ``Z``), dates as ``YYYY-MM-DD``, a Decimal as a JSON number when that number's text is
exactly the decimal and as a string otherwise (so ``812.50`` stays a number and a
38-digit fraction loses nothing), bytes as base64.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from revseg.destinations.base import Operation

_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS
_INT_RANGE = range(-(2**63), 2**64)  # what orjson writes as a JSON integer


def format_instant(value: datetime) -> str:
    """``2026-11-28T17:00:00Z``; microseconds only when nonzero; naive means UTC.

    >>> format_instant(datetime(2026, 11, 28, 17, 0, 0, 250000))
    '2026-11-28T17:00:00.250000Z'
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds" if value.microsecond else "seconds") + "Z"


def _decimal(value: Decimal) -> int | float | str:
    if not value.is_finite():
        return str(value)
    if value == value.to_integral_value():
        number = int(value)
        return number if number in _INT_RANGE else str(value)
    as_float = float(value)
    return as_float if Decimal(repr(as_float)) == value else str(value)


def _default(value: Any) -> Any:
    """orjson's hook for types it does not write natively."""
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Mapping):
        return dict(value)
    return str(value)


def dumps(value: Any) -> bytes:
    """Minified JSON bytes, with the trait-value rules above."""
    return orjson.dumps(value, default=_default, option=_OPTIONS)


def operation_fields(op: Operation) -> dict[str, Any]:
    """``op`` and ``id``; ``traits`` on all but removes; ``message`` on triggers."""
    fields: dict[str, Any] = {"op": op.op, "id": op.id}
    if op.op != "remove":
        fields["traits"] = dict(op.traits)
    if op.op == "trigger":
        fields["message"] = op.message
    return fields
