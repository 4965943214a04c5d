"""The condition tree of a segment, as parsed and located (SPEC 2.1).

Values are kept as written (after Jinja); they are converted to the column's type by the
compiler, which knows the warehouse's column types, and a value that does not convert is
a located validation error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlglot import exp

from revseg.errors import Position

COMPARISONS = ("=", "!=", ">", ">=", "<", "<=")
LIST_OPS = ("in", "not_in")
STRING_OPS = ("contains", "starts_with", "ends_with")
NULL_OPS = ("is_null", "is_not_null")
OPERATORS = (*COMPARISONS, *LIST_OPS, "between", *NULL_OPS, *STRING_OPS)
AGGREGATE_OPS = (*COMPARISONS, "between", *LIST_OPS)
AGGREGATE_FNS = ("count", "count_distinct", "sum", "avg", "min", "max")


@dataclass(frozen=True)
class Ago:
    """``{ago: D}``: the timestamp as_of minus D."""

    delta: timedelta


@dataclass(frozen=True)
class Value:
    """A literal as written: a scalar, a list (in/not_in/between) or Ago."""

    raw: Any
    position: Position


@dataclass(frozen=True)
class Comparison:
    """``op`` and ``value`` of a column condition, an aggregate or an event count."""

    op: str
    value: Value | None  # None for is_null / is_not_null
    position: Position


@dataclass(frozen=True)
class All:
    items: tuple[Condition, ...]
    position: Position


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Condition, ...]
    position: Position


@dataclass(frozen=True)
class Not:
    item: Condition
    position: Position


@dataclass(frozen=True)
class ColumnCondition:
    column: str
    comparison: Comparison
    position: Position
    column_position: Position


@dataclass(frozen=True)
class Follow:
    """``followed_by`` / ``not_followed_by`` on an event condition."""

    negated: bool
    event: str
    model: str
    within: timedelta | None
    where: tuple[Condition, ...]
    position: Position


@dataclass(frozen=True)
class EventCondition:
    event: str
    model: str
    within: timedelta | None
    older_than: timedelta | None
    where: tuple[Condition, ...]
    count: Comparison | None
    follow: Follow | None
    position: Position


@dataclass(frozen=True)
class AggregateCondition:
    fn: str
    model: str
    column: str | None
    within: timedelta | None
    older_than: timedelta | None
    where: tuple[Condition, ...]
    comparison: Comparison
    position: Position
    column_position: Position


@dataclass(frozen=True)
class SegmentRef:
    segment: str
    position: Position


@dataclass(frozen=True)
class SqlPredicate:
    """A ``sql:`` leaf, parsed once at load in the project's dialect."""

    tree: exp.Expr
    text: str
    position: Position


Condition = (
    All | AnyOf | Not | ColumnCondition | EventCondition | AggregateCondition | SegmentRef | SqlPredicate
)


def walk(condition: Condition) -> list[Condition]:
    """Every node of a tree, depth first (event/aggregate filters included)."""
    out: list[Condition] = [condition]
    if isinstance(condition, (All, AnyOf)):
        for item in condition.items:
            out.extend(walk(item))
    elif isinstance(condition, Not):
        out.extend(walk(condition.item))
    elif isinstance(condition, (EventCondition, AggregateCondition)):
        for item in condition.where:
            out.extend(walk(item))
        if isinstance(condition, EventCondition) and condition.follow:
            for item in condition.follow.where:
                out.extend(walk(item))
    return out
