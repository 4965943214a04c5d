"""Hand-computed checks of the reference evaluator (tests/reference.py) and the generators.

The world below is small enough to compute every answer by hand; the comments give the
reasoning against SPEC 2.2.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import gen
import pytest
from reference import InvalidCondition, Model, Table, World, evaluate, parse_duration

AS_OF = datetime(2024, 3, 10, 12, 0, 0)
H = timedelta(hours=1)
D = timedelta(days=1)


def _events() -> list[dict[str, Any]]:
    rows = [
        (1, "view", AS_OF - 24 * H, None, None),  # exactly on the `within: 24h` edge
        (1, "view", AS_OF, None, None),  # exactly at as_of: inside
        (1, "purchase", AS_OF - 23 * H, "hats", 1.0),
        (2, "view", AS_OF + timedelta(seconds=1), None, None),  # after as_of: ignored
        (2, "view", None, None, None),  # NULL ts: ignored
        (3, "add_to_cart", AS_OF - 2 * H, "shoes", 5.0),
        (3, "purchase", AS_OF - 1 * H, None, None),  # exactly t1 + 1h
        (4, "add_to_cart", AS_OF - 2 * H, None, None),
        (4, "purchase", AS_OF + 1 * H, None, None),  # after as_of: never a follow-up
        (4, "add_to_cart", AS_OF - timedelta(minutes=30), None, 2.5),
        (4, "purchase", AS_OF - timedelta(minutes=30), None, None),  # same instant
        (None, "view", AS_OF - H, None, None),  # no entity
    ]
    keys = ("customer_id", "event_name", "ts", "category", "amount")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def _orders() -> list[dict[str, Any]]:
    rows = [
        (1, AS_OF - D, 5.0),
        (1, AS_OF - 3 * D, None),
        (1, None, 2.5),  # NULL timestamp: ignored by aggregates
        (3, AS_OF + H, 1.0),  # after as_of: ignored
        (4, AS_OF - H, 1.0),
        (4, AS_OF - H, 2.0),
        (4, AS_OF - H, 2.0),
    ]
    keys = ("customer_id", "ordered_at", "amount")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def _customers() -> list[dict[str, Any]]:
    rows = [
        (1, "US", 10.0, "a_b@x.com", True, AS_OF - 2 * D),
        (2, None, None, None, None, None),
        (3, "us", 2.5, "a%b@x.com", False, AS_OF - D),
        (4, "DE", 10.0, "Zoë@x.com", False, AS_OF),
    ]
    keys = ("customer_id", "country", "lifetime_value", "email", "is_vip", "signup_at")
    return [dict(zip(keys, row, strict=True)) for row in rows]


WORLD = World(
    models={
        "customers": Model(primary_key="customer_id"),
        "events": Model(entity_key="customer_id", timestamp="ts", name="event_name"),
        "orders": Model(entity_key="customer_id", timestamp="ordered_at"),
    },
    tables={
        "customers": Table(
            types={
                "customer_id": "int",
                "country": "text",
                "lifetime_value": "float",
                "email": "text",
                "is_vip": "bool",
                "signup_at": "timestamp",
            },
            rows=_customers(),
        ),
        "events": Table(
            types={
                "customer_id": "int",
                "event_name": "text",
                "ts": "timestamp",
                "category": "text",
                "amount": "float",
            },
            rows=_events(),
        ),
        "orders": Table(
            types={"customer_id": "int", "ordered_at": "timestamp", "amount": "float"},
            rows=_orders(),
        ),
    },
    segments={
        "americans": {"column": "country", "op": "=", "value": "US"},
        "loop_a": {"segment": "loop_b"},
        "loop_b": {"not": {"segment": "loop_a"}},
    },
)


def members(condition: dict[str, Any]) -> set[str]:
    return evaluate(condition, WORLD, AS_OF)


def col(column: str, op: str, value: Any = None) -> dict[str, Any]:
    condition = {"column": column, "op": op}
    if op not in ("is_null", "is_not_null"):
        condition["value"] = value
    return condition


# -- boolean structure and NULLs -----------------------------------------------------------


def test_null_leaf_is_false_and_not_is_its_complement() -> None:
    assert members(col("country", "=", "US")) == {"1"}
    assert members({"not": col("country", "=", "US")}) == {"2", "3", "4"}


def test_not_equal_and_not_in_on_null_are_false() -> None:
    assert members(col("country", "!=", "US")) == {"3", "4"}
    assert members({"not": col("country", "!=", "US")}) == {"1", "2"}
    assert members(col("country", "not_in", ["US"])) == {"3", "4"}
    assert members(col("country", "in", ["us", "DE"])) == {"3", "4"}


def test_all_any_nesting() -> None:
    vip_or_us = {"any": [col("is_vip", "=", True), col("country", "=", "us")]}
    assert members(vip_or_us) == {"1", "3"}
    assert members({"all": [vip_or_us, col("lifetime_value", ">", 5)]}) == {"1"}
    assert members({"not": {"all": [col("is_vip", "=", False), col("country", "=", "DE")]}}) == {
        "1",
        "2",
        "3",
    }


# -- column operators ---------------------------------------------------------------------


def test_strings_compare_by_code_point_case_sensitively() -> None:
    # 'u' (U+0075) > 'U' (U+0055) > 'D'
    assert members(col("country", ">", "US")) == {"3"}
    assert members(col("country", "between", ["E", "V"])) == {"1"}
    assert members(col("email", "starts_with", "z")) == set()
    assert members(col("email", "starts_with", "Z")) == {"4"}
    assert members(col("email", "ends_with", "ë@x.com")) == {"4"}


def test_contains_is_literal() -> None:
    assert members(col("email", "contains", "_")) == {"1"}
    assert members(col("email", "contains", "%")) == {"3"}
    assert members(col("email", "contains", "a_b")) == {"1"}


def test_rendered_string_values_compare_as_the_column_type() -> None:
    assert members(col("lifetime_value", ">=", "10")) == {"1", "4"}
    assert members(col("lifetime_value", "between", ["2.5", 10])) == {"1", "3", "4"}
    assert members(col("lifetime_value", "<", "9.5")) == {"3"}  # not a string comparison
    assert members(col("customer_id", "in", ["1", 3])) == {"1", "3"}


def test_null_checks() -> None:
    assert members(col("lifetime_value", "is_null")) == {"2"}
    assert members(col("is_vip", "is_not_null")) == {"1", "3", "4"}
    assert members(col("is_vip", "=", False)) == {"3", "4"}
    assert members({"not": col("is_vip", "=", False)}) == {"1", "2"}


def test_ago_values() -> None:
    # customer 3 signed up exactly one day before as_of; customer 4 at as_of
    assert members(col("signup_at", ">=", {"ago": "1d"})) == {"3", "4"}
    assert members(col("signup_at", ">", {"ago": "24h"})) == {"4"}
    assert members(col("signup_at", "<", {"ago": "1d"})) == {"1"}
    assert members(col("signup_at", "between", [{"ago": "2d"}, {"ago": "1440m"}])) == {"1", "3"}
    assert members(col("signup_at", "=", "2024-03-09T12:00:00")) == {"3"}
    # a value with an offset or Z is that instant, compared with naive-UTC rows
    assert members(col("signup_at", "=", "2024-03-09T17:30:00+05:30")) == {"3"}
    assert members(col("signup_at", "<", "2024-03-09T12:00:00Z")) == {"1"}


# -- events -------------------------------------------------------------------------------


def test_event_ignores_future_null_and_orphan_rows() -> None:
    assert members({"event": "view"}) == {"1"}
    assert members({"event": "view", "model": "events"}) == {"1"}


def test_within_lower_edge_is_exclusive_and_as_of_inclusive() -> None:
    window = {"event": "view", "within": "24h", "older_than": "30m"}
    assert members(window) == set()  # as_of - 24h is outside, as_of is too recent
    assert members({"event": "view", "within": "24h", "count": {"op": "=", "value": 1}}) == {"1"}
    assert members({"event": "view", "within": "1441m", "count": {"op": "=", "value": 2}}) == {"1"}


def test_older_than_upper_edge_is_inclusive() -> None:
    assert members({"event": "view", "within": "2d", "older_than": "1d"}) == {"1"}
    assert members({"event": "view", "within": "2d", "older_than": "86401s"}) == set()


def test_followed_by_within_edges() -> None:
    follow = {"event": "purchase", "within": "1h"}
    followed = {"event": "add_to_cart", "followed_by": follow}
    # 3: t2 = t1 + 1h exactly (inclusive). 4: +1h purchase is after as_of, the other is
    # at the same instant as its add_to_cart (not strictly later), the -30m one is 1.5h on.
    assert members(followed) == {"3"}
    follow["within"] = "30m"
    assert members(followed) == set()


def test_followed_by_without_within_runs_to_as_of() -> None:
    followed = {"event": "add_to_cart", "followed_by": {"event": "purchase"}}
    assert members(followed) == {"3", "4"}


def test_followed_by_where_filters_the_second_event() -> None:
    follow = {"event": "purchase", "where": [col("category", "is_not_null")]}
    assert members({"event": "add_to_cart", "followed_by": follow}) == set()
    follow["where"] = [{"not": col("category", "=", "hats")}]  # NULL category: not(false)
    assert members({"event": "add_to_cart", "followed_by": follow}) == {"3", "4"}


def test_not_followed_by() -> None:
    abandoned = {"event": "add_to_cart", "not_followed_by": {"event": "purchase", "within": "1h"}}
    assert members(abandoned) == {"4"}
    assert members({"not": abandoned}) == {"1", "2", "3"}


def test_count_counts_first_events_after_the_sequence_filter() -> None:
    followed = {"event": "add_to_cart", "followed_by": {"event": "purchase"}}
    assert members({**followed, "count": {"op": "=", "value": 1}}) == {"3", "4"}
    assert members({**followed, "count": {"op": ">=", "value": "2"}}) == set()
    assert members({"event": "add_to_cart", "count": {"op": ">=", "value": 2}}) == {"4"}
    assert members({"event": "add_to_cart", "count": {"op": "=", "value": 0}}) == {"1", "2"}
    assert members({"event": "add_to_cart", "count": {"op": "between", "value": [1, 1]}}) == {"3"}


def test_event_where_nests_and_collapses_nulls() -> None:
    not_shoes = {"event": "add_to_cart", "where": [{"not": col("category", "=", "shoes")}]}
    assert members(not_shoes) == {"4"}
    either = {"any": [col("amount", ">", 4), col("category", "=", "nope")]}
    assert members({"event": "add_to_cart", "where": [either]}) == {"3"}
    both = [col("amount", ">", 1), {"all": [col("amount", "<", 3)]}]
    assert members({"event": "add_to_cart", "where": both}) == {"4"}


# -- aggregates ---------------------------------------------------------------------------


def agg(fn: str, op: str, value: Any, **extra: Any) -> dict[str, Any]:
    return {"aggregate": fn, "model": "orders", "op": op, "value": value, **extra}


def test_count_ignores_null_and_future_timestamps() -> None:
    assert members(agg("count", "=", 2)) == {"1"}  # the NULL-ts order is not counted
    assert members(agg("count", "=", 0)) == {"2", "3"}  # 3's only order is after as_of
    assert members(agg("count", "=", 1, column="amount")) == {"1"}  # non-NULL values


def test_empty_sum_is_zero_and_empty_avg_min_max_are_null() -> None:
    assert members(agg("sum", "=", 0, column="amount")) == {"2", "3"}
    assert members(agg("avg", ">=", -100, column="amount")) == {"1", "4"}
    assert members({"not": agg("avg", ">=", -100, column="amount")}) == {"2", "3"}
    assert members(agg("max", "!=", 100, column="amount")) == {"1", "4"}
    assert members(agg("min", "<", 100, column="amount", within="1h")) == set()


def test_sum_avg_min_max_count_distinct() -> None:
    assert members(agg("sum", "=", "5", column="amount")) == {"1", "4"}
    assert members(agg("avg", ">", 1.6, column="amount")) == {"1", "4"}  # 4: 5/3
    assert members(agg("avg", "<", 1.67, column="amount")) == {"4"}
    # a decimal literal is exact: avg(1.0, 2.0, 2.0, 0.2) = 1.3 (a double would miss it)
    exact = World(
        models=WORLD.models,
        tables={
            **WORLD.tables,
            "orders": Table(
                types=WORLD.tables["orders"].types,
                rows=[*_orders(), {"customer_id": 4, "ordered_at": AS_OF, "amount": 0.2}],
            ),
        },
    )
    assert evaluate(agg("avg", "=", 1.3, column="amount"), exact, AS_OF) == {"4"}
    assert members(agg("min", "=", 1, column="amount")) == {"4"}
    assert members(agg("count_distinct", "=", 2, column="amount")) == {"4"}
    assert members(agg("count_distinct", "in", [0, 1], column="amount")) == {"1", "2", "3"}
    last = agg("max", ">=", {"ago": "1d"}, column="ordered_at")
    assert members(last) == {"1", "4"}


def test_aggregate_windows() -> None:
    assert members(agg("count", "=", 0, within="1d")) == {"1", "2", "3"}  # edge excluded
    assert members(agg("count", "=", 2, older_than="1d")) == {"1"}  # edge included
    assert members(agg("count", "=", 3, where=[col("amount", "<", 3)])) == {"4"}
    views = {"aggregate": "count", "model": "events", "within": "1d", "op": "=", "value": 2}
    # 1: as_of - 24h excluded, as_of and as_of - 23h in; 3: two events; 4: three (+1h ignored)
    assert members(views) == {"1", "3"}
    assert members({**views, "value": 3}) == {"4"}


def test_sql_leaves_follow_sql_null_logic() -> None:
    world = World(models=WORLD.models, tables=WORLD.tables, sql=gen.SQL_LEAVES)

    def sql(text: str) -> set[str]:
        return evaluate({"sql": text}, world, AS_OF)

    assert sql("country IS NULL OR lifetime_value < 1") == {"2"}
    assert evaluate({"not": {"sql": "is_vip"}}, world, AS_OF) == {"2", "3", "4"}
    assert sql("email LIKE 'a%'") == {"1", "3"}
    assert sql("lifetime_value * 2 >= customer_id") == {"1", "3", "4"}
    with pytest.raises(InvalidCondition):
        sql("country <> 'US'")


# -- segments and errors ------------------------------------------------------------------


def test_segment_references() -> None:
    assert members({"segment": "americans"}) == {"1"}
    assert members({"not": {"segment": "americans"}}) == {"2", "3", "4"}


@pytest.mark.parametrize(
    "condition",
    [
        {"segment": "loop_a"},
        {"segment": "missing"},
        col("country", "in", ["US", None]),
        col("country", "like", "US"),
        col("lifetime_value", "contains", "1"),
        agg("sum", "contains", 1, column="amount"),
        {"event": "view", "within": "1y"},
    ],
)
def test_invalid_conditions_raise(condition: dict[str, Any]) -> None:
    with pytest.raises(InvalidCondition):
        members(condition)


def test_parse_duration() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("2w") == timedelta(days=14)
    with pytest.raises(InvalidCondition):
        parse_duration("1.5h")


# -- generators ---------------------------------------------------------------------------


def _walk(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found.extend(_walk(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_walk(value))
    return found


def test_generators_are_deterministic() -> None:
    world = gen.generate_world(3)
    assert world.tables == gen.generate_world(3).tables
    first, second = gen.generate_case(world, 7), gen.generate_case(world, 7)
    assert json.dumps(first.tree, default=str) == json.dumps(second.tree, default=str)


def test_generated_trees_cover_the_grammar_and_split_entities() -> None:
    forms: Counter[str] = Counter()
    ops: Counter[str] = Counter()
    splits = 0
    world = gen.generate_world(0)
    for seed in range(300):
        case = gen.generate_case(world, seed)
        for node in _walk([case.tree, list(case.helpers.values())]):
            forms.update(key for key in node if isinstance(key, str))
            if "op" in node:
                ops[node["op"]] += 1
            if "aggregate" in node:
                forms["aggregate:" + node["aggregate"]] += 1
        ids = evaluate(case.tree, case.world(world), case.as_of)
        splits += 0 < len(ids) < len(world.tables["customers"].rows)
    expected_forms = [
        "all", "any", "not", "column", "event", "segment", "within", "older_than", "where",
        "count", "followed_by", "not_followed_by", "model", "ago", "sql",
        *("aggregate:" + fn for fn in ("count", "count_distinct", "sum", "avg", "min", "max")),
    ]  # fmt: skip
    assert [form for form in expected_forms if forms[form] < 3] == []
    all_ops = set().union(*gen.OPS_BY_TYPE.values())
    assert [op for op in sorted(all_ops) if ops[op] < 3] == []
    assert splits > 150  # most trees neither select everyone nor no one


def _like(text: str, pattern: str) -> bool:
    """SQL LIKE with `%` and `_` as wildcards (what a buggy compiler would do)."""
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, flags=re.DOTALL) is not None


def test_generated_patterns_tell_like_from_literal() -> None:
    world = gen.generate_world(0)
    literal = {
        "contains": str.__contains__,
        "starts_with": str.startswith,
        "ends_with": str.endswith,
    }
    wrapped = {"contains": "%{}%", "starts_with": "{}%", "ends_with": "%{}"}
    telling = 0
    for seed in range(300):
        case = gen.generate_case(world, seed)
        for node in _walk([case.tree, list(case.helpers.values())]):
            if node.get("op") in literal and "aggregate" not in node:
                op, pattern = node["op"], node["value"]
                texts = [
                    row[node["column"]]
                    for table in world.tables.values()
                    if node["column"] in table.types
                    for row in table.rows
                ]
                telling += any(
                    literal[op](t, pattern) != _like(t, wrapped[op].format(pattern))
                    for t in texts
                    if t is not None
                )
    assert telling >= 15  # 22 with the current generator; mutation-checked as enough


def test_generated_data_hits_window_edges() -> None:
    world = gen.generate_world(0)
    times = {row["ts"] for row in world.tables["events"].rows}
    edges = {gen.BASE_AS_OF - parse_duration(d) for d in gen.DURATIONS} | {gen.BASE_AS_OF}
    assert len(edges & times) >= len(edges) - 2
    assert None in times
    assert any(t is not None and t > gen.BASE_AS_OF for t in times)
