"""Crash test of trigger delivery (SPEC 3 and 4: at most once): ``revseg sync`` is SIGKILLed at
seeded random moments while it texts entering members, in batches of 5, through the Twilio
emulator running in its own process (10 ms per request, so a sync lasts about a second).
After every kill a clean ``revseg sync`` runs. Each entry (a customer entering the segment,
its wave number in the message) must get at most one message: duplicates must be zero. A
kill may lose messages (recorded as intent, never received), but only of the one batch the
run had in flight.

Run with ``-s`` to see the numbers.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from syncproject import REVSEG, cli_env, iso, sync
from twilioproject import AS_OF, TOKEN_VAR, add_customers, set_active, twilio, write_project

from revseg.sandbox.twilio_emulator import ACCOUNT_SID, AUTH_TOKEN, NUMBERS

pytestmark = [pytest.mark.slow, pytest.mark.duckdb, pytest.mark.http]

SEED = 20260301
TRIALS = 12
BATCH = 5
NEW_PER_TRIAL = 40
DELAY_S = 0.01
SYNC = "engaged.sms"


@dataclass
class Twilio:
    process: subprocess.Popen[str]
    base: str
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))

    def get(self, path: str) -> Any:
        response = self.client.get(f"{self.base}{path}")
        response.raise_for_status()
        return response.json()

    def count(self) -> int:
        return int(self.get("/_stats")["messages"])


@pytest.fixture
def emulator() -> Iterator[Twilio]:
    process = subprocess.Popen(
        [sys.executable, "-m", "revseg.sandbox.twilio_emulator", "--port", "0", "--delay", str(DELAY_S)],
        stdout=subprocess.PIPE, text=True, env=cli_env(),
    )
    assert process.stdout is not None
    port = int(process.stdout.readline())
    running = Twilio(process, f"http://127.0.0.1:{port}")
    try:
        yield running
    finally:
        running.client.close()
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()


def state(db: Path, query: str) -> list[tuple[Any, ...]]:
    """Rows of a state query; none when the killed run never created the state schema."""
    conn = duckdb.connect(str(db), read_only=True)
    try:
        return conn.execute(query).fetchall()
    except duckdb.CatalogException:
        return []
    finally:
        conn.close()


def phone(customer: int) -> str:
    return f"+1555{customer:07d}"


def test_sigkill_during_trigger_sends_never_duplicates_and_loses_at_most_the_batch_in_flight(
    tmp_path: Path, emulator: Twilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_VAR, AUTH_TOKEN)
    rng = random.Random(SEED)
    syncs = [{"destination": "sms", "mode": "trigger", "identifiers": {"phone": "phone"},
              "template": "Hi {{ first_name }} #{{ wave }}", "batch_size": BATCH}]
    destination = twilio(f"{emulator.base}/2010-04-01", ACCOUNT_SID, timeout="5s",
                         rate_limit="1000/s", **{"from": NUMBERS[0]})
    first = [(i, phone(i), f"N{i}", True) for i in range(1, 21)]
    project = write_project(tmp_path, syncs, {"sms": destination}, first)
    db = project / "wh.duckdb"
    assert sync(project, AS_OF)["syncs"][0]["triggered"] == 0  # members recorded, nothing sent
    active, inactive = {i for i, *_ in first}, set()
    next_id = 1000
    expected: set[tuple[str, str]] = set()
    totals = Counter[str]()
    lines: list[str] = []

    for trial in range(1, TRIALS + 1):
        as_of = AS_OF + timedelta(hours=trial)
        # entries of this wave: new customers, and some who left in an earlier trial come back
        new = list(range(next_id, next_id + NEW_PER_TRIAL))
        next_id += NEW_PER_TRIAL
        back = rng.sample(sorted(inactive), min(5, len(inactive)))
        leave = rng.sample(sorted(active), 5)
        add_customers(project, as_of, [(i, phone(i), f"N{i}", True) for i in new], wave=trial)
        set_active(project, as_of, active=back, inactive=leave, wave=trial)
        active = (active - set(leave)) | set(new) | set(back)
        inactive = (inactive - set(back)) | set(leave)
        entries = {(phone(i), f"Hi N{i} #{trial}") for i in [*new, *back]}
        expected |= entries

        # -- the killed run: at a random moment, or once a random number of texts arrived
        before = emulator.count()
        process = subprocess.Popen([*REVSEG, "sync", "--as-of", iso(as_of), "--project-dir", str(project)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env())
        started = time.monotonic()
        if trial % 3 == 0:
            time.sleep(rng.uniform(0.3, 2.5))
        else:
            wanted = rng.randint(1, len(entries) - 1)
            while process.poll() is None and emulator.count() - before < wanted:
                time.sleep(0.002)
        finished = process.poll() is not None
        process.kill()
        process.wait()
        elapsed = time.monotonic() - started
        time.sleep(DELAY_S * 5)  # a request the dead client had sent is still applied
        in_flight = {str(r[0]) for r in state(db, f"SELECT id FROM revseg_state.inflight WHERE sync = '{SYNC}'")}
        batches = state(db, f"SELECT count(DISTINCT (run_id, batch)) FROM revseg_state.inflight WHERE sync = '{SYNC}'")
        assert not batches or batches[0][0] <= 1, f"trial {trial}: more than one batch in flight"
        intent = {str(r[0]) for r in state(
            db, f"SELECT id FROM revseg_state.triggers WHERE sync = '{SYNC}' AND status = 'intent'"
                f" AND as_of = TIMESTAMP '{as_of:%Y-%m-%d %H:%M:%S}'")}

        # -- the clean run sends what the killed one did not reach
        report = sync(project, as_of + timedelta(minutes=5))
        assert report["status"] == "success", report
        received = Counter((m["to"], m["body"]) for m in emulator.get("/_messages")["messages"])
        duplicates = sum(n - 1 for n in received.values() if n > 1)
        assert duplicates == 0, f"trial {trial}: {duplicates} duplicate texts"
        assert set(received) <= expected, f"trial {trial}: unexpected texts {set(received) - expected}"
        lost = {body.split(" ")[1][1:] for to, body in entries - set(received)}
        assert lost <= in_flight, f"trial {trial}: lost {lost - in_flight}, not in flight at the kill"
        assert len(lost) <= BATCH
        never_received = {i for i in intent if (phone(int(i)), f"Hi N{i} #{trial}") not in received}
        assert never_received == lost
        totals.update(kills=1, in_flight=bool(in_flight), lost=len(lost), entries=len(entries),
                      finished_before_kill=finished)
        lines.append(f"trial {trial:2d}: killed after {elapsed:.2f}s{' (had finished)' if finished else ''};"
                     f" in flight {len(in_flight)}, recorded as intent {len(intent)},"
                     f" lost {len(lost)} of {len(entries)} entries; duplicates {duplicates}")

    received = Counter((m["to"], m["body"]) for m in emulator.get("/_messages")["messages"])
    assert sum(n - 1 for n in received.values()) == 0
    assert totals["in_flight"] >= 5, "too few kills landed mid-delivery to mean anything"
    print("\n" + "\n".join(lines))
    print(f"{totals['kills']} kills, {totals['in_flight']} with a batch in flight; {totals['entries']} entries,"
          f" {sum(received.values())} texts received, 0 duplicates, {totals['lost']} lost"
          f" (each in the batch in flight at its kill)")
