"""Incremental runs along a chain of data changes (SPEC 4): at every step, the membership an
incremental run commits equals the membership a full evaluation gives, which equals the
pure-Python reference (tests/reference.py).

A chain starts from seeded data (customers with ``updated_at``; events and orders with
``loaded_at`` as well as their timestamps) and seeded segments (tests/gen.py's trees: windowed
event conditions, sequences, aggregates with windows, ``{ago: D}`` values, references to
helper segments). Its as_of values are drawn up front, so timestamps can sit exactly on the
window edges of the as_of values still to come. Then, step by step:

- events are appended: on window edges of the new as_of (one second either side too), late
  (timestamp before the previous as_of, loaded since the previous as_of minus ``lookback``),
  in the future, exactly one window after an earlier event (sequences);
- orders are appended (one chain in two without ``loaded_at``: then their own timestamp is
  the watermark and every new order is dated after the previous as_of minus ``lookback``);
- customers are inserted and updated with a fresh ``updated_at`` (sometimes as late as the
  watermark allows: just after the previous as_of minus ``lookback``, so below the latest
  ``updated_at``); some steps change only customers (the first main segment reads only them);
- as_of advances by a varying amount: zero, a second, exactly a window length, hours;
- ``Runner.sync(as_of=...)`` runs, and for every segment the committed snapshot
  (``<state_schema>.segment_members``) must equal the full membership (the query
  ``Runner.preview`` runs, over one session per step; and ``Runner.preview`` itself for one
  segment a step) and the reference.

Within SPEC 4's limits: rows arrive within ``lookback`` of the previous as_of, related rows
are only appended (deletes are the periodic full run's job), customers are only inserted or
updated with a fresh ``updated_at``. ``full_refresh_every`` is 52w, so no run after the first
may be ``full`` but those asked for with ``full_refresh`` (every fifth step from the third: a
full run patches the stored membership that the incremental runs after it start from); at least two thirds of the segment runs must be ``incremental`` (the others
skip: nothing new in the models they read, no boundary crossed); at one idle step per chain
(no data change, as_of unchanged) every segment must be ``skipped``.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import gen
import psycopg
import pytest
import yaml
from psycopg import sql
from reference import Condition, Table, Value, World, evaluate, parse_duration
from test_differential import (
    POSTGRES_CONNINFO,
    POSTGRES_DATABASE,
    POSTGRES_TARGET,
    Variant,
    load_duckdb,
    load_postgres,
)

pytestmark = pytest.mark.slow

CHAINS = 3  # per engine; each engine runs its own seeds
STEPS = 14  # runs after the first (full) one
HELPERS = 2  # segments that other segments may reference
MAINS = 4
SHOWN_IDS = 3
DURATIONS = gen.DURATIONS
GRID = gen.GRID
BASE = gen.BASE_AS_OF
LOOKBACKS = ("10m", "30m", "1h", "2h")
SECOND = timedelta(seconds=1)

TYPES: dict[str, dict[str, str]] = {
    "customers": {**gen.TYPES["customers"], "updated_at": "timestamp"},
    "events": {**gen.TYPES["events"], "loaded_at": "timestamp"},
    "orders": {**gen.TYPES["orders"], "loaded_at": "timestamp"},
}
KEYS = {"customers": "customer_id", "events": "customer_id", "orders": "customer_id"}
TIMESTAMPS = {"events": "ts", "orders": "ordered_at"}
ORPHANS = tuple(range(1000, 1006))  # customer ids with rows but (at first) no customer


# -- the plan of a chain --------------------------------------------------------------------


@dataclass
class Plan:
    """What a chain does, drawn up front from its seed."""

    seed: int
    as_ofs: list[datetime]  # as_ofs[0]: the first (full) run; as_ofs[k]: step k
    idle: int  # the step with no data change and as_of unchanged
    lookback: dict[str, str]  # per model
    orders_loaded_at: bool  # whether the orders model declares loaded_at

    def lookback_of(self, model: str) -> timedelta:
        return parse_duration(self.lookback[model])


def _advance(rng: random.Random) -> timedelta:
    roll = rng.random()
    if roll < 0.18:
        return timedelta(0)
    if roll < 0.45:
        return parse_duration(rng.choice(DURATIONS))  # exactly a window length
    if roll < 0.6:
        return timedelta(seconds=rng.choice((1, 59, 90, 433)))
    if roll < 0.85:
        return GRID * rng.randint(1, 8)
    return timedelta(hours=rng.randint(5, 30))


def make_plan(seed: int) -> Plan:
    rng = random.Random(f"chain-plan-{seed}")
    idle = rng.randint(3, STEPS)
    as_ofs = [BASE]
    for step in range(1, STEPS + 1):
        as_ofs.append(as_ofs[-1] + (timedelta(0) if step == idle else _advance(rng)))
    lookback = {model: rng.choice(LOOKBACKS) for model in TYPES}
    return Plan(seed, as_ofs, idle, lookback, orders_loaded_at=seed % 2 == 0)


# -- data -----------------------------------------------------------------------------------


def _on_edge(rng: random.Random, anchor: datetime) -> datetime:
    """`anchor - D` for a window length D (or `anchor` itself), now and then one second off."""
    base = anchor if rng.random() < 0.2 else anchor - parse_duration(rng.choice(DURATIONS))
    return base + SECOND * rng.choice((0, 0, 0, -1, 1))


def _between(rng: random.Random, low: datetime, high: datetime) -> datetime:
    """A whole second in (low, high]."""
    seconds = int((high - low).total_seconds())
    return high if seconds <= 0 else low + SECOND * rng.randint(1, seconds)


def _owner(rng: random.Random, ids: list[int]) -> int | None:
    roll = rng.random()
    if roll < 0.03:
        return None
    if roll < 0.08:
        return rng.choice(ORPHANS)
    return rng.choice(ids)


def _customer_attributes(rng: random.Random, anchors: list[datetime]) -> dict[str, Value]:
    signup: datetime | None
    roll = rng.random()
    if roll < 0.45:
        signup = _on_edge(rng, rng.choice(anchors))
    elif roll < 0.8:
        signup = BASE - GRID * rng.randint(-10, 24 * 2 * 30)
    else:
        signup = None
    return {
        "country": gen._maybe(rng, rng.choice(gen.COUNTRIES), 0.2),
        "lifetime_value": gen._maybe(rng, gen._half(rng, -2, 12), 0.2),
        "email": gen._maybe(rng, rng.choice(gen.EMAILS), 0.15),
        "is_vip": gen._maybe(rng, rng.random() < 0.4, 0.25),
        "signup_at": signup,
    }


@dataclass
class Data:
    """The chain's tables, as the reference sees them (the warehouse holds the same rows)."""

    tables: dict[str, Table]
    unused_ids: list[int] = field(default_factory=list)

    def rows(self, model: str) -> list[dict[str, Value]]:
        return self.tables[model].rows

    def ids(self) -> list[int]:
        return [row["customer_id"] for row in self.rows("customers")]

    def world(self, segments: dict[str, Condition]) -> World:
        return World(models=gen.MODELS, tables=self.tables, segments=segments, sql=gen.SQL_LEAVES)


def initial_data(plan: Plan) -> Data:
    rng = random.Random(f"chain-data-{plan.seed}")
    anchors = plan.as_ofs
    ids = sorted(rng.sample(range(-3, 80), rng.randint(24, 32)))
    customers = []
    for key in ids:
        updated = None if rng.random() < 0.1 else BASE - GRID * rng.randint(0, 500)
        customers.append(
            {"customer_id": key, **_customer_attributes(rng, anchors), "updated_at": updated}
        )

    def moment() -> datetime | None:
        roll = rng.random()
        if roll < 0.05:
            return None
        if roll < 0.5:
            return _on_edge(rng, rng.choice(anchors))
        return BASE - GRID * rng.randint(-20, 24 * 2 * 9)

    def loaded(ts: datetime | None) -> datetime | None:
        """Initial rows landed before the first run (or never said when)."""
        if rng.random() < 0.05:
            return None
        latest = min(ts, BASE) if ts is not None else BASE
        return latest - GRID * rng.randint(0, 48)

    owners = rng.sample(ids, int(len(ids) * 0.75))
    events: list[dict[str, Value]] = []
    for _ in range(rng.randint(140, 220)):
        ts = moment()
        events.append(_event(rng, _owner(rng, owners), ts, loaded(ts)))
    for first in rng.sample(events, len(events) // 3):
        if first["ts"] is not None:
            ts = (
                first["ts"]
                + parse_duration(rng.choice(DURATIONS))
                + SECOND * rng.choice((0, 0, 0, -1, 1))
            )
            events.append(_event(rng, first["customer_id"], ts, loaded(ts)))
    rng.shuffle(events)
    orders = []
    for _ in range(rng.randint(60, 110)):
        ts = moment()
        orders.append(_order(rng, _owner(rng, owners), ts, loaded(ts)))
    unused = [key for key in range(-3, 80) if key not in ids] + list(ORPHANS) + list(range(80, 200))
    rng.shuffle(unused)
    tables = {
        "customers": Table(TYPES["customers"], customers),
        "events": Table(TYPES["events"], events),
        "orders": Table(TYPES["orders"], orders),
    }
    return Data(tables, unused)


def _event(
    rng: random.Random, owner: int | None, ts: datetime | None, loaded: datetime | None
) -> dict[str, Value]:
    return {
        "customer_id": owner,
        "event_name": gen._maybe(rng, rng.choice(gen.EVENT_NAMES), 0.04),
        "ts": ts,
        "category": gen._maybe(rng, rng.choice(gen.CATEGORIES), 0.2),
        "amount": gen._maybe(rng, gen._half(rng, 0, 6), 0.25),
        "loaded_at": loaded,
    }


def _order(
    rng: random.Random, owner: int | None, ts: datetime | None, loaded: datetime | None
) -> dict[str, Value]:
    return {
        "customer_id": owner,
        "ordered_at": ts,
        "amount": gen._maybe(rng, gen._half(rng, -1, 8), 0.2),
        "quantity": gen._maybe(rng, rng.randint(0, 4), 0.2),
        "status": gen._maybe(rng, rng.choice(gen.STATUSES), 0.15),
        "loaded_at": loaded,
    }


@dataclass
class Changes:
    """One step's changes: rows to append per model, and customer updates (key -> new values)."""

    appended: dict[str, list[dict[str, Value]]] = field(default_factory=dict)
    updates: dict[int, dict[str, Value]] = field(default_factory=dict)

    def empty(self) -> bool:
        return not self.updates and not any(self.appended.values())

    def summary(self) -> str:
        parts = [f"{len(rows)} {model} appended" for model, rows in self.appended.items() if rows]
        if self.updates:
            parts.append(f"customers updated: {sorted(self.updates)}")
        return ", ".join(parts) or "no data change"


def draw_changes(plan: Plan, data: Data, step: int) -> Changes:
    """Step `step`'s appends and updates, within SPEC 4's limits."""
    changes = Changes()
    if step == plan.idle:
        return changes
    rng = random.Random(f"chain-step-{plan.seed}-{step}")
    now, previous = plan.as_ofs[step], plan.as_ofs[step - 1]
    later = plan.as_ofs[step + 1 :] or [now]
    ids = data.ids()
    customers_only = rng.random() < (0.5 if now == previous else 0.15)  # then only customers change

    def arrival(model: str) -> datetime:
        """When a row landed: now, at the previous as_of, or as late as the watermark allows."""
        earliest = previous - plan.lookback_of(model)
        roll = rng.random()
        if roll < 0.45:
            return now
        if roll < 0.6:
            return previous
        if roll < 0.75:
            return earliest + SECOND  # the oldest a row may be and still be new
        return _between(rng, earliest, now)

    # events
    events = []
    old_events = [
        row
        for row in data.rows("events")
        if row["ts"] is not None and row["customer_id"] is not None
    ]
    for _ in range(0 if customers_only else rng.randint(3, 14)):
        owner = _owner(rng, ids)
        roll = rng.random()
        ts: datetime | None
        if roll < 0.35:
            ts = _on_edge(rng, now)  # on a window edge of the new as_of
        elif roll < 0.5:  # late: before the previous as_of
            ts = (
                _on_edge(rng, previous)
                if rng.random() < 0.5
                else previous - GRID * rng.randint(1, 100)
            )
        elif roll < 0.62:
            ts = _on_edge(rng, rng.choice(later))  # maybe after as_of: visible at a later step
        elif roll < 0.82 and old_events:  # a sequence: exactly a window after an earlier event
            first = rng.choice(old_events)
            owner = first["customer_id"]
            ts = (
                first["ts"]
                + parse_duration(rng.choice(DURATIONS))
                + SECOND * rng.choice((0, 0, 0, -1, 1))
            )
        elif roll < 0.86:
            ts = None
        else:
            ts = now - GRID * rng.randint(-4, 100)
        events.append(_event(rng, owner, ts, arrival("events")))
    changes.appended["events"] = events

    # orders: without loaded_at, the timestamp is the watermark, so new orders are recent
    orders = []
    earliest = previous - plan.lookback_of("orders")
    for _ in range(0 if customers_only else rng.randint(0, 4)):
        owner = _owner(rng, ids)
        ts = _on_edge(rng, rng.choice((now, now, previous, *later)))
        if not plan.orders_loaded_at:
            roll = rng.random()
            if roll < 0.1:
                ts = None
            elif roll < 0.3:
                ts = earliest + SECOND
            elif ts <= earliest:
                ts = _between(rng, earliest, now)
        orders.append(_order(rng, owner, ts, arrival("orders")))
    changes.appended["orders"] = orders

    # customers: inserts and updates, each with a fresh updated_at
    anchors = [previous, now, *later]
    customers = []
    for _ in range(rng.choice((0, 0, 1, 2))):
        key = data.unused_ids.pop()
        customers.append(
            {
                "customer_id": key,
                **_customer_attributes(rng, anchors),
                "updated_at": arrival("customers"),
            }
        )
    changes.appended["customers"] = customers
    for key in rng.sample(ids, rng.choice((1, 2, 3) if customers_only else (0, 1, 2, 3))):
        fresh = _customer_attributes(rng, anchors)
        columns = rng.sample(sorted(fresh), rng.randint(1, 3))
        changes.updates[key] = {
            **{c: fresh[c] for c in columns},
            "updated_at": arrival("customers"),
        }
    return changes


# -- engines --------------------------------------------------------------------------------


class Engine:
    """One chain's warehouse: the tables, and where revseg keeps its state."""

    name: str
    state_schema: str
    target: dict[str, Any]

    def load(self, data: Data) -> None:
        raise NotImplementedError

    def apply(self, changes: Changes) -> None:
        raise NotImplementedError

    def committed(self) -> dict[str, set[str]]:
        """Every segment's committed snapshot, from the state schema."""
        raise NotImplementedError


def _by_segment(rows: list[tuple[Any, ...]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for segment, entity_id in rows:
        out.setdefault(str(segment), set()).add(str(entity_id))
    return out


def _insert_sql(model: str, marker: str) -> str:
    columns = list(TYPES[model])
    names = ", ".join(f'"{c}"' for c in columns)
    return f'INSERT INTO "{model}" ({names}) VALUES ({", ".join(marker for _ in columns)})'


def _update_sql(values: dict[str, Value], marker: str) -> str:
    sets = ", ".join(f'"{c}" = {marker}' for c in values)
    return f'UPDATE "customers" SET {sets} WHERE "customer_id" = {marker}'


class DuckDBEngine(Engine):
    name = "duckdb"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state_schema = "revseg_state"
        self.target = {"type": "duckdb", "path": str(path)}
        #: while a revseg session holds the file, this process can only open it through that
        #: session's database (DuckDB refuses a second configuration of one file)
        self.shared: Any = None

    def connect(self, read_only: bool = False) -> Any:
        if self.shared is not None:
            return self.shared.cursor()
        return duckdb.connect(str(self.path), read_only=read_only)

    def load(self, data: Data) -> None:
        load_duckdb(data.world({}), Variant(), self.path)

    def apply(self, changes: Changes) -> None:
        with self.connect() as connection:
            for model, rows in changes.appended.items():
                if rows:
                    connection.executemany(
                        _insert_sql(model, "?"), [[r[c] for c in TYPES[model]] for r in rows]
                    )
            for key, values in changes.updates.items():
                connection.execute(_update_sql(values, "?"), [*values.values(), key])

    def committed(self) -> dict[str, set[str]]:
        with self.connect(read_only=True) as connection:
            query = f'SELECT "segment", "id" FROM "{self.state_schema}"."segment_members"'
            return _by_segment(connection.execute(query).fetchall())


class PostgresEngine(Engine):
    name = "postgres"

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self.connection = connection
        suffix = f"{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.schema = f"revseg_chain_{suffix}"
        self.state_schema = f"revseg_chain_state_{suffix}"
        self.target = {**POSTGRES_TARGET, "database": POSTGRES_DATABASE, "schema": self.schema}
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.schema)))

    def load(self, data: Data) -> None:
        load_postgres(data.world({}), Variant(), self.connection, self.schema)

    def apply(self, changes: Changes) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
            for model, rows in changes.appended.items():
                if rows:
                    cursor.executemany(
                        _insert_sql(model, "%s"), [[r[c] for c in TYPES[model]] for r in rows]
                    )
            for key, values in changes.updates.items():
                cursor.execute(_update_sql(values, "%s"), [*values.values(), key])

    def committed(self) -> dict[str, set[str]]:
        query = sql.SQL("SELECT segment, id FROM {}").format(
            sql.Identifier(self.state_schema, "segment_members")
        )
        return _by_segment(self.connection.execute(query).fetchall())

    def drop(self) -> None:
        for schema in (self.schema, self.state_schema):
            self.connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


@pytest.fixture(scope="module")
def postgres_connection() -> Iterator[psycopg.Connection[Any]]:
    try:
        connection = psycopg.connect(POSTGRES_CONNINFO, autocommit=True)
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL is unreachable ({POSTGRES_CONNINFO}): {error}")
    with connection:
        yield connection


# -- the project ----------------------------------------------------------------------------


class ChainTrees(gen.TreeGenerator):
    """gen's trees, with the entity's timestamp columns drawn more often (and compared with
    `{ago: D}` half the time), so attribute conditions move with time too."""

    def column_condition(self, model: str, column: str | None = None) -> Condition:
        if model == "customers" and column is None and self.rng.random() < 0.4:
            column = self.rng.choice(("signup_at", "updated_at"))
        return super().column_condition(model, column)


def draw_segments(plan: Plan, data: Data) -> dict[str, Condition]:
    """Helper segments, then segments that may reference them, each moving with time: the first
    reads the customers only (its runs skip or not on the customers' changes alone)."""
    rng = random.Random(f"chain-trees-{plan.seed}")
    generator = ChainTrees(rng, data.world({}), plan.as_ofs[0])
    trees: dict[str, Condition] = {}
    for index in range(HELPERS):
        name = f"helper_{index}"
        trees[name] = generator.condition(2)
        generator.segments.append(name)
    for index in range(MAINS):
        for _ in range(500):
            tree = generator.condition(rng.choice((3, 4)))
            text = yaml.safe_dump([tree, *(trees[name] for name in referenced(tree, trees))])
            if not any(word in text for word in ("within", "older_than", "ago", "followed_by")):
                continue  # does not move with time
            if index == 0 and any(word in text for word in ("event:", "aggregate:")):
                continue  # reads more than the customers
            break
        trees[f"seg_{index}"] = tree
    return trees


def models_yaml(plan: Plan) -> dict[str, Any]:
    orders: dict[str, Any] = {
        "table": "orders",
        "entity_key": "customer_id",
        "timestamp": "ordered_at",
    }
    if plan.orders_loaded_at:
        orders["loaded_at"] = "loaded_at"
    return {
        "customers": {
            "table": "customers",
            "primary_key": "customer_id",
            "updated_at": "updated_at",
            "lookback": plan.lookback["customers"],
        },
        "events": {
            "table": "events",
            "entity_key": "customer_id",
            "timestamp": "ts",
            "name": "event_name",
            "loaded_at": "loaded_at",
            "lookback": plan.lookback["events"],
        },
        "orders": {**orders, "lookback": plan.lookback["orders"]},
    }


def write_project(directory: Path, engine: Engine, plan: Plan, trees: dict[str, Condition]) -> None:
    project = {
        "name": "chain",
        "target": "dev",
        "targets": {"dev": engine.target},
        "state_schema": engine.state_schema,
        "entity": "customers",
        "full_refresh_every": "52w",
        "models": models_yaml(plan),
    }
    (directory / "revseg.yml").write_text(dump(project), encoding="utf-8")
    segments = directory / "segments"
    segments.mkdir()
    for name, tree in trees.items():
        (segments / f"{name}.yml").write_text(dump({"name": name, "where": tree}), encoding="utf-8")


def dump(document: Any) -> str:
    return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


# -- failure messages -----------------------------------------------------------------------


def referenced(tree: Condition, trees: dict[str, Condition]) -> list[str]:
    """Names of the segments `tree` references, transitively, in first-seen order."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if (
                isinstance(node.get("segment"), str)
                and node["segment"] in trees
                and node["segment"] not in found
            ):
                found.append(node["segment"])
                walk(trees[node["segment"]])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(tree)
    return found


def rows_of(data: Data, entity_id: str) -> str:
    lines = []
    for model, table in data.tables.items():
        for row in table.rows:
            if str(row[KEYS[model]]) == entity_id:
                lines.append(f"    {model}: {row}")
    return "\n".join(lines) or "    (no rows)"


def differences(sets: dict[str, set[str]], data: Data) -> str:
    """Which sets each differing id is in, then the rows of the first few differing ids."""
    everywhere = set.intersection(*sets.values())
    differing = sorted(
        {i for ids in sets.values() for i in ids} - everywhere, key=lambda i: (len(i), i)
    )
    lines = ["  members: " + ", ".join(f"{label} {len(ids)}" for label, ids in sets.items())]
    for entity_id in differing:
        inside = [label for label, ids in sets.items() if entity_id in ids]
        outside = [label for label in sets if label not in inside]
        lines.append(f"  id {entity_id}: in {', '.join(inside)}; not in {', '.join(outside)}")
    lines.extend(f"  rows of id {i}:\n{rows_of(data, i)}" for i in differing[:SHOWN_IDS])
    return "\n".join(lines)


def describe(
    engine: Engine,
    plan: Plan,
    step: int,
    name: str,
    trees: dict[str, Condition],
    mode: str,
    changes: Changes,
) -> str:
    previous = plan.as_ofs[step - 1].isoformat() if step else "-"
    helpers = "".join(
        f"segment {ref}:\n{dump(trees[ref])}" for ref in referenced(trees[name], trees)
    )
    return (
        f"{engine.name} chain {plan.seed}, step {step} ({mode}): as_of {previous} -> "
        f"{plan.as_ofs[step].isoformat()}, lookback {plan.lookback}, "
        f"orders loaded_at: {plan.orders_loaded_at}\n"
        f"this step: {changes.summary()}\n"
        f"{helpers}segment {name}:\n{dump(trees[name])}"
    )


# -- the chain ------------------------------------------------------------------------------


@dataclass
class ChainResult:
    modes: Counter[str] = field(default_factory=Counter)  # over steps 1.. (not the first run)
    steps: int = 0
    seconds: float = 0.0


def run_chain(engine: Engine, seed: int, directory: Path) -> ChainResult:
    from revseg.runner import Runner

    started = time.monotonic()
    plan = make_plan(seed)
    data = initial_data(plan)
    trees = draw_segments(plan, data)
    engine.load(data)
    write_project(directory, engine, plan, trees)
    runner = Runner(directory)
    result = ChainResult()
    with contextlib.ExitStack() as stack:
        # one chain in two runs its steps in one long-lived session, as `revseg run` does:
        # there each segment's last run is the one the session recorded, not read from state
        session = stack.enter_context(runner.session(plan.as_ofs[0])) if seed % 2 else None
        lock = None
        if session is not None:
            from revseg.state.lock import SegmentLock

            if isinstance(engine, DuckDBEngine):
                engine.shared = session.warehouse._conn  # noqa: SLF001 (the test shares the open database)
            lock = SegmentLock(session.store, "chain", datetime.utcnow)
            lock.acquire(list(trees), 30.0)
            stack.callback(lock.release)
        _steps(engine, seed, plan, data, trees, runner, session, lock, result)
    total = sum(result.modes.values())
    assert result.modes["incremental"] >= 2 / 3 * total, (
        f"{engine.name} chain {seed}: modes {dict(result.modes)}"
    )
    result.seconds = time.monotonic() - started
    print(
        f"{engine.name} chain {seed}: {result.steps + 1} runs, modes after the first {dict(result.modes)}, "
        f"{result.seconds:.1f}s"
    )
    return result


def _steps(engine: Engine, seed: int, plan: Any, data: Any, trees: dict[str, Any], runner: Any,
           session: Any, lock: Any, result: ChainResult) -> None:
    from revseg.runner.sync import SyncOptions

    for step in range(STEPS + 1):
        as_of = plan.as_ofs[step]
        changes = Changes() if step == 0 else draw_changes(plan, data, step)
        if step:
            engine.apply(changes)
            apply_to_reference(data, changes)
        # some steps run --full-refresh: it patches the stored membership the incremental
        # runs after it start from, so a wrong patch shows up at the next steps
        forced = step in full_refresh_steps(plan)
        try:
            if session is None:
                report = runner.sync(as_of=as_of, full_refresh=forced)
            else:
                report = session.sync(list(trees), None, SyncOptions(as_of, full_refresh=forced), lock=lock)
        except Exception as error:  # noqa: BLE001 (show where the chain was)
            pytest.fail(
                f"{engine.name} chain {seed}, step {step}: sync raised {error!r}", pytrace=False
            )
        modes = {segment.name: segment.mode for segment in report.segments}
        assert set(modes) == set(trees), modes
        world = data.world(trees)
        committed = engine.committed()
        full = full_memberships(runner, list(trees), as_of)
        # Runner.preview itself validates the whole project per call: one segment a step
        previewed = list(trees)[step % len(trees)]
        failures = []
        for name, tree in trees.items():
            sets = {
                "committed": committed.get(name, set()),
                "full": full[name],
                "reference": evaluate(tree, world, as_of),
            }
            if name == previewed:
                sets["preview"] = {
                    member.id for member in runner.preview(name, as_of=as_of).members
                }
            if len({frozenset(ids) for ids in sets.values()}) > 1:
                context = describe(engine, plan, step, name, trees, modes[name], changes)
                failures.append(context + differences(sets, data))
        if failures:
            pytest.fail(
                f"membership differs ({len(failures)} segment(s)):\n" + "\n\n".join(failures),
                pytrace=False,
            )
        where = f"{engine.name} chain {seed}, step {step}: modes {modes}"
        if step == 0:
            assert set(modes.values()) == {"full"}, where
            continue
        if forced:
            assert set(modes.values()) == {"full"}, where
            continue
        assert "full" not in modes.values(), (
            f"{where}: full_refresh_every is 52w, the definitions did not change"
        )
        if step == plan.idle:
            assert changes.empty() and as_of == plan.as_ofs[step - 1]
            assert set(modes.values()) == {"skipped"}, (
                f"{where}: no data change and as_of unchanged"
            )
        result.modes.update(modes.values())
        result.steps += 1


def full_refresh_steps(plan: Any) -> set[int]:
    """Steps run with ``full_refresh``: every fifth from the third on, never the idle one."""
    return {step for step in range(3, STEPS + 1, 5) if step != plan.idle}


def full_memberships(runner: Any, names: list[str], as_of: datetime) -> dict[str, set[str]]:
    """Each segment evaluated in full at as_of: the query ``Runner.preview`` runs, over one
    validated session (a preview validates the whole project each time)."""
    from sqlglot import exp

    from revseg.compile.membership import ID, membership_query

    out = {}
    with runner.session(as_of) as session:
        for name in names:
            query = membership_query(session.project, session.catalog, name, as_of)
            ids = exp.select(exp.column(ID, quoted=True)).from_(query.subquery("m"))
            out[name] = {str(row[0]) for row in session.warehouse.fetchall(ids)}
    return out


def apply_to_reference(data: Data, changes: Changes) -> None:
    for model, rows in changes.appended.items():
        data.rows(model).extend(dict(row) for row in rows)
    by_key = {row["customer_id"]: row for row in data.rows("customers")}
    for key, values in changes.updates.items():
        by_key[key].update(values)


@pytest.mark.duckdb
@pytest.mark.parametrize("seed", range(CHAINS))
def test_duckdb_incremental_chain(seed: int, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    run_chain(DuckDBEngine(tmp_path / "warehouse.duckdb"), seed, project)


@pytest.mark.postgres
@pytest.mark.parametrize("seed", range(CHAINS, 2 * CHAINS))
def test_postgres_incremental_chain(
    postgres_connection: psycopg.Connection[Any], seed: int, tmp_path: Path
) -> None:
    engine = PostgresEngine(postgres_connection)
    try:
        run_chain(engine, seed, tmp_path)
    finally:
        engine.drop()
