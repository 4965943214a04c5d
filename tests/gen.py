"""Seeded random data and condition trees for the differential tests.

Everything is drawn so that edge cases are frequent rather than lucky: timestamps sit on
a 30-minute grid and exactly on every window edge (`as_of - D` for each duration D, as_of
itself, one second either side, after as_of), follow-up events sit exactly `D` after a
first event, numbers are small integers or halves (exact as DOUBLE), and condition values
are drawn from the data itself so ties are common.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from reference import Condition, Evaluator, Model, Table, Value, World, coerce, parse_duration

BASE_AS_OF = datetime(2024, 3, 10, 12, 0, 0)
AS_OF_CHOICES = (
    BASE_AS_OF,
    BASE_AS_OF - timedelta(minutes=30),
    BASE_AS_OF - timedelta(days=1),
    BASE_AS_OF + timedelta(days=3),
)
# Different spellings of the same spans, so `1d` and `24h` windows share edges.
DURATIONS = ("90s", "1800s", "30m", "1h", "2h", "24h", "1d", "2d", "3d", "1w", "7d")
GRID = timedelta(minutes=30)

MODELS: dict[str, Model] = {
    "customers": Model(primary_key="customer_id"),
    "events": Model(entity_key="customer_id", timestamp="ts", name="event_name"),
    "orders": Model(entity_key="customer_id", timestamp="ordered_at"),
}
TYPES: dict[str, dict[str, str]] = {
    "customers": {
        "customer_id": "int",
        "country": "text",
        "lifetime_value": "float",
        "email": "text",
        "is_vip": "bool",
        "signup_at": "timestamp",
    },
    "events": {
        "customer_id": "int",
        "event_name": "text",
        "ts": "timestamp",
        "category": "text",
        "amount": "float",
    },
    "orders": {
        "customer_id": "int",
        "ordered_at": "timestamp",
        "amount": "float",
        "quantity": "int",
        "status": "text",
    },
}

EVENT_NAMES = ("view", "add_to_cart", "purchase", "Purchase")
COUNTRIES = ("US", "us", "DE", "FR", "", "Ünïted")
EMAILS = (
    "ann@x.com",
    "Ann@x.com",
    "bob_smith@y.org",
    "bob%smith@y.org",
    "bobxsmith@y.org",
    "zoë@ex.de",
    "zoe@ex.de",
    "o'neil@x.com",
    "back\\slash@x.com",
    "日本@例え.jp",
    "emoji😀@x.io",
    "",
)
CATEGORIES = ("shoes", "Shoes", "hats", "sho%es", "sho_es")
STATUSES = ("paid", "Paid", "pending", "refunded")

COMPARISONS = ("=", "!=", ">", ">=", "<", "<=")
STRING_OPS = ("contains", "starts_with", "ends_with")
# Patterns whose LIKE reading differs from the literal one on the generated strings.
WILDCARD_PATTERNS = ("%", "_", "b_s", "b%s", "_s", "%s", "o_", "o%", "sho_", "_es", "%es")
ODD_PATTERNS = ("\\", "'", "é", "😀", "@", "A", "a", "")
OPS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "int": (*COMPARISONS, "in", "not_in", "between", "is_null", "is_not_null"),
    "float": (*COMPARISONS, "in", "not_in", "between", "is_null", "is_not_null"),
    "timestamp": (*COMPARISONS, "in", "not_in", "between", "is_null", "is_not_null"),
    "bool": ("=", "!=", "in", "not_in", "is_null", "is_not_null"),
    "text": (
        *COMPARISONS,
        "in",
        "not_in",
        "between",
        "is_null",
        "is_not_null",
        *STRING_OPS,
        *STRING_OPS,  # twice: literal-vs-wildcard bugs need many draws to show
    ),
}
AGGREGATE_OPS = (*COMPARISONS, "between", "in", "not_in")
# Columns that aggregates and filters may use (keys are never filtered on).
AGGREGATE_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "orders": {
        "count": ("amount", "status", "quantity"),
        "count_distinct": ("amount", "status", "quantity"),
        "sum": ("amount", "quantity"),
        "avg": ("amount", "quantity"),
        "min": ("amount", "quantity", "ordered_at"),
        "max": ("amount", "quantity", "ordered_at"),
    },
    "events": {
        "count": ("amount", "category"),
        "count_distinct": ("amount", "category", "event_name"),
        "sum": ("amount",),
        "avg": ("amount",),
        "min": ("amount", "ts"),
        "max": ("amount", "ts"),
    },
}
FILTER_COLUMNS = {
    "events": ("category", "amount", "category", "amount", "ts"),
    "orders": ("status", "amount", "quantity", "ordered_at"),
}


def _known(function: Callable[..., bool]) -> Callable[..., bool | None]:
    """SQL's NULL propagation: NULL when any argument is NULL."""
    return lambda *args: None if any(arg is None for arg in args) else function(*args)


_gt5 = _known(lambda ltv: ltv > 5)
_eq_us = _known(lambda country: country == "US")
_twice = _known(lambda ltv, key: ltv * 2 >= key)
_like_a = _known(lambda email: email.startswith("a"))
_lt1 = _known(lambda ltv: ltv < 1)

# `sql:` leaves over the entity model, written portably, with their meaning (None: NULL).
SQL_LEAVES: dict[str, Callable[[dict[str, Value]], bool | None]] = {
    "lifetime_value > 5": lambda r: _gt5(r["lifetime_value"]),
    "country = 'US'": lambda r: _eq_us(r["country"]),
    "lifetime_value * 2 >= customer_id": lambda r: _twice(r["lifetime_value"], r["customer_id"]),
    "email LIKE 'a%'": lambda r: _like_a(r["email"]),
    "is_vip": lambda r: r["is_vip"],
    "COALESCE(is_vip, FALSE) = FALSE": lambda r: not r["is_vip"],
    # TRUE OR NULL is TRUE; FALSE OR NULL is NULL
    "country IS NULL OR lifetime_value < 1": lambda r: (
        True if r["country"] is None else _lt1(r["lifetime_value"])
    ),
}


def _maybe(rng: random.Random, value: Value, null_rate: float) -> Value:
    return None if rng.random() < null_rate else value


def _half(rng: random.Random, low: int, high: int) -> float:
    return rng.randint(low * 2, high * 2) / 2


def _time(rng: random.Random) -> datetime | None:
    """A timestamp: on the grid, on a window edge, at/after as_of, or NULL."""
    roll = rng.random()
    if roll < 0.06:
        return None
    if roll < 0.35:
        edge = BASE_AS_OF - parse_duration(rng.choice(DURATIONS))
        return edge + timedelta(seconds=rng.choice((0, 0, 0, -1, 1)))
    if roll < 0.42:
        return BASE_AS_OF + rng.choice((timedelta(0), timedelta(seconds=1), GRID, -GRID))
    if roll < 0.47:
        return BASE_AS_OF + GRID * rng.randint(1, 150)
    return BASE_AS_OF - GRID * rng.randint(0, 24 * 2 * 9)


def _customers(rng: random.Random) -> list[dict[str, Value]]:
    ids = sorted(rng.sample(range(-3, 80), rng.randint(22, 32)))
    ltv_pool = [_half(rng, -2, 12) for _ in range(8)]
    return [
        {
            "customer_id": key,
            "country": _maybe(rng, rng.choice(COUNTRIES), 0.2),
            "lifetime_value": _maybe(rng, rng.choice(ltv_pool), 0.2),
            "email": _maybe(rng, rng.choice(EMAILS), 0.15),
            "is_vip": _maybe(rng, rng.random() < 0.4, 0.25),
            "signup_at": _maybe(rng, BASE_AS_OF - GRID * rng.randint(-10, 24 * 2 * 30), 0.2),
        }
        for key in ids
    ]


def _owner(rng: random.Random, ids: list[int]) -> int | None:
    roll = rng.random()
    if roll < 0.04:
        return None
    if roll < 0.07:
        return 1000 + rng.randint(0, 5)  # no such customer
    return rng.choice(ids)


def _events(rng: random.Random, ids: list[int]) -> list[dict[str, Value]]:
    owners = rng.sample(ids, max(1, int(len(ids) * 0.75)))  # some customers have no events
    rows: list[dict[str, Value]] = []
    for _ in range(rng.randint(150, 260)):
        rows.append(
            {
                "customer_id": _owner(rng, owners),
                "event_name": _maybe(rng, rng.choice(EVENT_NAMES), 0.04),
                "ts": _time(rng),
                "category": _maybe(rng, rng.choice(CATEGORIES), 0.2),
                "amount": _maybe(rng, _half(rng, 0, 6), 0.25),
            }
        )
    # Follow-ups exactly D after an event (and one second either side, and at the same instant).
    for first in rng.sample(rows, len(rows) // 3):
        if first["ts"] is None:
            continue
        offset = parse_duration(rng.choice(DURATIONS))
        delta = rng.choice((offset, offset, offset + timedelta(seconds=1), timedelta(0)))
        rows.append(
            {
                **first,
                "event_name": rng.choice(EVENT_NAMES),
                "ts": first["ts"] + delta - timedelta(seconds=rng.choice((0, 0, 0, 1))),
                "category": _maybe(rng, rng.choice(CATEGORIES), 0.2),
            }
        )
    rng.shuffle(rows)
    return rows


def _orders(rng: random.Random, ids: list[int]) -> list[dict[str, Value]]:
    owners = rng.sample(ids, max(1, int(len(ids) * 0.7)))
    return [
        {
            "customer_id": _owner(rng, owners),
            "ordered_at": _time(rng),
            "amount": _maybe(rng, _half(rng, -1, 8), 0.2),
            "quantity": _maybe(rng, rng.randint(0, 4), 0.2),
            "status": _maybe(rng, rng.choice(STATUSES), 0.15),
        }
        for _ in range(rng.randint(60, 120))
    ]


def generate_world(seed: int) -> World:
    """Customers, events and orders for one dataset (segments are added per case)."""
    rng = random.Random(f"world-{seed}")
    customers = _customers(rng)
    ids = [row["customer_id"] for row in customers]
    rows = {"customers": customers, "events": _events(rng, ids), "orders": _orders(rng, ids)}
    return World(
        models=MODELS,
        tables={name: Table(types=TYPES[name], rows=rows[name]) for name in MODELS},
    )


@dataclass
class Case:
    """One differential case: the target segment's tree, helper segments, and as_of."""

    tree: Condition
    as_of: datetime
    helpers: dict[str, Condition] = field(default_factory=dict)

    def world(self, base: World) -> World:
        """`base` with this case's helper segments visible to `segment:` references."""
        return World(
            models=base.models,
            tables=base.tables,
            entity=base.entity,
            segments=self.helpers,
            sql=SQL_LEAVES,
        )


class TreeGenerator:
    """Random condition trees over one world, values drawn from its data."""

    def __init__(self, rng: random.Random, world: World, as_of: datetime) -> None:
        self.rng = rng
        self.world = world
        self.as_of = as_of
        self.segments: list[str] = []
        self._evaluator = Evaluator(world, as_of)

    # -- structure ----------------------------------------------------------------------

    def condition(self, depth: int) -> Condition:
        """A tree whose depth (levels of nodes, leaves included) is at most `depth`."""
        if depth > 1 and self.rng.random() < 0.5:
            kind = self.rng.choice(("all", "any", "all", "any", "not"))
            if kind == "not":
                return {"not": self.condition(depth - 1)}
            return {kind: [self.condition(depth - 1) for _ in range(self.rng.randint(1, 3))]}
        return self.leaf()

    def leaf(self) -> Condition:
        kinds = ["column", "column", "event", "event", "aggregate", "aggregate"]
        if self.segments:
            kinds.append("segment")
        if self.rng.random() < 0.3:
            kinds.append("sql")
        kind = self.rng.choice(kinds)
        if kind == "column":
            return self.column_condition("customers")
        if kind == "event":
            return self.event_condition()
        if kind == "aggregate":
            return self.aggregate_condition()
        if kind == "sql":
            return {"sql": self.rng.choice(tuple(SQL_LEAVES))}
        return {"segment": self.rng.choice(self.segments)}

    def filters(self, model: str) -> list[Condition]:
        """A `where:` list: column conditions, maybe nested in all/any/not."""
        items: list[Condition] = []
        for _ in range(self.rng.randint(1, 2)):
            roll = self.rng.random()
            if roll < 0.15:
                items.append({"not": self._filter_column(model)})
            elif roll < 0.3:
                kind = self.rng.choice(("all", "any"))
                children = [self._filter_column(model) for _ in range(self.rng.randint(1, 2))]
                if self.rng.random() < 0.3:
                    children.append({"not": self._filter_column(model)})
                items.append({kind: children})
            else:
                items.append(self._filter_column(model))
        return items

    def _filter_column(self, model: str) -> Condition:
        return self.column_condition(model, self.rng.choice(FILTER_COLUMNS[model]))

    # -- leaves -------------------------------------------------------------------------

    def column_condition(self, model: str, column: str | None = None) -> Condition:
        types = self.world.tables[model].types
        column = column or self.rng.choice(list(types))
        column_type = types[column]
        op = self.rng.choice(OPS_BY_TYPE[column_type])
        condition: dict[str, Any] = {"column": column, "op": op}
        if op not in ("is_null", "is_not_null"):
            condition["value"] = self._operand(op, model, column, column_type)
        return condition

    def event_condition(self) -> Condition:
        rng = self.rng
        condition: dict[str, Any] = {"event": rng.choice(EVENT_NAMES)}
        if rng.random() < 0.15:
            condition["model"] = "events"
        condition.update(self._window(within=0.6, older_than=0.3))
        if rng.random() < 0.35:
            condition["where"] = self.filters("events")
        if rng.random() < 0.4:
            follow: dict[str, Any] = {"event": rng.choice(EVENT_NAMES)}
            if rng.random() < 0.1:
                follow["model"] = "events"
            if rng.random() < 0.6:
                follow["within"] = rng.choice(DURATIONS)
            if rng.random() < 0.3:
                follow["where"] = self.filters("events")
            condition[rng.choice(("followed_by", "not_followed_by"))] = follow
        if rng.random() < 0.35:
            op = rng.choice(AGGREGATE_OPS)
            condition["count"] = {"op": op, "value": self._count_value(op)}
        return condition

    def aggregate_condition(self) -> Condition:
        rng = self.rng
        model = rng.choice(("orders", "orders", "events"))
        fn = rng.choice(tuple(AGGREGATE_COLUMNS[model]))
        condition: dict[str, Any] = {"aggregate": fn, "model": model}
        if fn != "count" or rng.random() < 0.5:
            condition["column"] = rng.choice(AGGREGATE_COLUMNS[model][fn])
        condition.update(self._window(within=0.5, older_than=0.2))
        if rng.random() < 0.3:
            condition["where"] = self.filters(model)
        op = rng.choice(AGGREGATE_OPS)
        condition["op"] = op
        condition["value"] = self._aggregate_operand(op, condition)
        return condition

    def _window(self, within: float, older_than: float) -> dict[str, str]:
        """`within` and/or `older_than`; both together only as a non-empty window (revseg
        rejects `older_than >= within` as a validation error)."""
        window: dict[str, str] = {}
        if self.rng.random() < within:
            window["within"] = self.rng.choice(DURATIONS)
        if self.rng.random() < older_than:
            limit = parse_duration(window.get("within", "52w"))
            shorter = [d for d in DURATIONS if parse_duration(d) < limit]
            if shorter:
                window["older_than"] = self.rng.choice(shorter)
        return window

    # -- values -------------------------------------------------------------------------

    def _count_value(self, op: str) -> Any:
        if op in ("in", "not_in"):
            return self.rng.sample(range(5), self.rng.randint(1, 3))
        if op == "between":
            return sorted(self.rng.choices(range(5), k=2))
        return self.rng.choice((0, 0, 1, 1, 2, 3, "1", "2"))

    def _operand(self, op: str, model: str, column: str, column_type: str) -> Any:
        if op in ("in", "not_in"):
            return [self._scalar(model, column, column_type) for _ in range(self.rng.randint(1, 3))]
        if op == "between":
            pair = [self._scalar(model, column, column_type) for _ in range(2)]
            if self.rng.random() < 0.85:  # now and then lo > hi, which matches nothing
                pair.sort(key=lambda v: coerce(v, column_type, self.as_of))
            return pair
        if op in ("contains", "starts_with", "ends_with"):
            return self._pattern(model, column)
        return self._scalar(model, column, column_type)

    def _pattern(self, model: str, column: str) -> str:
        values = [v for v in self._column_values(model, column) if v]
        roll = self.rng.random()
        if roll < 0.4 or not values:
            return self.rng.choice(WILDCARD_PATTERNS)
        if roll < 0.5:
            return self.rng.choice(ODD_PATTERNS)
        text = self.rng.choice(values)
        start = self.rng.randint(0, len(text) - 1)
        return str(text[start : start + self.rng.randint(1, 4)])

    def _column_values(self, model: str, column: str) -> list[Value]:
        return [row[column] for row in self.world.tables[model].rows if row[column] is not None]

    def _scalar(self, model: str, column: str, column_type: str) -> Any:
        """A value of the column's type, as YAML would carry it (maybe a rendered string)."""
        rng = self.rng
        if column_type == "timestamp" and rng.random() < 0.5:
            return {"ago": rng.choice(DURATIONS)}
        values = self._column_values(model, column)
        value = rng.choice(values) if values and rng.random() < 0.85 else self._fresh(column_type)
        return self._as_yaml(value, column_type)

    def _fresh(self, column_type: str) -> Value:
        """A plausible value that may not occur in the data."""
        rng = self.rng
        fresh: dict[str, Callable[[], Value]] = {
            "int": lambda: rng.randint(-3, 80),
            "float": lambda: _half(rng, -2, 12),
            "text": lambda: rng.choice(("", "a", "zz", "US ", "Ω", "b")),
            "bool": lambda: rng.random() < 0.5,
            "timestamp": lambda: BASE_AS_OF - GRID * rng.randint(-4, 400),
        }
        return fresh[column_type]()

    def _as_yaml(self, value: Value, column_type: str) -> Any:
        rng = self.rng
        if column_type == "bool" and rng.random() < 0.2:
            return str(value).lower()  # a rendered template: "{{ var('flag') }}" -> "true"
        if column_type == "int" and rng.random() < 0.25:
            return str(value)  # a rendered template: "{{ var('n') }}" -> "12"
        if column_type == "float":
            number = int(value) if float(value).is_integer() and rng.random() < 0.5 else value
            return str(number) if rng.random() < 0.25 else number
        if column_type == "timestamp":
            assert isinstance(value, datetime)
            return value.isoformat(sep=rng.choice((" ", "T")))
        return value

    def _aggregate_operand(self, op: str, condition: dict[str, Any]) -> Any:
        """Values near the aggregate's actual values for a few entities, so ties happen."""
        keys = [row["customer_id"] for row in self.world.tables["customers"].rows]
        seen: list[tuple[Value, str]] = []
        for key in self.rng.sample(keys, 4):
            result, result_type = self._evaluator.aggregate_value(condition, key)
            if result is not None:
                seen.append((result, result_type))
        result_type = seen[0][1] if seen else self._aggregate_type(condition)

        def one() -> Any:
            if seen and self.rng.random() < 0.75:
                return self._aggregate_yaml(self.rng.choice(seen)[0], result_type)
            if result_type == "timestamp":
                return self._scalar(condition["model"], condition["column"], "timestamp")
            return self.rng.choice((0, 1, 2, 3, 0.5, 2.5, "2", -1))

        if op in ("in", "not_in"):
            return [one() for _ in range(self.rng.randint(1, 3))]
        if op == "between":
            pair = [one(), one()]
            if self.rng.random() < 0.85:
                sort_type = "timestamp" if result_type == "timestamp" else "float"
                pair.sort(key=lambda v: coerce(v, sort_type, self.as_of))
            return pair
        return one()

    def _aggregate_type(self, condition: dict[str, Any]) -> str:
        if condition["aggregate"] in ("min", "max"):
            return self.world.tables[condition["model"]].types[condition["column"]]
        return "float"

    def _aggregate_yaml(self, value: Value, result_type: str) -> Any:
        if result_type == "timestamp":
            assert isinstance(value, datetime)
            return value.isoformat(sep=" ")
        number = float(value)
        if number.is_integer():
            return str(int(number)) if self.rng.random() < 0.2 else int(number)
        if (number * 2).is_integer():
            return number
        # An exact non-half average (e.g. 7/3) has no exact literal: compare near it.
        return self.rng.choice((round(number, 1), round(number)))


def generate_case(world: World, seed: int, depth: int = 4) -> Case:
    """A random case over `world`: 0-2 helper segments and a target tree of `depth` <= 4."""
    rng = random.Random(f"case-{seed}")
    as_of = rng.choice(AS_OF_CHOICES)
    generator = TreeGenerator(rng, world, as_of)
    helpers: dict[str, Condition] = {}
    for index in range(rng.choice((0, 0, 1, 2))):
        name = f"helper_{index}"
        helpers[name] = generator.condition(2)  # may reference earlier helpers only
        generator.segments.append(name)
    return Case(tree=generator.condition(depth), as_of=as_of, helpers=helpers)
