"""JSON values of ingest calls -> Python values of a warehouse column's type, or a precise reason.

Conversion happens before anything is written, so a call whose ``userId`` or property does not
fit its column is refused with 400 and writes nothing, instead of failing inside the insert.
Each column also gets the Arrow type its values are sent as (the bulk insert path).
"""

from __future__ import annotations

import math
import re
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
import pyarrow as pa

from revseg.compile.catalog import ColumnInfo, Kind
from revseg.compile.values import ValueConversionError, parse_timestamp

#: integer type names (DuckDB's and PostgreSQL's spellings) -> (min, max)
_INT_RANGES: dict[str, tuple[int, int]] = {}
for _names, _bits, _signed in (
    (("tinyint", "int1"), 8, True), (("smallint", "int2", "short"), 16, True),
    (("integer", "int", "int4", "signed"), 32, True), (("bigint", "int8", "long"), 64, True),
    (("hugeint", "int128"), 128, True), (("utinyint", "uint8"), 8, False), (("usmallint", "uint16"), 16, False),
    (("uinteger", "uint32"), 32, False), (("ubigint", "uint64"), 64, False), (("uhugeint", "uint128"), 128, False),
):
    for _name in _names:
        _INT_RANGES[_name] = (-(2 ** (_bits - 1)), 2 ** (_bits - 1) - 1) if _signed else (0, 2**_bits - 1)
_FLOATS = {"double", "float", "real", "float4", "float8", "double precision"}
_INT64 = (-(2**63), 2**63 - 1)


class ConversionError(ValueError):
    """The value does not fit the column; the message says why (without the column's name)."""


def _base(type_name: str) -> str:
    return re.sub(r"\(.*\)", "", type_name.strip().lower()).strip()


def describe(info: ColumnInfo) -> str:
    return f"{info.name} ({info.type_name})"


def arrow_type(info: ColumnInfo) -> pa.DataType:
    """How values of this column travel to the warehouse (the engine casts to the column)."""
    base = _base(info.type_name)
    if info.kind is Kind.NUMBER:
        bounds = _INT_RANGES.get(base)
        if bounds is not None:
            return pa.int64() if _INT64[0] <= bounds[0] and bounds[1] <= _INT64[1] else pa.string()
        return pa.float64() if base in _FLOATS else pa.string()  # decimals as exact text
    if info.kind is Kind.BOOL:
        return pa.bool_()
    if info.kind is Kind.TIMESTAMP:
        return pa.timestamp("us")  # naive UTC; sessions run in UTC, so TIMESTAMPTZ casts right
    if info.kind is Kind.DATE:
        return pa.date32()
    return pa.string()


def convert(value: Any, info: ColumnInfo) -> Any:
    """``value`` (decoded JSON) as this column's type; None stays None."""
    if value is None:
        return None
    if info.kind is Kind.NUMBER:
        return _number(value, _base(info.type_name))
    if info.kind is Kind.UUID:
        try:
            return str(uuid.UUID(_text(value)))
        except ValueError:
            raise ConversionError(f"{_show(value)} is not a UUID") from None
    if info.kind is Kind.TEXT:
        return _text(value)
    if info.kind is Kind.BOOL:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise ConversionError(f"{_show(value)} is not a boolean (true or false)")
    if info.kind in (Kind.TIMESTAMP, Kind.DATE):
        if not isinstance(value, str):
            raise ConversionError(f"{_show(value)} is not an ISO-8601 timestamp string")
        try:
            moment = parse_timestamp(value)
        except ValueConversionError as exc:
            raise ConversionError(str(exc)) from None
        return moment.date() if info.kind is Kind.DATE else moment
    # JSON, lists, structs...: text the engine casts (a mismatch fails the whole call)
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _show(value: Any) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return orjson.dumps(value).decode()


def _number(value: Any, base: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConversionError(f"{_show(value)} is not a number")
    bounds = _INT_RANGES.get(base)
    if bounds is not None:
        if isinstance(value, float):
            if not (math.isfinite(value) and value.is_integer()):
                raise ConversionError(f"{_show(value)} is not an integer")
            number = int(value)
        elif isinstance(value, int):
            number = value
        else:
            try:
                decimal = Decimal(value.strip())
            except InvalidOperation:
                raise ConversionError(f"{_show(value)} is not an integer") from None
            if not decimal.is_finite() or decimal != decimal.to_integral_value():
                raise ConversionError(f"{_show(value)} is not an integer")
            number = int(decimal)
        if not bounds[0] <= number <= bounds[1]:
            raise ConversionError(f"{number} is out of range for {base.upper()} ({bounds[0]} to {bounds[1]})")
        return number if _INT64[0] <= bounds[0] and bounds[1] <= _INT64[1] else str(number)
    try:
        decimal = Decimal(value.strip() if isinstance(value, str) else repr(value) if isinstance(value, float) else value)
    except InvalidOperation:
        raise ConversionError(f"{_show(value)} is not a number") from None
    if not decimal.is_finite():
        raise ConversionError(f"{_show(value)} is not a finite number")
    return float(decimal) if base in _FLOATS else format(decimal, "f")

