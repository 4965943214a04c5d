"""Focused regressions for incremental runs (SPEC 4), found by tests/test_incremental_chain.py:
an incremental run (or a skip) must commit exactly the membership a full run gives.

1. ``{ago: D}`` compared with ``>=``, ``<``, ``=``, ``!=``, ``in``, ``not_in`` or ``between``
   flips just *after* as_of passes ``column + D``, so an entity whose ``column + D`` is exactly
   the previous as_of changes between the previous run and this one. The candidates took
   ``column`` in ``(prev - D, now - D]`` and missed it.
2. A run was skipped when the models' row counts and latest change were as at the previous
   run, so an entity updated in place with an ``updated_at`` within ``lookback`` but below the
   latest one (rows may arrive out of order within ``lookback``) kept its stale membership.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import write_files

from revseg.runner import Runner

pytestmark = pytest.mark.duckdb

T = datetime(2026, 1, 1, 12, 0, 0)
EDGE = T - timedelta(minutes=30)  # exactly as_of - 30m at the first run

DATA = f"""
CREATE TABLE customers (customer_id INTEGER, country VARCHAR, signup_at TIMESTAMP, updated_at TIMESTAMP);
INSERT INTO customers VALUES (1, 'DE', '{EDGE}', '{T - timedelta(days=3)}'),
                             (2, 'DE', '{T - timedelta(days=9)}', '{T}');
CREATE TABLE events (customer_id INTEGER, event_name VARCHAR, ts TIMESTAMP, loaded_at TIMESTAMP);
INSERT INTO events VALUES (1, 'view', '{EDGE}', '{T - timedelta(days=3)}');
CREATE TABLE orders (customer_id INTEGER, ordered_at TIMESTAMP, amount DOUBLE, loaded_at TIMESTAMP);
INSERT INTO orders VALUES (1, '{EDGE}', 10, '{T - timedelta(days=3)}');
"""

CONFIG: dict[str, Any] = {
    "name": "incremental",
    "target": "dev",
    "targets": {"dev": {"type": "duckdb", "path": "wh.duckdb"}},
    "entity": "customers",
    "full_refresh_every": "52w",
    "models": {
        "customers": {
            "table": "customers",
            "primary_key": "customer_id",
            "updated_at": "updated_at",
        },
        "events": {
            "table": "events",
            "entity_key": "customer_id",
            "timestamp": "ts",
            "name": "event_name",
            "loaded_at": "loaded_at",
        },
        "orders": {
            "table": "orders",
            "entity_key": "customer_id",
            "timestamp": "ordered_at",
            "loaded_at": "loaded_at",
        },
    },
}

AGO = {"ago": "30m"}
# Each holds for customer 1 at T and not an hour later, or the other way round.
EDGE_CONDITIONS: dict[str, dict[str, Any]] = {
    ">=": {"column": "signup_at", "op": ">=", "value": AGO},
    "<": {"column": "signup_at", "op": "<", "value": AGO},
    "=": {"column": "signup_at", "op": "=", "value": AGO},
    "!=": {"column": "signup_at", "op": "!=", "value": AGO},
    "in": {"column": "signup_at", "op": "in", "value": [AGO]},
    "not_in": {"column": "signup_at", "op": "not_in", "value": [AGO]},
    "between": {"column": "signup_at", "op": "between", "value": [AGO, {"ago": "1m"}]},
    "event_filter": {"event": "view", "where": [{"column": "ts", "op": ">=", "value": AGO}]},
    "aggregate": {
        "aggregate": "max",
        "model": "orders",
        "column": "ordered_at",
        "op": ">=",
        "value": AGO,
    },
}


def make(tmp_path: Path, segments: dict[str, dict[str, Any]]) -> Runner:
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as connection:
        connection.execute(DATA)
    files: dict[str, Any] = {"revseg.yml": CONFIG}
    files.update(
        {f"segments/{name}.yml": {"name": name, "where": where} for name, where in segments.items()}
    )
    write_files(tmp_path, files)
    return Runner(tmp_path)


def committed(tmp_path: Path, segment: str) -> set[str]:
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as connection:
        rows = connection.execute(
            'SELECT id FROM "revseg"."segment_members" WHERE segment = ?', [segment]
        ).fetchall()
    return {str(row[0]) for row in rows}


def check(runner: Runner, tmp_path: Path, as_of: datetime, expected_mode: str) -> dict[str, str]:
    """Sync at as_of; every segment's committed membership must equal the full one."""
    modes = {s.name: s.mode for s in runner.sync(as_of=as_of).segments}
    for name in runner.project.segments:
        full = {m.id for m in runner.preview(name, as_of=as_of).members}
        assert committed(tmp_path, name) == full, f"{name} at {as_of} ({modes[name]})"
        assert modes[name] == expected_mode, f"{name} at {as_of}: {modes}"
    return modes


@pytest.mark.parametrize("case", EDGE_CONDITIONS)
def test_ago_edge_at_the_previous_as_of(tmp_path: Path, case: str) -> None:
    runner = make(tmp_path, {"edge": EDGE_CONDITIONS[case]})
    check(runner, tmp_path, T, "full")
    before = committed(tmp_path, "edge")
    check(runner, tmp_path, T, "skipped")  # as_of did not move: nothing crossed a boundary
    check(runner, tmp_path, T + timedelta(hours=1), "incremental")
    assert committed(tmp_path, "edge") != before  # the condition did flip for customer 1


def test_a_new_default_entity_forces_a_full_run(tmp_path: Path) -> None:
    """A segment without ``entity:`` takes the project's: when that changes, the segment reads
    other entities, though neither its file nor any model changed. The stored membership (keys
    of the old entity) must not be patched incrementally."""
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as connection:
        connection.execute("CREATE TABLE accounts (customer_id INTEGER, country VARCHAR, updated_at TIMESTAMP)")
        connection.execute("INSERT INTO accounts VALUES (7, 'DE', ?), (8, 'DE', ?)",
                           [T - timedelta(days=3), T - timedelta(days=3)])
    config = {**CONFIG, "models": {**CONFIG["models"], "accounts": {
        "table": "accounts", "primary_key": "customer_id", "updated_at": "updated_at"}}}
    make(tmp_path, {"germans": {"column": "country", "op": "=", "value": "DE"}})
    write_files(tmp_path, {"revseg.yml": config})
    runner = Runner(tmp_path)
    check(runner, tmp_path, T, "full")
    assert committed(tmp_path, "germans") == {"1", "2"}
    write_files(tmp_path, {"revseg.yml": {**config, "entity": "accounts"}})
    check(Runner(tmp_path), tmp_path, T + timedelta(minutes=5), "full")
    assert committed(tmp_path, "germans") == {"7", "8"}


def test_related_keys_of_another_type_than_the_entity_key(tmp_path: Path) -> None:
    """Events keyed by text (as Segment's user_id often is) of an integer entity key: DuckDB
    joins them with ``=``, so a full run works; the incremental run cut every scan to its
    candidates with ``IN``, which DuckDB refuses across types (exit 3)."""
    runner = make(tmp_path, {
        "viewers": {"event": "view", "within": "7d"},
        "buyers": {"aggregate": "sum", "model": "orders", "column": "amount", "op": ">=", "value": 10},
    })
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as connection:
        connection.execute("ALTER TABLE events ALTER customer_id TYPE VARCHAR")
        connection.execute("ALTER TABLE orders ALTER customer_id TYPE VARCHAR")
    check(runner, tmp_path, T, "full")
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as connection:
        connection.execute("INSERT INTO events VALUES ('2', 'view', ?, ?)", [T, T])
        connection.execute("INSERT INTO orders VALUES ('2', ?, 20, ?)", [T, T])
    check(runner, tmp_path, T + timedelta(minutes=5), "incremental")
    assert committed(tmp_path, "viewers") == committed(tmp_path, "buyers") == {"1", "2"}


def update_customer(tmp_path: Path, key: int, country: str, updated_at: datetime) -> None:
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as connection:
        connection.execute(
            "UPDATE customers SET country = ?, updated_at = ? WHERE customer_id = ?",
            [country, updated_at, key],
        )


@pytest.mark.parametrize(
    "advance", [timedelta(0), timedelta(minutes=5)], ids=["same_as_of", "later_as_of"]
)
def test_update_below_the_latest_updated_at_is_seen(tmp_path: Path, advance: timedelta) -> None:
    runner = make(tmp_path, {"germans": {"column": "country", "op": "=", "value": "DE"}})
    check(runner, tmp_path, T, "full")
    assert committed(tmp_path, "germans") == {"1", "2"}
    # Customer 1 leaves Germany; the change is dated a minute before the previous as_of (and
    # before customer 2's updated_at, the latest): late, but within the 10m lookback.
    update_customer(tmp_path, 1, "FR", T - timedelta(minutes=1))
    check(runner, tmp_path, T + advance, "incremental")
    assert committed(tmp_path, "germans") == {"2"}
    check(runner, tmp_path, T + advance, "skipped")  # and nothing changed since


def test_updates_within_lookback_keep_being_seen(tmp_path: Path) -> None:
    """A row updated twice inside the lookback window, the latest change staying the max."""
    runner = make(tmp_path, {"germans": {"column": "country", "op": "=", "value": "DE"}})
    check(runner, tmp_path, T, "full")
    update_customer(tmp_path, 1, "FR", T - timedelta(minutes=3))
    check(runner, tmp_path, T, "incremental")
    update_customer(tmp_path, 1, "DE", T - timedelta(minutes=2))
    check(runner, tmp_path, T + timedelta(minutes=1), "incremental")
    assert committed(tmp_path, "germans") == {"1", "2"}
    check(runner, tmp_path, T + timedelta(minutes=1), "skipped")


@pytest.mark.parametrize(
    "advance", [timedelta(0), timedelta(minutes=5)], ids=["same_as_of", "later_as_of"]
)
@pytest.mark.parametrize("replaced", [False, True], ids=["deleted", "deleted_and_one_inserted"])
def test_deleted_entity_row_leaves(tmp_path: Path, advance: timedelta, replaced: bool) -> None:
    """A deleted customer carries no watermark: the incremental run must still drop it, also
    when a new customer keeps the row count where it was."""
    runner = make(tmp_path, {"germans": {"column": "country", "op": "=", "value": "DE"}})
    check(runner, tmp_path, T, "full")
    assert committed(tmp_path, "germans") == {"1", "2"}
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as connection:
        connection.execute("DELETE FROM customers WHERE customer_id = 2")
        if replaced:
            connection.execute("INSERT INTO customers VALUES (3, 'FR', ?, ?)", [T, T - timedelta(minutes=1)])
    check(runner, tmp_path, T + advance, "incremental")
    assert committed(tmp_path, "germans") == {"1"}
    check(runner, tmp_path, T + advance, "skipped")


def test_state_written_by_the_previous_schema_version_stays_incremental(tmp_path: Path) -> None:
    """Migration 6 adds segment_state and sync_state (what every run reads instead of scanning
    the run history) and fills them from the history: a project synced before the upgrade
    goes on incrementally, neither starting over nor skipping what changed."""
    runner = make(tmp_path, {"germans": {"column": "country", "op": "=", "value": "DE"}})
    check(runner, tmp_path, T, "full")
    check(runner, tmp_path, T + timedelta(minutes=5), "skipped")
    check(runner, tmp_path, T + timedelta(hours=1), "skipped")
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as connection:  # back to version 5
        connection.execute('DROP TABLE "revseg"."segment_state"')
        connection.execute('DROP TABLE "revseg"."sync_state"')
        connection.execute('DELETE FROM "revseg"."schema_version" WHERE version = 6')
    update_customer(tmp_path, 1, "FR", T + timedelta(hours=1))
    check(runner, tmp_path, T + timedelta(hours=2), "incremental")
    assert committed(tmp_path, "germans") == {"2"}
    check(runner, tmp_path, T + timedelta(hours=2), "skipped")
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as connection:
        state = connection.execute(
            'SELECT as_of, last_full_as_of, members FROM "revseg"."segment_state"').fetchall()
    assert state == [(T + timedelta(hours=2), T, 1)]


@pytest.mark.parametrize("change", ["leaves", "enters"])
def test_full_refresh_patches_the_stored_membership(tmp_path: Path, change: str) -> None:
    """A full run writes only the stored rows that differ (tests/test_incremental_chain.py
    covers it along chains); here a member leaves, or a customer enters, between two runs and
    the second is a --full-refresh: the commit, and the incremental runs after it, must see it."""
    runner = make(tmp_path, {"germans": {"column": "country", "op": "=", "value": "DE"}})
    check(runner, tmp_path, T, "full")
    if change == "leaves":
        update_customer(tmp_path, 2, "FR", T + timedelta(minutes=1))
        expected = {"1"}
    else:
        with duckdb.connect(str(tmp_path / "wh.duckdb")) as connection:
            connection.execute("INSERT INTO customers VALUES (3, 'DE', ?, ?)", [T, T + timedelta(minutes=1)])
        expected = {"1", "2", "3"}
    as_of = T + timedelta(minutes=5)
    report = runner.sync(as_of=as_of, full_refresh=True)
    assert [s.mode for s in report.segments] == ["full"]
    assert committed(tmp_path, "germans") == expected
    check(runner, tmp_path, as_of + timedelta(minutes=1), "skipped")
    update_customer(tmp_path, 1, "FR", as_of + timedelta(minutes=2))  # the stored rows were right
    check(runner, tmp_path, as_of + timedelta(minutes=3), "incremental")
    assert committed(tmp_path, "germans") == expected - {"1"}


def sent(path: Path) -> list[tuple[str, str, str | None]]:
    """(op, id, country) of every record the file destination holds, in order."""
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [(r["op"], r["id"], (r.get("traits") or {}).get("country")) for r in records]


def test_full_refresh_sends_only_what_changed_and_catches_up_a_sync_that_is_behind(tmp_path: Path) -> None:
    """A full run patches the stored membership with the rows that differ; a sync that holds
    exactly the previous membership gets just those rows, and one whose last run failed is
    diffed against everything it holds (SPEC 4: the delta is the difference from what the
    destination holds, whichever way it is computed)."""
    runner = make(tmp_path, {"germans": {"column": "country", "op": "=", "value": "DE"}})
    segment = tmp_path / "segments" / "germans.yml"
    segment.write_text(segment.read_text() + (
        "traits: {country: country, signup_at: signup_at}\n"
        "syncs: [{destination: out, mode: mirror}]\n"))
    write_files(tmp_path, {"destinations/out.yml": {"name": "out", "type": "file", "options": {"path": "out.jsonl"}}})
    runner = Runner(tmp_path)
    out = tmp_path / "out.jsonl"
    check(runner, tmp_path, T, "full")
    assert sorted(sent(out)) == [("add", "1", "DE"), ("add", "2", "DE")]

    # a trait changes (signup_at), a member leaves, a customer enters
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as connection:
        connection.execute("UPDATE customers SET signup_at = ?, updated_at = ? WHERE customer_id = 1",
                           [T, T + timedelta(minutes=1)])
        connection.execute("INSERT INTO customers VALUES (3, 'DE', ?, ?)", [T, T + timedelta(minutes=1)])
    update_customer(tmp_path, 2, "FR", T + timedelta(minutes=1))
    out.unlink()
    report = runner.sync(as_of=T + timedelta(minutes=5), full_refresh=True)
    assert [s.mode for s in report.segments] == ["full"] and report.syncs[0].error is None
    assert sorted(sent(out)) == [("add", "3", "DE"), ("remove", "2", None), ("update", "1", "DE")]

    # the next full run finds the destination unreachable: nothing is delivered ...
    update_customer(tmp_path, 3, "FR", T + timedelta(minutes=6))
    out.unlink()
    out.mkdir()
    report = runner.sync(as_of=T + timedelta(minutes=10), full_refresh=True)
    assert report.syncs[0].error is not None
    out.rmdir()
    # ... so the one after it, with no new change, still owes it the removal of 3
    report = runner.sync(as_of=T + timedelta(minutes=15), full_refresh=True)
    assert report.syncs[0].error is None
    assert sent(out) == [("remove", "3", None)]
    assert committed(tmp_path, "germans") == {"1"}


def test_one_probe_query_per_run_and_each_segment_judged_on_what_it_reads(tmp_path: Path) -> None:
    """A resident session's run over several segments that finds nothing new is one query
    (the probe), not two per segment. The probe is shared, but each segment is judged on the
    models it reads: a new order makes the segment that reads orders run and lets the one that
    reads only events and customers skip."""
    from revseg.runner.sync import SyncOptions
    from revseg.state.lock import SegmentLock
    from revseg.warehouse.duckdb import DuckDBWarehouse

    names = ["germans", "buyers", "viewers"]
    runner = make(tmp_path, {
        "germans": {"column": "country", "op": "=", "value": "DE"},
        "buyers": {"aggregate": "count", "model": "orders", "op": ">=", "value": 1},
        "viewers": {"event": "view", "within": "7d"},
    })
    statements: list[str] = []
    run = DuckDBWarehouse._run

    def counted(self: DuckDBWarehouse, expression: Any, params: Any = None) -> Any:
        statements.append(expression if isinstance(expression, str) else self.render(expression))
        return run(self, expression, params)

    with runner.session(T) as session:
        lock = SegmentLock(session.store, "test", datetime.utcnow)
        lock.acquire(names, 5.0)
        try:
            def sync(as_of: datetime) -> dict[str, str]:
                report = session.sync(names, None, SyncOptions(as_of), None, None, lock)
                return {s.name: s.mode for s in report.segments}

            assert set(sync(T).values()) == {"full"}
            statements.clear()
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(DuckDBWarehouse, "_run", counted)
                assert sync(T) == dict.fromkeys(names, "skipped")
            assert len(statements) == 1, statements
            session.warehouse.execute("INSERT INTO orders VALUES (2, '2026-01-01 12:00:00', 5, '2026-01-01 12:00:00')")
            assert sync(T) == {"germans": "skipped", "buyers": "incremental", "viewers": "skipped"}
            assert sync(T) == dict.fromkeys(names, "skipped")
        finally:
            lock.release()
    for name in names:
        assert committed(tmp_path, name) == {m.id for m in runner.preview(name, as_of=T).members}
    assert committed(tmp_path, "buyers") == {"1", "2"}


def test_a_deleted_order_makes_its_member_leave_at_the_next_run(tmp_path: Path) -> None:
    """A deleted row carries no watermark: the next run sees the model shrink where nothing
    arrived, evaluates in full, and the member that row qualified leaves (SPEC 4: an
    incremental run gives what a full run gives). Appending alone stays incremental."""
    runner = make(tmp_path, {"buyers": {"aggregate": "count", "model": "orders", "op": ">=", "value": 1}})
    check(runner, tmp_path, T, "full")
    assert committed(tmp_path, "buyers") == {"1"}
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as connection:
        connection.execute("INSERT INTO orders VALUES (2, ?, 5, ?)", [T, T + timedelta(seconds=30)])
    check(runner, tmp_path, T + timedelta(minutes=1), "incremental")
    assert committed(tmp_path, "buyers") == {"1", "2"}
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as connection:
        connection.execute("DELETE FROM orders WHERE customer_id = 1")  # loaded three days ago
    report = runner.sync(as_of=T + timedelta(minutes=2))
    assert [s.mode for s in report.segments] == ["full"]
    assert committed(tmp_path, "buyers") == {"2"}
    check(runner, tmp_path, T + timedelta(minutes=3), "skipped")
