"""Crash tests of the delivery protocol (SPEC 4): ``revseg sync`` is SIGKILLed at seeded random
moments while it delivers ~2,000 members in batches of 50 to a slow receiver subprocess and to
a file; after every kill the membership changes (customers deleted, some of them from the
batch in flight) and a clean ``revseg sync`` must leave both destinations exactly equal to
the segment, having re-sent nothing but the one batch that was in flight at the kill.

The schedule kills at the very start (the first run, before the state schema exists), during
start-up, after a random number of deliveries, on the last webhook batch, and during the file
sync that follows. Run with ``-s`` to see the numbers.
"""

from __future__ import annotations

import base64
import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from syncproject import (
    REVSEG,
    T0,
    Ledger,
    cli_env,
    connect,
    iso,
    jsonl_file,
    members,
    preview,
    seed,
    shop_files,
    sync,
    webhook,
    write_files,
)

from revseg.runner import Runner

pytestmark = [pytest.mark.slow, pytest.mark.duckdb, pytest.mark.http]

SECRET = "whsec_" + base64.b64encode(b"crash-test-secret-key-32-bytes!!").decode()
MEMBERS = 2000
BATCH = 50
DELAY_S = 0.01  # per webhook request: with the per-batch state work, the first sync takes ~2 s
SEED = 20261128
TRIALS = 12


@dataclass
class Receiver:
    process: subprocess.Popen[str]
    base: str
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))

    def get(self, path: str) -> Any:
        response = self.client.get(f"{self.base}{path}")
        response.raise_for_status()
        return response.json()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    process = subprocess.Popen(
        [sys.executable, "-m", "revseg.sandbox.webhook", "--port", "0", "--secret", SECRET,
         "--delay", str(DELAY_S)],
        stdout=subprocess.PIPE, text=True, env=cli_env(),
    )
    assert process.stdout is not None
    port = int(process.stdout.readline())
    running = Receiver(process, f"http://127.0.0.1:{port}")
    try:
        yield running
    finally:
        running.client.close()
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()


@dataclass
class Kill:
    """Where one trial kills the sync: ``at`` seconds after it started, or once the receiver
    has applied ``fraction`` of the webhook batches the run will send (``revseg plan`` says
    how many), or ``last``: once all but the last one arrived, or ``in_file``: once the file
    sync after the webhook one has written its first batch."""

    label: str
    at: float | None = None
    fraction: float | None = None
    last: bool = False
    in_file: bool = False


def schedule(rng: random.Random) -> list[Kill]:
    kills = [Kill("at start (first run, no state yet)", at=0.0),
             Kill("during start-up", at=rng.uniform(0.05, 0.5)),
             Kill("on the last webhook batch", last=True),
             Kill("in the file sync", in_file=True),
             Kill("at a random moment", at=rng.uniform(0.0, 1.5))]
    kills += [Kill("mid-delivery", fraction=rng.uniform(0.05, 0.95)) for _ in range(TRIALS - len(kills))]
    return [kills[0], *rng.sample(kills[1:], len(kills) - 1)]


def file_ops(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Complete JSON Lines records after byte ``offset``, and the offset after them (a partial
    last line, cut by the kill, is left for revseg to remove)."""
    if not path.exists():
        return [], offset
    data = path.read_bytes()[offset:]
    complete = data[: data.rfind(b"\n") + 1]
    return [json.loads(line) for line in complete.splitlines()], offset + len(complete)


def inflight(db: Path) -> list[tuple[str, str, int, str, str]]:
    """The batch the killed run left in flight: (sync, run_id, batch, id, op) rows."""
    with connect(db) as conn:
        found = conn.execute("SELECT count(*) FROM information_schema.tables"
                             " WHERE table_schema = 'revseg_state' AND table_name = 'inflight'").fetchone()
        if not found or not found[0]:
            return []  # killed before the state schema existed
        rows = conn.execute("SELECT sync, run_id, batch, id, op FROM revseg_state.inflight").fetchall()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def mutate(db: Path, rng: random.Random, as_of: Any, next_id: int, doomed: set[str]) -> int:
    """Flip a tenth of the customers in or out of the segment, delete ``doomed`` and a few
    others, add new members. Every change moves ``updated_at`` (the model declares it)."""
    with connect(db) as conn:
        ids = [r[0] for r in conn.execute("SELECT customer_id FROM customers").fetchall()]
        flip = rng.sample(ids, len(ids) // 10)
        conn.execute("UPDATE customers SET lifetime_value = CASE WHEN lifetime_value >= 500 THEN 100 ELSE 1000 END,"
                     f" updated_at = ? WHERE customer_id IN ({','.join(map(str, flip))})", [as_of])
        gone = {int(i) for i in doomed} | set(rng.sample(ids, 15))
        conn.execute(f"DELETE FROM customers WHERE customer_id IN ({','.join(map(str, gone))})")
        new = range(next_id, next_id + 25)
        conn.executemany("INSERT INTO customers VALUES (?, ?, ?, 'US', 1000.0, ?)",
                         [(i, f"c{i}@example.com", f"Name{i}", as_of) for i in new])
        conn.executemany("INSERT INTO events VALUES (?, 'viewed', ?)", [(i, as_of) for i in new])
    return next_id + 25


def test_sigkill_at_random_moments_loses_nothing_and_resends_only_the_batch_in_flight(
    tmp_path: Path, receiver: Receiver
) -> None:
    rng = random.Random(SEED)
    files = shop_files(
        syncs={"active_vip": [{"destination": "hooks", "batch_size": BATCH},
                              {"destination": "audit", "batch_size": 4 * BATCH}]},
        destinations={"hooks": webhook(f"{receiver.base}/hooks", secret=SECRET),
                      "audit": jsonl_file("audit.jsonl")},
    )
    project = write_files(tmp_path, files)
    db = project / "warehouse.duckdb"
    audit = project / "audit.jsonl"
    seed(db, MEMBERS, vip_views_at=T0 - timedelta(hours=1))
    hooks_ledger, file_ledger = Ledger(), Ledger()
    applied_seen = file_offset = 0
    next_id = 100_000
    resent_batches = resent_ops = in_flight_at_kill = removed_in_flight = 0
    durations: list[float] = []
    lines: list[str] = []

    for trial, kill in enumerate(schedule(rng)):
        as_of = T0 + timedelta(minutes=10 * trial)
        if trial:
            next_id = mutate(db, rng, as_of, next_id, set())
        # -- the killed run
        batches = 0
        if kill.fraction is not None or kill.last:
            [hooks] = [s for s in Runner(project).plan(as_of=as_of).syncs if s.destination == "hooks"]
            batches = -(-(hooks.added + hooks.removed + hooks.updated) // BATCH)
        before = receiver.get("/_health")["deliveries"]
        file_size = audit.stat().st_size if audit.exists() else 0
        started = time.monotonic()
        process = subprocess.Popen([*REVSEG, "sync", "--select", "active_vip", "--as-of", iso(as_of),
                                    "--project-dir", str(project)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env())
        if kill.at is not None:
            time.sleep(kill.at)
        elif kill.in_file:
            while process.poll() is None and (audit.stat().st_size if audit.exists() else 0) == file_size:
                time.sleep(0.001)
        else:
            wanted = batches - 1 if kill.last else max(1, round(batches * (kill.fraction or 0)))
            while process.poll() is None and receiver.get("/_health")["deliveries"] - before < wanted:
                time.sleep(0.002)
        finished_before_kill = process.poll() is not None
        process.kill()
        process.wait()
        durations.append(time.monotonic() - started)
        time.sleep(DELAY_S * 3)  # let the receiver finish a request the dead client had sent

        # -- what the killed run applied: nothing redundant (it starts from an exact state)
        applied = receiver.get("/_applied")
        for a in applied[applied_seen:]:
            assert not hooks_ledger.apply(a["op"], a["id"], a["traits"]), f"trial {trial}: killed run re-sent {a}"
        records, file_offset = file_ops(audit, file_offset)
        for r in records:
            assert not file_ledger.apply(r["op"], r["id"], r.get("traits")), f"trial {trial}: killed run re-wrote {r}"
        applied_seen = len(applied)
        left = inflight(db)
        batches_in_flight = {(s, r, b) for s, r, b, _i, _o in left}
        assert len(batches_in_flight) <= 1, f"trial {trial}: more than one batch in flight: {batches_in_flight}"
        in_flight_ids = {i for _s, _r, _b, i, _o in left}
        in_flight_at_kill += bool(left)

        # -- membership moves on: among others, delete half of the in-flight adds
        adds = sorted(i for _s, _r, _b, i, o in left if o == "add")
        next_id = mutate(db, rng, as_of + timedelta(minutes=5), next_id, set(adds[::2]))

        # -- a clean run converges, re-sending at most the batch that was in flight
        clean_as_of = as_of + timedelta(minutes=5)
        report = sync(project, clean_as_of, "--select", "active_vip")
        assert report["status"] == "success", report
        expected = members(project, "active_vip", clean_as_of)
        if trial == 0:
            assert expected == preview(project, "active_vip", clean_as_of)  # the CLI agrees
        assert receiver.get("/_audience") == expected, f"trial {trial} ({kill.label}): webhook audience differs"
        applied = receiver.get("/_applied")
        clean = applied[applied_seen:]
        removed_in_flight += sum(1 for a in clean if a["op"] == "remove" and a["id"] in in_flight_ids)
        redundant = [a for a in clean if hooks_ledger.apply(a["op"], a["id"], a["traits"])]
        applied_seen = len(applied)
        records, file_offset = file_ops(audit, file_offset)
        redundant_lines = [r for r in records if file_ledger.apply(r["op"], r["id"], r.get("traits"))]
        assert file_ledger.audience == expected, f"trial {trial} ({kill.label}): file differs"
        resent = {a["id"] for a in redundant} | {r["id"] for r in redundant_lines}
        assert resent <= in_flight_ids, f"trial {trial}: re-sent {resent - in_flight_ids}, not in flight"
        if resent:
            resent_batches += 1
            resent_ops += len(resent)
        lines.append(f"trial {trial:2d} {kill.label:38s} killed after {durations[-1]:.2f}s"
                     f"{' (had finished)' if finished_before_kill else ''}: in flight {len(left):3d} ops,"
                     f" re-sent {len(resent):3d}, members {len(expected)}")

    deliveries = receiver.get("/_deliveries")
    assert all(d["status"] == 200 for d in deliveries)
    assert not [d for d in deliveries if d["duplicate"]]  # no webhook-id was delivered twice
    assert in_flight_at_kill >= 5, "too few kills landed mid-delivery to mean anything"
    assert resent_batches >= 1, "no kill landed between a batch being applied and its ack"
    assert removed_in_flight >= 1, "no possibly-delivered record left the segment before the clean run"
    print("\n" + "\n".join(lines))
    print(f"{len(lines)} kills; {in_flight_at_kill} left a batch in flight; {resent_batches} batches "
          f"({resent_ops} operations) were re-sent by the next run, each the one in flight; "
          f"{removed_in_flight} possibly-delivered records were removed after leaving the segment; "
          f"{len(deliveries)} webhook requests, none with a repeated webhook-id")

