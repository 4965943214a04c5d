"""A pure-Python reference evaluator for revseg's condition grammar (SPEC 2.1 and 2.2).

It is meant to be obviously right rather than fast: every entity is evaluated row by row
against in-memory tables, and every leaf returns a plain ``bool`` (SQL's unknown is
collapsed to ``False`` at the leaf, so ``not`` is the boolean complement).

>>> from datetime import datetime
>>> world = World(
...     models={"customers": Model(primary_key="customer_id")},
...     tables={"customers": Table(
...         types={"customer_id": "int", "country": "text"},
...         rows=[{"customer_id": 1, "country": "US"}, {"customer_id": 2, "country": None}],
...     )},
... )
>>> sorted(evaluate({"not": {"column": "country", "op": "=", "value": "US"}},
...                 world, datetime(2024, 1, 1)))
['2']
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

Condition = Any  # the plain dict / list structure of a segment's `where:` after rendering
Value = Any  # a Python value of one of the column types, or None for NULL

COLUMN_TYPES = ("int", "float", "text", "bool", "timestamp")
NUMERIC_TYPES = ("int", "float")
AGGREGATE_OPS = ("=", "!=", ">", ">=", "<", "<=", "between", "in", "not_in")
_DURATION = re.compile(r"^([0-9]+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class InvalidCondition(Exception):
    """The condition is outside the grammar (a validation error in revseg)."""


@dataclass(frozen=True)
class Model:
    """A model of revseg.yml: the entity model has `primary_key`, the others `entity_key`."""

    primary_key: str | None = None
    entity_key: str | None = None
    timestamp: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class Table:
    """A model's rows and its column types (one of COLUMN_TYPES)."""

    types: Mapping[str, str]
    rows: list[dict[str, Value]]


@dataclass(frozen=True)
class World:
    """Everything a condition can see: models, their tables, and the project's segments."""

    models: Mapping[str, Model]
    tables: Mapping[str, Table]
    entity: str = "customers"
    segments: Mapping[str, Condition] = field(default_factory=dict)
    # `sql:` leaves the reference knows: SQL text -> its meaning on an entity row (None: NULL)
    sql: Mapping[str, Callable[[dict[str, Value]], bool | None]] = field(default_factory=dict)


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `24h`, `7d`, `2w` -> timedelta."""
    match = _DURATION.match(str(text))
    if match is None:
        raise InvalidCondition(f"bad duration {text!r}")
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def coerce(value: Value, column_type: str, as_of: datetime) -> Value:
    """A YAML value (maybe a rendered string such as "500") as a value of `column_type`.

    Numbers become exact Fractions so float columns holding halves compare exactly.
    """
    if value is None:
        return None
    if isinstance(value, dict):
        if set(value) != {"ago"}:
            raise InvalidCondition(f"bad value {value!r}")
        return as_of - parse_duration(value["ago"])
    if column_type == "int":
        if isinstance(value, bool):
            raise InvalidCondition(f"{value!r} is not an integer")
        return int(value) if isinstance(value, int) else int(str(value).strip())
    if column_type == "float":
        if isinstance(value, bool):
            raise InvalidCondition(f"{value!r} is not a number")
        if isinstance(value, int | Fraction):
            return Fraction(value)
        # A YAML literal 1.4 means the decimal 7/5, not the double nearest to it.
        return Fraction(repr(value) if isinstance(value, float) else str(value).strip())
    if column_type == "text":
        return str(value)
    if column_type == "bool":
        if isinstance(value, bool):
            return value
        lowered = str(value).strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        raise InvalidCondition(f"{value!r} is not a boolean")
    if column_type == "timestamp":
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        # rows and as_of are naive UTC (SPEC 2.2 "Time"); a value with an offset is that instant
        return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment
    raise InvalidCondition(f"unknown column type {column_type!r}")


def compare(op: str, left: Value, value: Value) -> bool:
    """One leaf's truth: `left` (a coerced column or aggregate value) `op` `value`.

    A NULL `left` makes every operator false except `is_null`.
    """
    if op == "is_null":
        return left is None
    if op == "is_not_null":
        return left is not None
    if left is None:
        return False
    simple: dict[str, Callable[[Value, Value], bool]] = {
        "=": lambda a, b: bool(a == b),
        "!=": lambda a, b: bool(a != b),
        ">": lambda a, b: bool(a > b),
        ">=": lambda a, b: bool(a >= b),
        "<": lambda a, b: bool(a < b),
        "<=": lambda a, b: bool(a <= b),
        "contains": lambda a, b: b in a,
        "starts_with": lambda a, b: bool(a.startswith(b)),
        "ends_with": lambda a, b: bool(a.endswith(b)),
    }
    if op in simple:
        return simple[op](left, value)
    if op == "in":
        return left in value
    if op == "not_in":
        return left not in value
    if op == "between":
        low, high = value
        return bool(low <= left <= high)
    raise InvalidCondition(f"unknown operator {op!r}")


def coerce_operand(op: str, value: Value, column_type: str, as_of: datetime) -> Value:
    """The right-hand side of `op`, converted to `column_type` (lists element-wise)."""
    if op in ("is_null", "is_not_null"):
        return None
    if op in ("in", "not_in", "between"):
        if not isinstance(value, list) or any(item is None for item in value):
            raise InvalidCondition(f"{op} takes a list without nulls, got {value!r}")
        if op == "between" and len(value) != 2:
            raise InvalidCondition("between takes [lo, hi]")
        return [coerce(item, column_type, as_of) for item in value]
    if value is None:
        raise InvalidCondition(f"{op} needs a value")
    if op in ("contains", "starts_with", "ends_with") and column_type != "text":
        raise InvalidCondition(f"{op} applies to text columns only")
    return coerce(value, column_type, as_of)


def evaluate(condition: Condition, world: World, as_of: datetime) -> set[str]:
    """The ids (primary keys as text) of the entities for which `condition` holds."""
    return Evaluator(world, as_of).members(condition)


class Evaluator:
    """Evaluates conditions for one world at one as_of."""

    def __init__(self, world: World, as_of: datetime) -> None:
        self.world = world
        self.as_of = as_of
        entity = world.models[world.entity]
        if entity.primary_key is None:
            raise InvalidCondition(f"entity model {world.entity!r} has no primary_key")
        self.primary_key = entity.primary_key
        self._rows_by_key: dict[str, dict[Value, list[dict[str, Value]]]] = {}
        self._segments: dict[str, set[Value]] = {}
        self._evaluating: list[str] = []

    # -- public -----------------------------------------------------------------------

    def members(self, condition: Condition) -> set[str]:
        """Ids of the entity rows that satisfy `condition`."""
        return {str(key) for key in self.member_keys(condition)}

    def member_keys(self, condition: Condition) -> set[Value]:
        """Primary keys (raw values) of the entity rows that satisfy `condition`."""
        rows = self.world.tables[self.world.entity].rows
        return {row[self.primary_key] for row in rows if self.holds(condition, row)}

    def holds(self, condition: Condition, entity_row: dict[str, Value]) -> bool:
        """Whether `condition` holds for one entity row."""
        if not isinstance(condition, dict):
            raise InvalidCondition(f"a condition is a mapping, got {condition!r}")
        if "all" in condition:
            return all(self.holds(child, entity_row) for child in condition["all"])
        if "any" in condition:
            return any(self.holds(child, entity_row) for child in condition["any"])
        if "not" in condition:
            return not self.holds(condition["not"], entity_row)
        # `aggregate:` and `event:` leaves may carry `column:` too, so they go first.
        if "aggregate" in condition:
            return self._aggregate_holds(condition, entity_row[self.primary_key])
        if "event" in condition:
            return self._event_holds(condition, entity_row[self.primary_key])
        if "segment" in condition:
            return entity_row[self.primary_key] in self._segment_keys(condition["segment"])
        if "column" in condition:
            return self._column_holds(condition, self.world.entity, entity_row)
        if "sql" in condition:
            if condition["sql"] not in self.world.sql:
                raise InvalidCondition(f"the reference cannot evaluate sql: {condition['sql']!r}")
            return self.world.sql[condition["sql"]](entity_row) is True
        raise InvalidCondition(f"unsupported condition {condition!r}")

    # -- leaves -----------------------------------------------------------------------

    def _column_holds(self, condition: Condition, model: str, row: dict[str, Value]) -> bool:
        column_type = self.world.tables[model].types[condition["column"]]
        op = condition["op"]
        operand = coerce_operand(op, condition.get("value"), column_type, self.as_of)
        return compare(op, coerce(row[condition["column"]], column_type, self.as_of), operand)

    def _filter_holds(self, condition: Condition, model: str, row: dict[str, Value]) -> bool:
        """A property filter (`where:` item) on a row of `model`: column leaves and/or/not."""
        if "all" in condition:
            return all(self._filter_holds(child, model, row) for child in condition["all"])
        if "any" in condition:
            return any(self._filter_holds(child, model, row) for child in condition["any"])
        if "not" in condition:
            return not self._filter_holds(condition["not"], model, row)
        if "column" in condition:
            return self._column_holds(condition, model, row)
        raise InvalidCondition(f"a where: item must be a column condition, got {condition!r}")

    def _where_holds(self, where: Condition, model: str, row: dict[str, Value]) -> bool:
        items = where if isinstance(where, list) else [where]
        return all(self._filter_holds(item, model, row) for item in items)

    def _rows(self, model: str, key: Value) -> list[dict[str, Value]]:
        """Rows of `model` whose entity_key is `key` (NULL keys never match)."""
        if model not in self._rows_by_key:
            entity_key = self.world.models[model].entity_key
            if entity_key is None:
                raise InvalidCondition(f"model {model!r} has no entity_key")
            index: dict[Value, list[dict[str, Value]]] = defaultdict(list)
            for row in self.world.tables[model].rows:
                if row[entity_key] is not None:
                    index[row[entity_key]].append(row)
            self._rows_by_key[model] = index
        return self._rows_by_key[model].get(key, [])

    def _in_window(self, ts: datetime | None, condition: Condition) -> bool:
        """ts is known, not after as_of, and inside `within` / `older_than` when given."""
        if ts is None or ts > self.as_of:
            return False
        if "within" in condition and not ts > self.as_of - parse_duration(condition["within"]):
            return False
        return not (
            "older_than" in condition and ts > self.as_of - parse_duration(condition["older_than"])
        )

    def _event_model(self, condition: Condition) -> str:
        if "model" in condition:
            return str(condition["model"])
        if "events" in self.world.models:
            return "events"
        named = [name for name, model in self.world.models.items() if model.name is not None]
        if len(named) != 1:
            raise InvalidCondition("event: needs model:")
        return named[0]

    def _event_holds(self, condition: Condition, key: Value) -> bool:
        model_name = self._event_model(condition)
        model = self.world.models[model_name]
        if model.timestamp is None or model.name is None:
            raise InvalidCondition(f"model {model_name!r} is not an event model")
        rows = self._rows(model_name, key)
        firsts = [
            row
            for row in rows
            if row[model.name] == condition["event"]
            and self._in_window(row[model.timestamp], condition)
            and self._where_holds(condition.get("where", []), model_name, row)
        ]
        for keyword, wanted in (("followed_by", True), ("not_followed_by", False)):
            if keyword in condition:
                follow = condition[keyword]
                firsts = [
                    row
                    for row in firsts
                    if self._is_followed(row[model.timestamp], follow, model_name, key) == wanted
                ]
        count = condition.get("count", {"op": ">=", "value": 1})
        operand = coerce_operand(count["op"], count.get("value"), "int", self.as_of)
        return compare(count["op"], len(firsts), operand)

    def _is_followed(self, t1: datetime, follow: Condition, first_model: str, key: Value) -> bool:
        """Some N2 event (matching its where) has t1 < t2 <= as_of (and t2 <= t1 + within).

        N2 is looked up in the follow's own `model:` when given, else the first event's model.
        """
        model_name = str(follow.get("model", first_model))
        model = self.world.models[model_name]
        if model.timestamp is None or model.name is None:
            raise InvalidCondition(f"model {model_name!r} is not an event model")
        limit = self.as_of
        if "within" in follow:
            limit = min(limit, t1 + parse_duration(follow["within"]))
        return any(
            row[model.name] == follow["event"]
            and row[model.timestamp] is not None
            and t1 < row[model.timestamp] <= limit
            and self._where_holds(follow.get("where", []), model_name, row)
            for row in self._rows(model_name, key)
        )

    def _aggregate_holds(self, condition: Condition, key: Value) -> bool:
        result, result_type = self.aggregate_value(condition, key)
        op = condition["op"]
        if op not in AGGREGATE_OPS:
            raise InvalidCondition(f"aggregates take comparison operators, not {op!r}")
        if result_type in NUMERIC_TYPES:
            # aggregate results compare numerically, whatever the column's own type
            result_type = "float"
            result = None if result is None else Fraction(result)
        operand = coerce_operand(op, condition.get("value"), result_type, self.as_of)
        return compare(op, result, operand)

    def aggregate_value(self, condition: Condition, key: Value) -> tuple[Value, str]:
        """The aggregate's value for entity `key` (None for NULL) and the value's type."""
        model_name = str(condition["model"])
        model = self.world.models[model_name]
        types = self.world.tables[model_name].types
        rows = [
            row
            for row in self._rows(model_name, key)
            if (model.timestamp is None or self._in_window(row[model.timestamp], condition))
            and self._where_holds(condition.get("where", []), model_name, row)
        ]
        fn = condition["aggregate"]
        column = condition.get("column")
        if fn == "count" and column is None:
            return len(rows), "int"
        if column is None:
            raise InvalidCondition(f"{fn} needs column:")
        column_type = types[column]
        values = [
            coerce(row[column], column_type, self.as_of) for row in rows if row[column] is not None
        ]
        if fn == "count":
            return len(values), "int"
        if fn == "count_distinct":
            return len(set(values)), "int"
        if fn in ("min", "max"):
            if not values:
                return None, column_type
            return (min(values) if fn == "min" else max(values)), column_type
        if column_type not in NUMERIC_TYPES:
            raise InvalidCondition(f"{fn} needs a numeric column, {column!r} is {column_type}")
        if fn == "sum":
            return sum(values, Fraction(0)), "float"
        if fn == "avg":
            return (sum(values, Fraction(0)) / len(values) if values else None), "float"
        raise InvalidCondition(f"unknown aggregate {fn!r}")

    def _segment_keys(self, name: str) -> set[Value]:
        if name not in self._segments:
            if name in self._evaluating:
                cycle = " -> ".join([*self._evaluating[self._evaluating.index(name) :], name])
                raise InvalidCondition(f"segment cycle: {cycle}")
            if name not in self.world.segments:
                raise InvalidCondition(f"unknown segment {name!r}")
            self._evaluating.append(name)
            try:
                self._segments[name] = self.member_keys(self.world.segments[name])
            finally:
                self._evaluating.pop()
        return self._segments[name]
