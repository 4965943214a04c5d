"""Rendering of results for humans (tables) and machines (JSON Lines, CSV, JSON)."""

from __future__ import annotations

import csv
import io
import sys
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import click
import orjson


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.isoformat() + "Z"
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return str(value)


def to_json(value: Any, *, indent: bool = False) -> str:
    option = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
    if indent:
        option |= orjson.OPT_INDENT_2
    return orjson.dumps(value, default=_default, option=option).decode()


def text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (Decimal, datetime, date)):
        rendered = _default(value)
        return str(rendered)
    return str(value)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain aligned table (stable for logs and CI; rich adds nothing for a pipe).

    Columns of numbers are right-aligned, so their digits line up; a cell is cut at 60
    characters, with an ellipsis.
    """
    cells = [[text(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = min(max(widths[i], len(cell)), 60)
    numeric = [bool(rows) and all(_is_number(row[i]) for row in rows) for i in range(len(headers))]

    def cut(value: str) -> str:
        return value if len(value) <= 60 else value[:59] + "…"

    def line(values: list[str]) -> str:
        return "  ".join(cut(v).rjust(widths[i]) if numeric[i] else cut(v).ljust(widths[i])
                         for i, v in enumerate(values)).rstrip()
    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(row) for row in cells]
    return "\n".join(out)


def _is_number(value: Any) -> bool:
    """A number, or NULL (an empty cell) in a column of numbers."""
    return value is None or (isinstance(value, (int, float, Decimal)) and not isinstance(value, bool))


def csv_text(headers: list[str], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(headers)
    for row in rows:
        writer.writerow([text(c) for c in row])
    return buffer.getvalue()


def is_terminal() -> bool:
    return sys.stdout.isatty()


def echo(message: str = "", *, err: bool = False) -> None:
    click.echo(message, err=err)


_SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[int]) -> str:
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1
    return "".join(_SPARKS[min(len(_SPARKS) - 1, (v - low) * (len(_SPARKS) - 1) // span)] for v in values)


def bar_chart(labels: list[str], values: list[int], notes: list[str], width: int = 40) -> str:
    """One horizontal bar per row, scaled to the largest value."""
    top = max(values, default=0) or 1
    label_width = max((len(label) for label in labels), default=0)
    lines = []
    for label, value, note in zip(labels, values, notes, strict=True):
        bar = "█" * max(1 if value else 0, round(width * value / top))
        lines.append(f"{label.ljust(label_width)}  {bar.ljust(width)} {value}{note}")
    return "\n".join(lines)
