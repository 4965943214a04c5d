"""One hand-checked case (or more) per condition form and operator, on the sample data of
conftest.py at AS_OF 2026-11-28 12:00 UTC. Edges: NULLs, window bounds, events after as_of."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import PROJECT, SAMPLE_SQL, write_files

from revseg.errors import ProjectError
from revseg.runner import Runner

pytestmark = pytest.mark.duckdb
AS_OF = datetime(2026, 11, 28, 12, 0, 0)


def cart(**extra: Any) -> dict[str, Any]:
    return {"event": "added_to_cart", **extra}


CASES: dict[str, tuple[Any, set[str]]] = {
    # columns, and the NULL rule: a NULL leaf is false, `not` its complement
    "eq": ({"column": "country", "op": "=", "value": "US"}, {"1"}),
    "not_eq": ({"not": {"column": "country", "op": "=", "value": "US"}}, {"2", "3", "4"}),
    "neq_null_false": ({"column": "country", "op": "!=", "value": "US"}, {"3", "4"}),
    "gte_var": ({"column": "lifetime_value", "op": ">=", "value": "{{ var('high_value') }}"}, {"1", "3"}),
    "lt": ({"column": "lifetime_value", "op": "<", "value": 560}, {"2"}),
    "in": ({"column": "country", "op": "in", "value": ["US", "DE"]}, {"1", "3"}),
    "not_in_null_false": ({"column": "country", "op": "not_in", "value": ["US"]}, {"3", "4"}),
    "between_inclusive": ({"column": "lifetime_value", "op": "between", "value": [120, 560]}, {"2", "3"}),
    "is_null": ({"column": "email", "op": "is_null"}, {"3"}),
    "is_not_null": ({"column": "email", "op": "is_not_null"}, {"1", "2", "4"}),
    "contains": ({"column": "email", "op": "contains", "value": "example"}, {"1", "2", "4"}),
    "contains_literal_percent": ({"column": "email", "op": "contains", "value": "%"}, set()),
    "like_wildcard_is_literal": ({"column": "email", "op": "starts_with", "value": "_"}, set()),
    "starts_with_case_sensitive": ({"column": "email", "op": "starts_with", "value": "B"}, set()),
    "starts_with": ({"column": "email", "op": "starts_with", "value": "b"}, {"2"}),
    "ends_with": ({"column": "email", "op": "ends_with", "value": ".com"}, {"1", "2", "4"}),
    "ago": ({"column": "signup_at", "op": "<", "value": {"ago": "30d"}}, {"1", "2"}),
    "bool": ({"column": "is_vip", "op": "=", "value": True}, {"1"}),
    "not_bool_null": ({"not": {"column": "is_vip", "op": "=", "value": "true"}}, {"2", "3", "4"}),
    "all_any": ({"all": [{"column": "email", "op": "is_not_null"},
                         {"any": [{"column": "country", "op": "=", "value": "FR"},
                                  {"column": "lifetime_value", "op": "<", "value": 200}]}]}, {"2", "4"}),
    # events: within / older_than bounds, NULL ts and ts > as_of ignored
    "event": (cart(within="24h"), {"1", "3"}),
    "event_older_than_inclusive": (cart(within="24h", older_than="2h"), {"1", "3"}),
    "event_older_than": (cart(within="24h", older_than="150m"), {"3"}),
    "event_within_exclusive": (cart(within="3h"), {"1"}),
    "event_not_followed": (cart(within="1d", not_followed_by={"event": "order_completed"}), {"3"}),
    "event_followed_within_inclusive": (cart(within="1d", followed_by={"event": "order_completed", "within": "1h"}), {"1"}),
    "event_followed_too_late": (cart(within="1d", followed_by={"event": "order_completed", "within": "59m"}), set()),
    "event_count_zero": (cart(within="7d", count={"op": "=", "value": 0}), {"2", "4"}),
    "event_count_two": (cart(within="7d", count={"op": ">=", "value": 2}), set()),
    "event_edge_one_second": ({"event": "product_viewed", "within": "1s"}, set()),
    "event_edge_two_seconds": ({"event": "product_viewed", "within": "2s"}, {"4"}),
    "event_where": (cart(within="1d", where=[{"column": "category", "op": "=", "value": "shoes"}]), {"1"}),
    "event_where_not": (cart(within="1d", where=[{"not": {"column": "amount", "op": ">", "value": 50}}]), {"3"}),
    # aggregates: empty sums are 0, empty avg/min/max NULL (false), NULL ts ignored
    "sum": ({"aggregate": "sum", "model": "orders", "column": "amount", "op": ">=", "value": 800}, {"1"}),
    "sum_within_zero": ({"aggregate": "sum", "model": "orders", "column": "amount", "within": "7d",
                         "op": "=", "value": 0}, {"2", "3", "4"}),
    "count_zero": ({"aggregate": "count", "model": "orders", "op": "=", "value": 0}, {"2", "4"}),
    "count_two": ({"aggregate": "count", "model": "orders", "op": ">=", "value": 2}, {"1"}),
    "avg_strict": ({"aggregate": "avg", "model": "orders", "column": "amount", "op": ">", "value": 400}, {"3"}),
    "avg_empty_false": ({"aggregate": "avg", "model": "orders", "column": "amount", "op": "<", "value": 1000},
                        {"1", "3"}),
    "avg_empty_not": ({"not": {"aggregate": "avg", "model": "orders", "column": "amount", "op": "<",
                               "value": 1000}}, {"2", "4"}),
    "min_ts": ({"aggregate": "min", "model": "orders", "column": "ordered_at", "op": "<", "value": {"ago": "30d"}},
               {"3"}),
    "count_distinct": ({"aggregate": "count_distinct", "model": "orders", "column": "status", "op": "=",
                        "value": 1}, {"1", "3"}),
    "agg_where": ({"aggregate": "count", "model": "orders", "where": [{"column": "status", "op": "=",
                                                                        "value": "paid"}], "op": ">", "value": 0}, {"1"}),
    # references and sql
    "segment_ref": ({"segment": "vip"}, {"1"}),
    "not_segment_ref": ({"not": {"segment": "vip"}}, {"2", "3", "4"}),
    "sql_leaf": ({"sql": "lifetime_value > 500 OR country IS NULL"}, {"1", "2", "3"}),
    "not_sql_null": ({"not": {"sql": "lifetime_value > 100"}}, {"4"}),
}


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Runner:
    root: Path = tmp_path_factory.mktemp("conditions")
    conn = duckdb.connect(str(root / "wh.duckdb"))
    conn.execute(SAMPLE_SQL)
    conn.close()
    segments = [{"name": name, "where": where} for name, (where, _ids) in CASES.items()]
    segments.append({"name": "vip", "where": {"column": "is_vip", "op": "=", "value": True}})
    segments.append({"name": "sql_segment", "sql": "select customer_id, email from customers where country = 'US'"})
    write_files(root, {"revseg.yml": PROJECT, "segments/cases.yml": segments})
    return Runner(root)


@pytest.mark.parametrize("name", list(CASES))
def test_condition(runner: Runner, name: str) -> None:
    members = {m.id for m in runner.preview(name, as_of=AS_OF).members}
    assert members == CASES[name][1], CASES[name][0]


def test_sql_segment_returns_key_and_traits(runner: Runner) -> None:
    result = runner.preview("sql_segment", as_of=AS_OF)
    assert [(m.id, m.traits) for m in result.members] == [("1", {"email": "ann@example.com"})]


def test_as_of_with_zone_is_utc(runner: Runner) -> None:
    from datetime import timedelta, timezone

    in_paris = AS_OF.replace(tzinfo=timezone.utc).astimezone(timezone(timedelta(hours=1)))
    assert {m.id for m in runner.preview("event_within_exclusive", as_of=in_paris).members} == {"1"}


DUPLICATE_KEYS_SQL = """
CREATE TABLE customers (customer_id INTEGER, email VARCHAR, country VARCHAR, updated_at TIMESTAMP);
INSERT INTO customers (customer_id, email, country) VALUES (1, 'a@x', 'US'), (1, 'b@x', 'US'), (2, 'c@x', 'DE'), (2, 'c@x', 'US'), (3, NULL, NULL),
  (NULL, 'n@x', 'US');
CREATE TABLE events (customer_id INTEGER, event_name VARCHAR, ts TIMESTAMP);
INSERT INTO events VALUES (2, 'view', '2026-11-28 11:30:00');
CREATE TABLE orders (customer_id INTEGER, ordered_at TIMESTAMP);
"""


def test_a_key_with_several_rows_is_one_member(project: Any) -> None:
    """A segment is a set of entities: a primary key with several rows (or a `sql:` segment
    returning a key twice) is one member, and a NULL key none (never an id "None")."""
    root = project({"segments/s.yml": [
        {"name": "us", "where": {"column": "country", "op": "=", "value": "US"}, "traits": {"email": "email"}},
        {"name": "viewers", "where": {"event": "view", "within": "1h"}},
        {"name": "joined", "sql": "select customer_id from customers union all select null"},
    ]}, data=DUPLICATE_KEYS_SQL)
    runner = Runner(root)
    for name, ids in (("us", ["1", "2"]), ("viewers", ["2"]), ("joined", ["1", "2", "3"])):
        result = runner.preview(name, as_of=AS_OF)
        assert ([m.id for m in result.members], result.total) == (ids, len(ids)), name
    assert {s.name: s.members for s in runner.sync(as_of=AS_OF).segments} == {"us": 2, "viewers": 1, "joined": 3}


UUID_SQL = """
CREATE TABLE accounts (account_id UUID, plan VARCHAR);
INSERT INTO accounts VALUES ('6f1c8f9e-0000-4000-8000-000000000001', 'pro'), ('6f1c8f9e-0000-4000-8000-000000000002', 'free');
CREATE TABLE referrals (account_id UUID, referred UUID);
INSERT INTO referrals VALUES ('6f1c8f9e-0000-4000-8000-000000000001', '6f1c8f9e-0000-4000-8000-000000000002'),
                             ('6f1c8f9e-0000-4000-8000-000000000001', '6f1c8f9e-0000-4000-8000-00000000000a');
"""
UUID_1, UUID_2 = "6f1c8f9e-0000-4000-8000-000000000001", "6f1c8f9e-0000-4000-8000-000000000002"


@pytest.fixture(params=[pytest.param("duckdb"), pytest.param("postgres", marks=pytest.mark.postgres)])
def uuid_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A warehouse holding UUID_SQL: an embedded DuckDB file, or a schema of its own on PostgreSQL."""
    if request.param == "duckdb":
        with duckdb.connect(str(tmp_path / "wh.duckdb")) as conn:
            conn.execute(UUID_SQL)
        yield {"type": "duckdb", "path": "wh.duckdb"}
        return
    import psycopg
    from psycopg import sql

    schema = f"revseg_uuid_{uuid.uuid4().hex[:12]}"
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=5",
                         autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            conn.execute(UUID_SQL)
            yield {"type": "postgres", "host": "127.0.0.1", "port": 5432, "user": "postgres",
                   "database": "test", "schema": schema}
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def test_uuid_keys_compare_as_uuids(uuid_target: dict[str, Any], tmp_path: Path) -> None:
    """A UUID column compares as a UUID (any case; its lowercase text orders it, string operators
    match that text); a value that is no UUID is a validation error, not a failed query (exit 3:
    PostgreSQL has no COLLATE, LIKE or POSITION on uuid)."""
    cases: dict[str, tuple[Any, list[str]]] = {
        "eq_upper": ({"column": "account_id", "op": "=", "value": UUID_1.upper()}, [UUID_1]),
        "lt": ({"column": "account_id", "op": "<", "value": UUID_2}, [UUID_1]),
        "in": ({"column": "account_id", "op": "in", "value": [UUID_2]}, [UUID_2]),
        "contains": ({"column": "account_id", "op": "contains", "value": "0001"}, [UUID_1]),
        "ends_with": ({"column": "account_id", "op": "ends_with", "value": "2"}, [UUID_2]),
        "max": ({"aggregate": "max", "model": "referrals", "column": "referred", "op": "=",
                 "value": "6F1C8F9E-0000-4000-8000-00000000000A"}, [UUID_1]),
    }
    config = {"name": "u", "target": "dev", "targets": {"dev": uuid_target}, "entity": "accounts",
              "models": {"accounts": {"table": "accounts", "primary_key": "account_id"},
                         "referrals": {"table": "referrals", "entity_key": "account_id"}}}
    segments = [{"name": name, "where": where} for name, (where, _ids) in cases.items()]
    write_files(tmp_path, {"revseg.yml": config, "segments/s.yml": segments})
    runner = Runner(tmp_path)
    for name, (_where, ids) in cases.items():
        assert [m.id for m in runner.preview(name, as_of=AS_OF).members] == ids, name
    bad = [*segments, {"name": "bad", "where": {"column": "account_id", "op": "=", "value": "nope"}}]
    write_files(tmp_path, {"segments/s.yml": bad})
    with pytest.raises(ProjectError, match="'nope' is not a UUID"):
        Runner(tmp_path).validate()


@pytest.mark.parametrize(("type_name", "kind"), [
    ("INTEGER", "number"), ("int8", "number"), ("UBIGINT", "number"), ("DECIMAL(18,2)", "number"),
    ("double precision", "number"), ("NUMBER(38,0)", "number"), ("FLOAT64", "number"),
    ("interval", "other"), ("point", "other"), ("INTEGER[]", "other"), ("VARCHAR[]", "other"),
    ("STRUCT(a INTEGER)", "other"), ("MAP(VARCHAR, INTEGER)", "other"), ("jsonb", "other"),
    ("character varying", "text"), ("citext", "text"), ("uuid", "uuid"), ("boolean", "boolean"),
    ("timestamp with time zone", "timestamp"), ("date", "date"),
])
def test_column_kinds_by_engine_type_name(type_name: str, kind: str) -> None:
    """An interval, a point or a list of integers is no number: comparing one with a number
    must be refused at validation, not fail in the warehouse."""
    from revseg.compile.catalog import classify

    assert classify(type_name).value == kind
