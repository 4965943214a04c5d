"""Two runs of one project never interleave on a segment (SPEC 4): on PostgreSQL the lock
row in the state schema makes the second run wait (or fail with a clear message), a lock left
by a SIGKILLed run does not block the next one; on DuckDB the second process waits for the
database file (one writer process at a time) or fails clearly when ``lock_timeout`` is short.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from syncproject import (
    REVSEG,
    T0,
    cli_env,
    generate,
    iso,
    members,
    seed,
    shop_files,
    sync,
    sync_report,
    webhook,
    write_files,
)

from revseg.errors import LockError
from revseg.runner import Runner
from revseg.sandbox.webhook import WebhookReceiver

CONNINFO = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=5"
VIEWS_AT = T0 - timedelta(hours=1)
SLOW_S = 0.12  # per webhook request: ten batches make a run last over a second


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(delay=SLOW_S) as running:
        yield running


@pytest.fixture
def pg() -> Iterator[psycopg.Connection[Any]]:
    try:
        connection = psycopg.connect(CONNINFO, autocommit=True)
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL is unreachable ({CONNINFO}): {error}")
    with connection:
        yield connection


@pytest.fixture
def pg_project(tmp_path: Path, pg: psycopg.Connection[Any], receiver: WebhookReceiver) -> Iterator[Path]:
    """The shop project on PostgreSQL, in a schema of its own (state in another), dropped after."""
    schema = f"revseg_lock_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    state = f"{schema}_state"
    pg.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        with pg.cursor() as cursor:
            cursor.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            cursor.execute("CREATE TABLE customers (customer_id INTEGER, email TEXT, first_name TEXT,"
                           " country TEXT, lifetime_value DOUBLE PRECISION, updated_at TIMESTAMP)")
            cursor.execute("CREATE TABLE events (customer_id INTEGER, event_name TEXT, ts TIMESTAMP)")
            cursor.execute("CREATE TABLE orders (customer_id INTEGER, ordered_at TIMESTAMP,"
                           " amount DOUBLE PRECISION)")
            data = generate(100, seed=3)
            cursor.executemany("INSERT INTO customers VALUES (%s, %s, %s, %s, 1000.0, %s)",
                               [(c[0], c[1], c[2], c[3], c[5]) for c in data["customers"]])
            cursor.executemany("INSERT INTO events VALUES (%s, 'viewed', %s)",
                               [(c[0], VIEWS_AT) for c in data["customers"]])
            cursor.execute("RESET search_path")
        target = {"type": "postgres", "host": "127.0.0.1", "port": 5432, "user": "postgres",
                  "database": "test", "schema": schema, "connect_timeout": 5}
        files = shop_files(syncs={"active_vip": [{"destination": "hooks", "batch_size": 10}]},
                           destinations={"hooks": webhook(receiver.url)}, target=target)
        files["revseg.yml"]["state_schema"] = state
        yield write_files(tmp_path, files)
    finally:
        for name in (schema, state):
            pg.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


_started: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _reap() -> Iterator[None]:
    """A failed test leaves no sync process behind (nor its pipes)."""
    yield
    while _started:
        process = _started.pop()
        if process.poll() is None:
            process.kill()
        process.communicate()


def start_sync(project: Path, as_of: datetime) -> subprocess.Popen[str]:
    process = subprocess.Popen([*REVSEG, "sync", "--json", "--as-of", iso(as_of), "--project-dir", str(project)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    _started.append(process)
    return process


def finish(process: subprocess.Popen[str]) -> tuple[int, dict[str, Any], str, float]:
    out, err = process.communicate(timeout=120)
    return process.returncode, json.loads(out) if out.strip() else {}, err, time.monotonic()


def wait_for(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def state_rows(pg: psycopg.Connection[Any], project: Path, query: str) -> list[tuple[Any, ...]]:
    state = str(_yaml(project)["state_schema"])
    try:
        return pg.execute(sql.SQL(query).format(state=sql.Identifier(state))).fetchall()
    except psycopg.errors.UndefinedTable:
        return []


def _yaml(project: Path) -> dict[str, Any]:
    import yaml

    return dict(yaml.safe_load((project / "revseg.yml").read_text()))


def lock_holder(pg: psycopg.Connection[Any], project: Path) -> tuple[Any, ...] | None:
    rows = state_rows(pg, project, "SELECT run_id, owner, expires_at FROM {state}.locks")
    return rows[0] if rows else None


# -- PostgreSQL --------------------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.http
def test_second_run_waits_for_the_lock_and_does_not_interleave(
    pg_project: Path, pg: psycopg.Connection[Any], receiver: WebhookReceiver
) -> None:
    first = start_sync(pg_project, T0)
    wait_for(lambda: receiver.deliveries, "the first run to deliver")
    assert lock_holder(pg, pg_project) is not None
    # new members the first run cannot see (it staged before delivering): the second must send them
    schema = _yaml(pg_project)["targets"]["dev"]["schema"]
    with pg.cursor() as cursor:
        cursor.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        cursor.executemany("INSERT INTO customers VALUES (%s, %s, 'Late', 'US', 1000.0, %s)",
                           [(i, f"late{i}@example.com", T0) for i in range(500, 505)])
        cursor.executemany("INSERT INTO events VALUES (%s, 'viewed', %s)", [(i, VIEWS_AT) for i in range(500, 505)])
        cursor.execute("RESET search_path")
    second = start_sync(pg_project, T0)
    assert first.poll() is None  # the second run starts while the first holds the lock
    code_1, report_1, err_1, done_1 = finish(first)
    code_2, report_2, err_2, done_2 = finish(second)
    assert (code_1, code_2) == (0, 0), err_1 + err_2
    assert done_2 >= done_1
    assert sync_report(report_1, "active_vip", "hooks")["added"] == 100
    assert sync_report(report_2, "active_vip", "hooks")["added"] == 5
    # the runs did not interleave: every delivery of the second comes after the first's last
    runs = [d.json()["run_id"] for d in receiver.deliveries]
    assert runs == sorted(runs, key=[report_1["run_id"], report_2["run_id"]].index)
    assert runs.count(report_2["run_id"]) == 1
    started = dict(state_rows(pg, pg_project, "SELECT run_id, started_at FROM {state}.runs"))
    finished = dict(state_rows(pg, pg_project, "SELECT run_id, finished_at FROM {state}.runs"))
    assert started[report_2["run_id"]] >= finished[report_1["run_id"]]
    assert lock_holder(pg, pg_project) is None  # released
    assert receiver.audience == members(pg_project, "active_vip", T0)


@pytest.mark.postgres
@pytest.mark.http
def test_a_held_lock_makes_the_next_run_fail_clearly_after_its_wait(
    pg_project: Path, pg: psycopg.Connection[Any], receiver: WebhookReceiver
) -> None:
    sync(pg_project, T0)
    sent = len(receiver.deliveries)
    locks = state_rows(pg, pg_project, "SELECT 1 FROM {state}.schema_version")  # the state exists
    assert locks
    state = _yaml(pg_project)["state_schema"]

    def hold(owner: str, expires: timedelta) -> None:
        pg.execute(sql.SQL("DELETE FROM {}.locks").format(sql.Identifier(state)))
        pg.execute(sql.SQL("INSERT INTO {}.locks VALUES ('active_vip', 'r_other', %s, %s)").format(
            sql.Identifier(state)), [owner, datetime.utcnow() + expires])

    # a live run of this host (this test process holds it), then a live lease from elsewhere
    for owner in (f"{socket.gethostname()}:{os.getpid()}", "another-host:4242"):
        hold(owner, timedelta(seconds=60))
        started = time.monotonic()
        with pytest.raises(LockError) as info:
            Runner(pg_project).sync(as_of=T0 + timedelta(hours=1), lock_wait_seconds=1.0)
        assert 1.0 <= time.monotonic() - started < 10
        message = str(info.value)
        assert "segment 'active_vip' is locked by run r_other" in message and owner in message
        assert "another revseg run is working on it" in message
        assert len(receiver.deliveries) == sent
    # an expired lease from elsewhere is taken over at once
    hold("another-host:4242", -timedelta(seconds=1))
    started = time.monotonic()
    report = Runner(pg_project).sync(as_of=T0 + timedelta(days=1), lock_wait_seconds=30)
    assert report.status == "success" and time.monotonic() - started < 15
    assert lock_holder(pg, pg_project) is None


@pytest.mark.postgres
@pytest.mark.http
def test_a_lock_left_by_a_killed_run_does_not_block_the_next(
    pg_project: Path, pg: psycopg.Connection[Any], receiver: WebhookReceiver
) -> None:
    first = start_sync(pg_project, T0)
    wait_for(lambda: len(receiver.deliveries) >= 3, "the first run to deliver")
    held = lock_holder(pg, pg_project)
    assert held is not None and held[1].endswith(f":{first.pid}")
    first.kill()
    first.communicate()
    assert lock_holder(pg, pg_project) == held  # left behind, lease still running
    started = time.monotonic()
    report = sync(pg_project, T0)
    assert time.monotonic() - started < 20  # far less than the 60 s lease
    assert report["status"] == "success" and lock_holder(pg, pg_project) is None
    assert receiver.audience == members(pg_project, "active_vip", T0)


@pytest.mark.postgres
@pytest.mark.http
def test_first_runs_at_once_create_the_state_once(
    pg_project: Path, pg: psycopg.Connection[Any], receiver: WebhookReceiver
) -> None:
    """Runs started together on a fresh state schema: one creates and migrates it while the
    others wait (concurrent CREATE TABLE IF NOT EXISTS failed all but one with exit 3 on
    PostgreSQL's catalog), then the segment lock orders their deliveries."""
    assert state_rows(pg, pg_project, "SELECT 1 FROM {state}.schema_version") == []
    done = [finish(p) for p in [start_sync(pg_project, T0) for _ in range(3)]]
    assert [code for code, _report, _err, _ in done] == [0, 0, 0], "".join(err for _c, _r, err, _ in done)
    added = [sync_report(report, "active_vip", "hooks")["added"] for _code, report, _err, _ in done]
    assert sorted(added) == [0, 0, 100]
    versions = state_rows(pg, pg_project, "SELECT version FROM {state}.schema_version ORDER BY version")
    assert [v for (v,) in versions] == list(range(1, len(versions) + 1))  # each migration once
    assert receiver.audience == members(pg_project, "active_vip", T0)


# -- DuckDB: one writer process per file --------------------------------------------------
@pytest.fixture
def duck_project(tmp_path: Path, receiver: WebhookReceiver) -> Path:
    files = shop_files(syncs={"active_vip": [{"destination": "hooks", "batch_size": 10}]},
                       destinations={"hooks": webhook(receiver.url)})
    write_files(tmp_path, files)
    seed(tmp_path / "warehouse.duckdb", 100, vip_views_at=VIEWS_AT)
    return tmp_path


@pytest.mark.duckdb
@pytest.mark.http
def test_duckdb_second_process_waits_for_the_file_then_succeeds(
    duck_project: Path, receiver: WebhookReceiver
) -> None:
    first = start_sync(duck_project, T0)
    wait_for(lambda: receiver.deliveries, "the first run to deliver")
    second = start_sync(duck_project, T0 + timedelta(minutes=1))
    assert first.poll() is None  # the second process starts while the first has the file
    code_1, report_1, err_1, done_1 = finish(first)
    code_2, report_2, err_2, done_2 = finish(second)
    assert (code_1, code_2) == (0, 0), err_1 + err_2
    assert done_2 >= done_1
    assert sync_report(report_1, "active_vip", "hooks")["added"] == len(receiver.audience) == 100
    assert {d.json()["run_id"] for d in receiver.deliveries} == {report_1["run_id"]}
    assert receiver.audience == members(duck_project, "active_vip", T0 + timedelta(minutes=1))


@pytest.mark.duckdb
@pytest.mark.http
def test_duckdb_short_lock_timeout_fails_with_a_clear_message(
    duck_project: Path, receiver: WebhookReceiver
) -> None:
    settings = _yaml(duck_project)
    settings["targets"]["dev"]["lock_timeout"] = 0.5
    write_files(duck_project, {"revseg.yml": settings})
    receiver.delay = 0.4  # the first run holds the file for about four seconds
    first = start_sync(duck_project, T0)
    wait_for(lambda: receiver.deliveries, "the first run to deliver")
    started = time.monotonic()
    second = start_sync(duck_project, T0)
    code_2, report_2, err_2, _ = finish(second)
    assert first.poll() is None, "the first run ended before the second gave up: no contention"
    assert code_2 == 1 and report_2 == {}, err_2
    assert "is in use by another process" in err_2 and "warehouse.duckdb" in err_2
    assert time.monotonic() - started < 10
    code_1, report_1, err_1, _ = finish(first)
    assert code_1 == 0, err_1
    assert {d.json()["run_id"] for d in receiver.deliveries} == {report_1["run_id"]}
    assert receiver.audience == members(duck_project, "active_vip", T0)


def test_a_live_run_keeps_its_lease_while_it_waits(pg_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lease is renewed by a heartbeat of its own, not only between batches: a run whose
    batch waits on a slow API (or whose evaluation takes long) for longer than the lease still
    holds its lock, and another run cannot take the segment over (SPEC 4: runs never interleave)."""
    from revseg.state import lock as lock_module

    monkeypatch.setattr(lock_module, "LEASE", timedelta(seconds=1))
    monkeypatch.setattr(lock_module, "HEARTBEAT", timedelta(seconds=0.2))
    runner = Runner(pg_project)
    with runner.session(VIEWS_AT) as first, runner.session(VIEWS_AT) as second:
        held = lock_module.SegmentLock(first.store, "r-first", datetime.utcnow)
        held.acquire(["active_vip"], wait_seconds=0)
        try:
            time.sleep(2.5)  # the run waits on an API, renewing nothing itself
            other = lock_module.SegmentLock(second.store, "r-second", datetime.utcnow)
            with pytest.raises(LockError, match="locked by run r-first"):
                other.acquire(["active_vip"], wait_seconds=0)
        finally:
            held.release()
        other.acquire(["active_vip"], wait_seconds=0)  # released: free at once
        other.release()
