"""Differential tests: revseg's SQL membership against the pure-Python reference.

Each case is a seeded random condition tree (tests/gen.py) over a seeded random dataset.
The dataset is written into the engine with explicit column types; the tree is written
as a segment of a project in tmp_path; revseg computes the membership through
``Runner.preview`` and it must equal the reference evaluator's (tests/reference.py).

DATASETS x TREES_PER_DATASET cases run per engine; a dataset is loaded once and shared by
its trees. Datasets cycle through storage variants a real warehouse may have (see
``variant``): plain types; text columns with an ICU collation (PostgreSQL; SPEC 2.2 wants
code-point comparisons whatever the collation); a non-UTC session and machine time zone;
and TIMESTAMP WITH TIME ZONE columns under that zone (SPEC 2.2 "Time": membership never
depends on the machine's time zone).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import gen
import psycopg
import pyarrow as pa
import pytest
import yaml
from psycopg import sql
from reference import Table, Value, World, evaluate

DATASETS = 20
TREES_PER_DATASET = 40
CASES = range(DATASETS * TREES_PER_DATASET)
SEGMENT = "candidates"
SHOWN_IDS = 3

POSTGRES_TARGET = {"type": "postgres", "host": "127.0.0.1", "port": 5432, "user": "postgres"}
POSTGRES_DATABASE = "test"
POSTGRES_CONNINFO = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=5"
ICU_COLLATION = "en-x-icu"
FAR_ZONE = "Pacific/Kiritimati"  # UTC+14: a shifted window edge cannot go unnoticed

ARROW_TYPES = {
    "int": pa.int32(),
    "float": pa.float64(),
    "text": pa.string(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
}
DUCKDB_TYPES = {
    "int": "INTEGER",
    "float": "DOUBLE",
    "text": "VARCHAR",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMP WITH TIME ZONE",
}
POSTGRES_TYPES = {
    "int": "INTEGER",
    "float": "DOUBLE PRECISION",
    "text": "TEXT",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMP WITH TIME ZONE",
}
MODELS_YAML: dict[str, Any] = {
    "customers": {"table": "customers", "primary_key": "customer_id"},
    "events": {
        "table": "events",
        "entity_key": "customer_id",
        "timestamp": "ts",
        "name": "event_name",
    },
    "orders": {"table": "orders", "entity_key": "customer_id", "timestamp": "ordered_at"},
}


@dataclass(frozen=True)
class Variant:
    """How one dataset is stored and read."""

    collation: str | None = None  # PostgreSQL: text columns declared with this collation
    timestamptz: bool = False  # timestamp columns WITH TIME ZONE (same instants, in UTC)
    zone: str | None = None  # TZ and PGTZ while revseg runs

    def __str__(self) -> str:
        parts = [
            f"text COLLATE {self.collation} (postgres)" if self.collation else "",
            "TIMESTAMP WITH TIME ZONE columns" if self.timestamptz else "",
            f"session/machine zone {self.zone}" if self.zone else "",
        ]
        return ", ".join(part for part in parts if part) or "plain types, UTC"

    def sql_type(self, kind: str) -> str:
        return "timestamptz" if kind == "timestamp" and self.timestamptz else kind

    def stored(self, value: Value) -> Value:
        if self.timestamptz and isinstance(value, datetime):
            return value.replace(tzinfo=UTC)
        return value


def variant(dataset_index: int) -> Variant:
    return (
        Variant(),
        Variant(collation=ICU_COLLATION),
        Variant(zone=FAR_ZONE),
        Variant(timestamptz=True, zone=FAR_ZONE),
    )[dataset_index % 4]


@functools.cache
def dataset(index: int) -> World:
    return gen.generate_world(index)


@contextmanager
def local_zone(zone: str | None) -> Iterator[None]:
    """Run with the machine's (TZ) and PostgreSQL sessions' (PGTZ) time zone set to `zone`."""
    if zone is None:
        yield
        return
    saved = {name: os.environ.get(name) for name in ("TZ", "PGTZ")}
    os.environ["TZ"] = os.environ["PGTZ"] = zone
    time.tzset()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        time.tzset()


# -- loading data ---------------------------------------------------------------------------


def rows_as_stored(table: Table, how: Variant) -> list[list[Value]]:
    return [[how.stored(row[column]) for column in table.types] for row in table.rows]


def load_duckdb(world: World, how: Variant, path: Path) -> None:
    """Write every table of `world` into a new DuckDB file, then close it (file lock)."""
    with duckdb.connect(str(path)) as connection:
        for name, table in world.tables.items():
            kinds = {column: how.sql_type(kind) for column, kind in table.types.items()}
            columns = ", ".join(f'"{c}" {DUCKDB_TYPES[k]}' for c, k in kinds.items())
            connection.execute(f'CREATE TABLE "{name}" ({columns})')
            schema = pa.schema([(c, ARROW_TYPES[k]) for c, k in kinds.items()])
            rows = rows_as_stored(table, how)
            arrow = pa.Table.from_pylist(
                [dict(zip(kinds, row, strict=True)) for row in rows], schema
            )
            connection.register("arrow_rows", arrow)
            connection.execute(f'INSERT INTO "{name}" SELECT * FROM arrow_rows')
            connection.unregister("arrow_rows")


def load_postgres(
    world: World, how: Variant, connection: psycopg.Connection[Any], schema: str
) -> None:
    """Replace the tables of `schema` with those of `world` (COPY, explicit types)."""
    collate = sql.SQL(" COLLATE {}").format(sql.Identifier(how.collation or "C"))
    with connection.cursor() as cursor:
        for name, table in world.tables.items():
            target = sql.Identifier(schema, name)
            columns = [
                sql.SQL("{} {}{}").format(
                    sql.Identifier(column),
                    sql.SQL(POSTGRES_TYPES[how.sql_type(kind)]),
                    collate if how.collation and kind == "text" else sql.SQL(""),
                )
                for column, kind in table.types.items()
            ]
            cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
            cursor.execute(
                sql.SQL("CREATE TABLE {} ({})").format(target, sql.SQL(", ").join(columns))
            )
            names = sql.SQL(", ").join(sql.Identifier(c) for c in table.types)
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(target, names)
            with cursor.copy(copy_sql) as copy:
                for row in rows_as_stored(table, how):
                    copy.write_row(row)
    connection.commit()


@dataclass
class Engine:
    """Loads datasets into one engine and says how a project reaches them."""

    name: str
    load: Callable[[int], dict[str, Any]]  # dataset index -> revseg target config


@pytest.fixture(scope="module")
def duckdb_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    directory = tmp_path_factory.mktemp("duckdb_datasets")

    @functools.cache
    def load(index: int) -> dict[str, Any]:
        path = directory / f"dataset_{index}.duckdb"
        load_duckdb(dataset(index), variant(index), path)
        return {"type": "duckdb", "path": str(path)}

    return Engine("duckdb", load)


@pytest.fixture(scope="module")
def postgres_engine() -> Iterator[Engine]:
    try:
        connection = psycopg.connect(POSTGRES_CONNINFO)
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL is unreachable ({POSTGRES_CONNINFO}): {error}")
    schema = f"revseg_diff_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    loaded: list[int] = []
    with connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        connection.commit()

        def load(index: int) -> dict[str, Any]:
            if loaded != [index]:
                load_postgres(dataset(index), variant(index), connection, schema)
                loaded[:] = [index]
            return {**POSTGRES_TARGET, "database": POSTGRES_DATABASE, "schema": schema}

        try:
            yield Engine("postgres", load)
        finally:
            connection.rollback()
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
            connection.commit()


# -- one case -------------------------------------------------------------------------------


def write_project(directory: Path, target: dict[str, Any], case: gen.Case) -> None:
    project = {
        "name": "diff",
        "target": "dev",
        "targets": {"dev": target},
        "entity": "customers",
        "models": MODELS_YAML,
    }
    (directory / "revseg.yml").write_text(dump(project), encoding="utf-8")
    segments = directory / "segments"
    segments.mkdir()
    for name, tree in [*case.helpers.items(), (SEGMENT, case.tree)]:
        text = dump({"name": name, "where": tree})
        (segments / f"{name}.yml").write_text(text, encoding="utf-8")


def dump(document: Any) -> str:
    return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


def describe(case: gen.Case, data: int, label: str) -> str:
    helpers = "".join(f"segment {name}:\n{dump(tree)}" for name, tree in case.helpers.items())
    return (
        f"dataset {data} ({variant(data)}), {label}, as_of {case.as_of.isoformat()}\n"
        f"{helpers}segment {SEGMENT}:\n{dump(case.tree)}"
    )


def rows_of(world: World, entity_id: str) -> str:
    """The entity's row and its events and orders, for a failure message."""
    lines = []
    for model, table in world.tables.items():
        key = world.models[model].primary_key or world.models[model].entity_key or ""
        for row in table.rows:
            if str(row[key]) == entity_id:
                lines.append(f"    {model}: {row}")
    return "\n".join(lines)


def mismatch(sql_ids: set[str], reference_ids: set[str], world: World) -> str:
    parts = []
    for label, ids in (
        ("in SQL only", sql_ids - reference_ids),
        ("in reference only", reference_ids - sql_ids),
    ):
        if ids:
            shown = sorted(ids, key=lambda i: (len(i), i))[:SHOWN_IDS]
            parts.append(f"{label}: {sorted(ids)}")
            parts.extend(f"  id {i}:\n{rows_of(world, i)}" for i in shown)
    return "\n".join(parts)


def check_case(engine: Engine, data: int, case: gen.Case, label: str, tmp_path: Path) -> None:
    """revseg's membership for `case` over dataset `data` must equal the reference's."""
    from revseg.runner import Runner  # the runner under test; an ImportError fails the case

    world = dataset(data)
    expected = evaluate(case.tree, case.world(world), case.as_of)
    write_project(tmp_path, engine.load(data), case)
    try:
        with local_zone(variant(data).zone):
            result = Runner(tmp_path).preview(SEGMENT, as_of=case.as_of)
    except Exception as error:  # noqa: BLE001 (any failure must show the tree)
        pytest.fail(f"{engine.name}: revseg raised {error!r}\n{describe(case, data, label)}", False)
    got = {member.id for member in result.members}
    if got != expected:
        pytest.fail(
            f"{engine.name}: membership differs from the reference\n"
            f"{describe(case, data, label)}{mismatch(got, expected, world)}",
            pytrace=False,
        )


def check_random_case(engine: Engine, index: int, tmp_path: Path) -> None:
    data = index // TREES_PER_DATASET
    case = gen.generate_case(dataset(data), index)
    check_case(engine, data, case, f"random case {index}", tmp_path)


def col(column: str, op: str, value: Any) -> dict[str, Any]:
    return {"column": column, "op": op, "value": value}


# Hand-picked trees on the rules most likely to break, run on one dataset of each variant,
# so a regression there never depends on the random draw.
PINNED_TREES: dict[str, dict[str, Any]] = {
    "text_order": col("country", ">", "US"),
    "text_between": col("email", "between", ["Ann@x.com", "ann@x.com"]),
    "filter_text_order": {"event": "view", "where": [col("category", "<", "hats")]},
    "aggregate_filter_text_order": {
        "aggregate": "count",
        "model": "orders",
        "where": [col("status", ">=", "Paid")],
        "op": ">=",
        "value": 1,
    },
    "contains_underscore": col("email", "contains", "_"),
    "starts_with_percent": col("email", "starts_with", "bob%"),
    "not_not_equal_null": {"not": col("country", "!=", "US")},
    "ago": col("signup_at", ">=", {"ago": "1w"}),
    "abandoned_cart": {
        "event": "add_to_cart",
        "within": "1d",
        "not_followed_by": {"event": "purchase", "within": "1h"},
    },
    "few_views": {
        "event": "view",
        "within": "7d",
        "older_than": "1d",
        "count": {"op": "<", "value": 2},
    },
    "empty_avg": {
        "not": {"aggregate": "avg", "model": "orders", "column": "amount", "op": ">", "value": 0}
    },
    "empty_sum": {
        "aggregate": "sum",
        "model": "orders",
        "column": "amount",
        "within": "2h",
        "op": "=",
        "value": 0,
    },
}
PINNED = [(data, name) for data in range(4) for name in PINNED_TREES]


def check_pinned_case(engine: Engine, data: int, name: str, tmp_path: Path) -> None:
    case = gen.Case(tree=PINNED_TREES[name], as_of=gen.BASE_AS_OF)
    check_case(engine, data, case, f"pinned case {name}", tmp_path)


@pytest.mark.slow
@pytest.mark.duckdb
@pytest.mark.parametrize("index", CASES)
def test_duckdb_matches_reference(duckdb_engine: Engine, index: int, tmp_path: Path) -> None:
    check_random_case(duckdb_engine, index, tmp_path)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("index", CASES)
def test_postgres_matches_reference(postgres_engine: Engine, index: int, tmp_path: Path) -> None:
    check_random_case(postgres_engine, index, tmp_path)


@pytest.mark.duckdb
@pytest.mark.parametrize(("data", "name"), PINNED)
def test_duckdb_pinned(duckdb_engine: Engine, data: int, name: str, tmp_path: Path) -> None:
    check_pinned_case(duckdb_engine, data, name, tmp_path)


@pytest.mark.postgres
@pytest.mark.parametrize(("data", "name"), PINNED)
def test_postgres_pinned(postgres_engine: Engine, data: int, name: str, tmp_path: Path) -> None:
    check_pinned_case(postgres_engine, data, name, tmp_path)



# Aggregates over a boolean column: min and max order false before true, NULLs aside (the
# generated models have no boolean column, so this world is written out).
BOOLEAN_WORLD = World(
    models=gen.MODELS,
    tables={
        "customers": Table(types={"customer_id": "int"}, rows=[{"customer_id": k} for k in (1, 2, 3, 4)]),
        "events": Table(types={"customer_id": "int", "event_name": "text", "ts": "timestamp"}, rows=[]),
        "orders": Table(
            types={"customer_id": "int", "ordered_at": "timestamp", "refund": "bool"},
            rows=[
                {"customer_id": 1, "ordered_at": gen.BASE_AS_OF, "refund": True},
                {"customer_id": 1, "ordered_at": gen.BASE_AS_OF, "refund": False},
                {"customer_id": 2, "ordered_at": gen.BASE_AS_OF, "refund": None},
                {"customer_id": 2, "ordered_at": gen.BASE_AS_OF, "refund": True},
                {"customer_id": 3, "ordered_at": gen.BASE_AS_OF, "refund": None},
            ],
        ),
    },
)
BOOLEAN_TREES = {
    f"{fn}_{value}": {"aggregate": fn, "model": "orders", "column": "refund", "op": "=", "value": value}
    for fn in ("min", "max")
    for value in (True, False)
}


@pytest.mark.parametrize("engine", [pytest.param("duckdb", marks=pytest.mark.duckdb),
                                    pytest.param("postgres", marks=pytest.mark.postgres)])
def test_min_max_of_a_boolean_column(engine: str, tmp_path: Path) -> None:
    from revseg.runner import Runner

    case = gen.Case(tree=BOOLEAN_TREES["min_True"], as_of=gen.BASE_AS_OF, helpers=BOOLEAN_TREES)
    with contextlib.ExitStack() as stack:
        if engine == "duckdb":
            load_duckdb(BOOLEAN_WORLD, Variant(), tmp_path / "booleans.duckdb")
            target: dict[str, Any] = {"type": "duckdb", "path": str(tmp_path / "booleans.duckdb")}
        else:
            connection = stack.enter_context(psycopg.connect(POSTGRES_CONNINFO))
            schema = f"revseg_bool_{os.getpid()}_{uuid.uuid4().hex[:8]}"
            connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            stack.callback(connection.commit)
            stack.callback(connection.execute, sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
            load_postgres(BOOLEAN_WORLD, Variant(), connection, schema)
            target = {**POSTGRES_TARGET, "database": POSTGRES_DATABASE, "schema": schema}
        project = tmp_path / "project"
        project.mkdir()
        write_project(project, target, case)
        runner = Runner(project)
        got = {name: {m.id for m in runner.preview(name, as_of=case.as_of).members} for name in BOOLEAN_TREES}
    expected = {name: evaluate(tree, BOOLEAN_WORLD, case.as_of) for name, tree in BOOLEAN_TREES.items()}
    assert got == expected == {"min_True": {"2"}, "min_False": {"1"}, "max_True": {"1", "2"}, "max_False": set()}

# -- the harness itself ---------------------------------------------------------------------


def _normalized(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows with aware timestamps as naive UTC, in a stable order."""

    def naive(value: Any) -> Any:
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    return sorted((tuple(naive(v) for v in row) for row in rows), key=repr)


def _expected_rows(table: Table) -> list[tuple[Any, ...]]:
    return _normalized([tuple(row[column] for column in table.types) for row in table.rows])


@pytest.mark.duckdb
@pytest.mark.parametrize("index", range(4))
def test_duckdb_loader_round_trips(duckdb_engine: Engine, index: int) -> None:
    path = duckdb_engine.load(index)["path"]
    with duckdb.connect(path, read_only=True) as connection:
        for name, table in dataset(index).tables.items():
            got = connection.execute(f'SELECT * FROM "{name}"').fetchall()
            assert _normalized(got) == _expected_rows(table), name


@pytest.mark.postgres
@pytest.mark.parametrize("index", range(4))
def test_postgres_loader_round_trips(postgres_engine: Engine, index: int) -> None:
    schema = postgres_engine.load(index)["schema"]
    with psycopg.connect(POSTGRES_CONNINFO) as connection:
        for name, table in dataset(index).tables.items():
            query = sql.SQL("SELECT * FROM {}").format(sql.Identifier(schema, name))
            got = connection.execute(query).fetchall()
            assert _normalized(got) == _expected_rows(table), name
