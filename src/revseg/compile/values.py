"""Turn a condition's value into a SQL literal of the column's type (SPEC 2.2 "Values").

``"500"`` rendered from ``{{ var('high_value') }}`` compares numerically with a numeric
column; a value that cannot be converted raises ValueConversionError, which the compiler
reports at the value's position.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlglot import exp

from revseg.compile.catalog import Kind
from revseg.spec.conditions import Ago


class ValueConversionError(ValueError):
    """The value does not convert to the column's type; the message says why."""


def timestamp_literal(moment: datetime) -> exp.Expr:
    """A naive-UTC timestamp literal (aware datetimes are converted to UTC first)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    text = moment.isoformat(sep=" ", timespec="microseconds" if moment.microsecond else "seconds")
    return exp.cast(exp.Literal.string(text), exp.DataType.build("TIMESTAMP"))


def number_literal(value: Any) -> exp.Expr:
    """A numeric literal from an int, float, Decimal or numeric string."""
    if isinstance(value, bool):
        raise ValueConversionError(f"{value!r} is a boolean, not a number")
    if isinstance(value, int):
        return exp.Literal.number(str(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueConversionError(f"{value!r} is not a finite number")
        return exp.Literal.number(repr(value))
    if isinstance(value, (str, Decimal)):
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueConversionError(f"{value!r} is not a number") from None
        if not number.is_finite():
            raise ValueConversionError(f"{value!r} is not a finite number")
        return exp.Literal.number(format(number, "f"))
    raise ValueConversionError(f"{value!r} is not a number")


def parse_timestamp(value: Any) -> datetime:
    """ISO-8601 text (``2026-11-28``, ``2026-11-28T17:00:00Z``) or a YAML timestamp, as naive UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueConversionError(f"{value!r} is not an ISO-8601 timestamp (e.g. 2026-11-28T17:00:00Z)") from None
    else:
        raise ValueConversionError(f"{value!r} is not a timestamp")
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def literal(value: Any, kind: Kind, as_of: datetime) -> exp.Expr:
    """The literal for one scalar value compared with a column of ``kind``."""
    if isinstance(value, Ago):
        if kind not in (Kind.TIMESTAMP, Kind.DATE):
            raise ValueConversionError("{ago: D} compares only with timestamp or date columns")
        moment = as_of - value.delta
        if kind is Kind.DATE:
            return exp.cast(exp.Literal.string(moment.date().isoformat()), exp.DataType.build("DATE"))
        return timestamp_literal(moment)
    if kind is Kind.NUMBER:
        return number_literal(value)
    if kind is Kind.TEXT:
        if isinstance(value, bool):
            return exp.Literal.string("true" if value else "false")
        if isinstance(value, (datetime, date)):
            return exp.Literal.string(value.isoformat())
        return exp.Literal.string(str(value))
    if kind is Kind.BOOL:
        if isinstance(value, bool):
            return exp.Boolean(this=value)
        text = str(value).strip().lower()
        if text in ("true", "false"):
            return exp.Boolean(this=text == "true")
        raise ValueConversionError(f"{value!r} is not a boolean (true or false)")
    if kind is Kind.TIMESTAMP:
        return timestamp_literal(parse_timestamp(value))
    if kind is Kind.UUID:
        try:
            return exp.Literal.string(str(uuid.UUID(str(value).strip())))
        except ValueError:
            raise ValueConversionError(f"{value!r} is not a UUID") from None
    if kind is Kind.DATE:
        moment = parse_timestamp(value)
        return exp.cast(exp.Literal.string(moment.date().isoformat()), exp.DataType.build("DATE"))
    # unknown column types: let the engine compare with a plain literal
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return number_literal(value)
    return exp.Literal.string(str(value))
