"""Functional tests of ``revseg sync`` (SPEC 3, 4, 5): a project written to tmp_path, the real
CLI in a subprocess, the webhook receiver in-process, and after every step the receiver's
audience and the file destination's replayed JSON Lines compared with ``revseg preview``.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pytest
from click.testing import CliRunner
from syncproject import (
    T0,
    connect,
    iso,
    jsonl_file,
    plan_rows,
    preview,
    replay,
    revseg,
    seed,
    shop_files,
    sync,
    sync_report,
    webhook,
    write_files,
)

from revseg.cli.main import main as revseg_main
from revseg.destinations.base import Batch, BatchResult, Capabilities, Destination
from revseg.destinations.registry import register_destination_type
from revseg.errors import UsageError
from revseg.runner import Runner
from revseg.sandbox.webhook import WebhookReceiver

pytestmark = [pytest.mark.duckdb, pytest.mark.http]

SECRET = "whsec_" + base64.b64encode(b"sync-e2e-secret-key-32-bytes-ok!").decode()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as running:
        yield running


def make_project(root: Path, files: dict[str, Any], n: int = 200, **seed_args: Any) -> Path:
    write_files(root, files)
    seed(root / "warehouse.duckdb", n, **seed_args)
    return root


def diff_counts(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> dict[str, int]:
    """What a mirror must send to go from ``before`` to ``after``."""
    return {
        "added": len(after.keys() - before.keys()),
        "removed": len(before.keys() - after.keys()),
        "updated": sum(1 for k in after.keys() & before.keys() if after[k] != before[k]),
    }


def bodies(receiver: WebhookReceiver, since: int = 0) -> list[dict[str, Any]]:
    return [d.json() for d in receiver.deliveries[since:] if d.status == 200]


# -- mirror ----------------------------------------------------------------------------
def test_mirror_converges_over_as_of_steps_and_data_changes(tmp_path: Path, receiver: WebhookReceiver) -> None:
    files = shop_files(
        syncs={"active_vip": [{"destination": "hooks", "batch_size": 7}, {"destination": "audit"}]},
        destinations={"hooks": webhook(receiver.url, secret=SECRET),
                      "audit": jsonl_file("out/audit.jsonl")},
    )
    project = make_project(tmp_path, files)
    db = project / "warehouse.duckdb"
    audit = project / "out" / "audit.jsonl"
    held: dict[str, dict[str, Any]] = {}
    seen_updates = seen_removes = 0

    def step(as_of: datetime) -> dict[str, Any]:
        nonlocal held, seen_updates, seen_removes
        since = len(receiver.deliveries)
        report = sync(project, as_of)
        members = preview(project, "active_vip", as_of)
        assert receiver.audience == members
        assert replay(audit, "active_vip.audit") == members
        expected = diff_counts(held, members)
        for destination in ("hooks", "audit"):
            got = sync_report(report, "active_vip", destination)
            assert {k: got[k] for k in expected} == expected, destination
            assert got["status"] == "success" and got["rejected"] == 0
        [segment] = [s for s in report["segments"] if s["name"] == "active_vip"]
        assert segment["members"] == len(members)
        assert report["status"] == "success" and report["as_of"] == iso(as_of)
        # batches of one run: numbered from 1 per sync, at most batch_size operations each,
        # webhook-id = run_id + "_" + a sequence increasing across the run
        sent = bodies(receiver, since)
        assert [b["batch"] for b in sent] == list(range(1, len(sent) + 1))
        assert all(0 < len(b["operations"]) <= 7 for b in sent)
        assert {b["run_id"] for b in sent} <= {report["run_id"]}
        ids = [d.id for d in receiver.deliveries[since:]]
        seqs = [int(str(i).rpartition("_")[2]) for i in ids]
        assert seqs == sorted(set(seqs)) and all(str(i).startswith(report["run_id"] + "_") for i in ids)
        seen_updates += expected["updated"]
        seen_removes += expected["removed"]
        held = members
        return report

    step(T0)
    assert len(held) > 20
    step(T0 + timedelta(days=1))  # views age out, others come into the window

    # inserts: new high-value customers with fresh views, and new views for old customers
    moment = T0 + timedelta(days=1, hours=1)
    with connect(db) as conn:
        conn.execute("INSERT INTO customers SELECT 1000 + i, 'n' || i || '@example.com', 'New' || i, 'US', 900.0,"
                     " ? FROM range(15) t(i)", [moment])
        conn.execute("INSERT INTO events SELECT 1000 + i, 'viewed', ? FROM range(15) t(i)", [moment])
        conn.execute("INSERT INTO events SELECT customer_id, 'viewed', ? FROM customers"
                     " WHERE customer_id % 9 = 0", [moment])
    step(moment)

    # trait updates: some members change email and name, some drop below the threshold
    members = sorted(held, key=int)
    changed, dropped = members[:6], members[6:10]
    moment += timedelta(minutes=5)
    with connect(db) as conn:  # updated_at moves with every change, as the model declares
        conn.execute("UPDATE customers SET email = 'changed' || customer_id || '@example.com',"
                     f" first_name = 'Changed', updated_at = ? WHERE customer_id IN ({','.join(changed)})", [moment])
        conn.execute(f"UPDATE customers SET lifetime_value = 10, updated_at = ? WHERE customer_id IN ({','.join(dropped)})",
                     [moment])
        conn.execute("UPDATE customers SET country = NULL, updated_at = ? WHERE customer_id = ?", [moment, int(members[11])])
    report = step(moment)
    assert sync_report(report, "active_vip", "hooks")["updated"] >= 6
    assert receiver.audience[changed[0]]["first_name"] == "Changed"
    assert receiver.audience[members[11]]["country"] is None

    # deletions of members (and of their events)
    gone = sorted(held, key=int)[:5]
    with connect(db) as conn:
        conn.execute(f"DELETE FROM customers WHERE customer_id IN ({','.join(gone)})")
        conn.execute(f"DELETE FROM events WHERE customer_id IN ({','.join(gone[:2])})")
    moment += timedelta(minutes=5)
    step(moment)
    assert not set(gone) & receiver.audience.keys()

    # the same as_of again: nothing to send
    since = len(receiver.deliveries)
    lines = len(audit.read_text().splitlines())
    report = step(moment)
    assert len(receiver.deliveries) == since and len(audit.read_text().splitlines()) == lines
    assert all(s["added"] == s["removed"] == s["updated"] == 0 for s in report["syncs"])

    # far in the future every view is old: the audience empties
    step(T0 + timedelta(days=30))
    assert receiver.audience == {} and held == {}
    assert seen_updates >= 6 and seen_removes > 15
    assert all(d.status == 200 and not d.duplicate for d in receiver.deliveries)


def test_skipped_members_without_identifier_are_counted_not_sent(tmp_path: Path, receiver: WebhookReceiver) -> None:
    files = shop_files(syncs={"active_vip": [{"destination": "hooks", "identifiers": {"email": "email"}}]},
                       destinations={"hooks": webhook(receiver.url, secret=SECRET)})
    project = make_project(tmp_path, files, n=400)
    members = preview(project, "active_vip", T0)
    unidentified = {k for k, v in members.items() if v["email"] is None}
    assert unidentified, "the generated data has members without email"
    plan = plan_rows(project, T0)
    assert plan["active_vip.hooks"]["skipped"] == len(unidentified)
    assert plan["active_vip.hooks"]["add"] == len(members) - len(unidentified)  # as sync adds them
    report = sync(project, T0)
    got = sync_report(report, "active_vip", "hooks")
    assert got["skipped"] == len(unidentified) and got["added"] == len(members) - len(unidentified)
    assert receiver.audience == {k: v for k, v in members.items() if k not in unidentified}
    # they stay unsendable, and are counted again, until they get an email
    with connect(project / "warehouse.duckdb") as conn:
        conn.execute(f"UPDATE customers SET email = 'late@example.com', updated_at = ? WHERE customer_id = {min(unidentified, key=int)}",
                     [T0])
    got = sync_report(sync(project, T0), "active_vip", "hooks")
    assert got["skipped"] == len(unidentified) - 1 and got["added"] == 1


# -- upsert ----------------------------------------------------------------------------
def test_upsert_adds_and_updates_but_never_removes(tmp_path: Path, receiver: WebhookReceiver) -> None:
    files = shop_files(syncs={"active_vip": [{"destination": "hooks", "mode": "upsert"},
                                             {"destination": "audit", "mode": "upsert"}]},
                       destinations={"hooks": webhook(receiver.url, secret=SECRET),
                                     "audit": jsonl_file("audit.jsonl")})
    project = make_project(tmp_path, files)
    ever: dict[str, dict[str, Any]] = {}
    for i, as_of in enumerate([T0, T0 + timedelta(days=1), T0 + timedelta(days=2), T0 + timedelta(days=9)]):
        if i == 2:
            with connect(project / "warehouse.duckdb") as conn:
                conn.execute("UPDATE customers SET first_name = 'Renamed', updated_at = ? WHERE customer_id % 4 = 0",
                             [as_of])
                conn.execute("DELETE FROM customers WHERE customer_id % 5 = 0")
        report = sync(project, as_of)
        members = preview(project, "active_vip", as_of)
        ever.update(members)
        for destination in ("hooks", "audit"):
            assert sync_report(report, "active_vip", destination)["removed"] == 0
        assert receiver.audience == ever  # members' current traits, leavers kept as last sent
        assert replay(project / "audit.jsonl") == ever
    assert members == {} and len(ever) > 40
    assert not [a for a in receiver.applied if a.op == "remove"]
    assert any(a.op == "update" for a in receiver.applied)


# -- trigger ---------------------------------------------------------------------------
TRIGGER_FILES: dict[str, Any] = {
    "segments/big_spenders.yml": {
        "name": "big_spenders",
        "where": {"column": "lifetime_value", "op": ">=", "value": 1000},
        "traits": {"first_name": "first_name", "ltv": "lifetime_value"},
    },
}


def set_ltv(project: Path, at: datetime, ltv: float, *ids: int) -> None:
    with connect(project / "warehouse.duckdb") as conn:
        conn.execute(f"UPDATE customers SET lifetime_value = ?, updated_at = ? WHERE customer_id IN ({','.join(map(str, ids))})",
                     [ltv, at])


def test_trigger_first_run_backfill_cooldown_and_template(tmp_path: Path, receiver: WebhookReceiver) -> None:
    template = "Hi {{ first_name }}, you spent {{ ltv }} (id {{ id }})"
    with WebhookReceiver() as backfilled:
        files = shop_files(destinations={"hooks": webhook(receiver.url, secret=SECRET),
                                         "welcome": webhook(backfilled.url)})
        files["segments/big_spenders.yml"] = {
            **TRIGGER_FILES["segments/big_spenders.yml"],
            "syncs": [
                {"destination": "hooks", "mode": "trigger", "on": "enter", "template": template, "cooldown": "2d"},
                {"destination": "welcome", "mode": "trigger", "template": "Welcome {{ first_name }}", "backfill": True},
            ],
        }
        project = make_project(tmp_path, files)
        start = preview(project, "big_spenders", T0)
        outsider = next(i for i in range(1, 201) if str(i) not in start)

        # first run: members recorded as already triggered, nothing sent, unless backfill
        report = sync(project, T0, "--select", "big_spenders")
        assert sync_report(report, "big_spenders", "hooks")["triggered"] == 0
        assert receiver.deliveries == []
        assert sync_report(report, "big_spenders", "welcome")["triggered"] == len(start) > 0
        assert sorted(backfilled.triggers) == sorted((k, f"Welcome {v['first_name']}") for k, v in start.items())

        # an entry is sent once, rendered with the member's traits
        set_ltv(project, T0 + timedelta(hours=1), 2500.0, outsider)
        report = sync(project, T0 + timedelta(hours=1), "--select", "big_spenders")
        assert sync_report(report, "big_spenders", "hooks")["triggered"] == 1
        assert receiver.triggers == [(str(outsider), f"Hi Name{outsider}, you spent 2500.0 (id {outsider})")]
        [body] = bodies(receiver)
        assert body["operations"][0]["traits"] == {"first_name": f"Name{outsider}", "ltv": 2500.0}
        assert sync_report(report, "big_spenders", "welcome")["triggered"] == 1  # no cooldown there

        # leaves, comes back within the cooldown (data time): suppressed
        set_ltv(project, T0 + timedelta(hours=2), 10.0, outsider)
        sync(project, T0 + timedelta(hours=2), "--select", "big_spenders")
        set_ltv(project, T0 + timedelta(days=1), 3000.0, outsider)
        report = sync(project, T0 + timedelta(days=1), "--select", "big_spenders")
        assert sync_report(report, "big_spenders", "hooks")["triggered"] == 0
        assert len(receiver.triggers) == 1
        assert sync_report(report, "big_spenders", "welcome")["triggered"] == 1

        # staying a member sends nothing more; leaving and coming back after 2d sends again
        sync(project, T0 + timedelta(days=2), "--select", "big_spenders")
        set_ltv(project, T0 + timedelta(days=2, hours=1), 10.0, outsider)
        sync(project, T0 + timedelta(days=2, hours=1), "--select", "big_spenders")
        set_ltv(project, T0 + timedelta(days=3, hours=2), 4000.0, outsider)
        report = sync(project, T0 + timedelta(days=3, hours=2), "--select", "big_spenders")
        assert sync_report(report, "big_spenders", "hooks")["triggered"] == 1
        assert receiver.triggers[-1] == (str(outsider), f"Hi Name{outsider}, you spent 4000.0 (id {outsider})")
        assert receiver.audience == {}  # trigger sends are messages, not audience changes


# -- selection, plan, guardrails --------------------------------------------------------
def test_select_by_name_tag_and_destination(tmp_path: Path, receiver: WebhookReceiver) -> None:
    files = shop_files(
        syncs={"active_vip": [{"destination": "hooks"}, {"destination": "audit"}],
               "buyers": [{"destination": "audit"}]},
        destinations={"hooks": webhook(receiver.url, secret=SECRET), "audit": jsonl_file("audit.jsonl")},
    )
    project = make_project(tmp_path, files)
    audit = project / "audit.jsonl"

    report = sync(project, T0, "--select", "buyers")
    assert [s["name"] for s in report["segments"]] == ["buyers"]
    assert [(s["segment"], s["destination"]) for s in report["syncs"]] == [("buyers", "audit")]
    assert receiver.deliveries == [] and replay(audit, "buyers.audit") == preview(project, "buyers", T0)

    report = sync(project, T0, "--select", "destination:hooks")
    assert [(s["segment"], s["destination"]) for s in report["syncs"]] == [("active_vip", "hooks")]
    assert receiver.audience == preview(project, "active_vip", T0)
    assert replay(audit, "active_vip.audit") == {}

    report = sync(project, T0, "--select", "tag:vip")
    assert [(s["segment"], s["destination"]) for s in report["syncs"]] == [("active_vip", "hooks"), ("active_vip", "audit")]
    assert sync_report(report, "active_vip", "hooks")["added"] == 0
    assert replay(audit, "active_vip.audit") == receiver.audience

    done = revseg(project, "sync", "--json", "--select", "tag:nope")
    assert done.returncode == 2 and "matches no segment" in done.stderr
    done = revseg(project, "sync", "--json", "--select", "buyer")
    assert done.returncode == 2 and "did you mean" in done.stderr and "buyers" in done.stderr
    done = revseg(project, "sync", "--json", "--select", "destination:hook")
    assert done.returncode == 2 and "did you mean 'destination:hooks'" in done.stderr
    with pytest.raises(UsageError, match="did you mean 'tag:vip'"):
        Runner(project).segment_names(["tag:vp"])


def test_plan_sends_nothing_and_predicts_the_sync(tmp_path: Path, receiver: WebhookReceiver) -> None:
    files = shop_files(syncs={"active_vip": [{"destination": "hooks"}, {"destination": "audit"}]},
                       destinations={"hooks": webhook(receiver.url, secret=SECRET), "audit": jsonl_file("audit.jsonl")})
    project = make_project(tmp_path, files)
    audit = project / "audit.jsonl"
    for as_of in (T0, T0 + timedelta(days=1)):
        deliveries, lines = len(receiver.deliveries), audit.read_text() if audit.exists() else None
        planned = plan_rows(project, as_of)
        assert plan_rows(project, as_of) == planned  # a plan changes nothing
        assert len(receiver.deliveries) == deliveries
        assert (audit.read_text() if audit.exists() else None) == lines
        report = sync(project, as_of)
        assert set(planned) == {"active_vip.hooks", "active_vip.audit"}
        for name, counts in planned.items():
            segment, _, destination = name.partition(".")
            got = sync_report(report, segment, destination)
            assert (counts["add"], counts["remove"], counts["update"], counts["skipped"]) == (
                got["added"], got["removed"], got["updated"], got["skipped"]), name
        assert planned["active_vip.hooks"]["add"] > 0
    assert planned["active_vip.hooks"]["remove"] > 0
    # after the sync, a plan at the same as_of has nothing to do
    assert all(not any(c.values()) for c in plan_rows(project, T0 + timedelta(days=1)).values())


def test_guardrails_fail_the_sync_and_send_nothing(tmp_path: Path, receiver: WebhookReceiver) -> None:
    syncs = [{"destination": "hooks", "max_removes": 5}, {"destination": "audit", "max_remove_pct": 20}]
    files = shop_files(syncs={"active_vip": syncs},
                       destinations={"hooks": webhook(receiver.url, secret=SECRET), "audit": jsonl_file("audit.jsonl")})
    project = make_project(tmp_path, files)
    audit = project / "audit.jsonl"
    sync(project, T0)
    members = preview(project, "active_vip", T0)
    doomed = sorted(members, key=int)[:10]
    with connect(project / "warehouse.duckdb") as conn:
        conn.execute(f"DELETE FROM customers WHERE customer_id IN ({','.join(doomed)})")

    def unchanged() -> None:
        assert receiver.audience == members and replay(audit) == members

    deliveries, lines = len(receiver.deliveries), audit.read_text()
    report = sync(project, T0, code=1)
    hooks, audit_sync = sync_report(report, "active_vip", "hooks"), sync_report(report, "active_vip", "audit")
    assert report["status"] == "failed" and hooks["status"] == audit_sync["status"] == "failed"
    assert "max_removes 5" in hooks["error"] and "would remove 10 of" in hooks["error"]
    assert "nothing was sent" in hooks["error"]
    assert "max_remove_pct 20%" in audit_sync["error"] and "--max-remove-pct" in audit_sync["error"]
    assert hooks["removed"] == hooks["added"] == 0
    assert len(receiver.deliveries) == deliveries and audit.read_text() == lines
    unchanged()
    # the human summary says it too, and exits 1
    done = revseg(project, "sync", "--as-of", iso(T0))
    assert done.returncode == 1 and "guardrail" in done.stdout and "max_removes" in done.stdout
    unchanged()

    # --max-remove-pct overrides the sync's percentage; max_removes still holds
    report = sync(project, T0, "--max-remove-pct", "50", code=1)
    assert sync_report(report, "active_vip", "audit")["status"] == "success"
    assert sync_report(report, "active_vip", "audit")["removed"] == 10
    assert sync_report(report, "active_vip", "hooks")["status"] == "failed"
    after = preview(project, "active_vip", T0)
    assert replay(audit) == after and receiver.audience == members

    # raising max_removes lets it through; a tight --max-remove-pct blocks the next removal
    syncs[0]["max_removes"] = 100
    write_files(project, shop_files(syncs={"active_vip": syncs}, destinations={
        "hooks": webhook(receiver.url, secret=SECRET), "audit": jsonl_file("audit.jsonl")}))
    sync(project, T0)
    assert receiver.audience == after
    with connect(project / "warehouse.duckdb") as conn:
        conn.execute(f"DELETE FROM customers WHERE customer_id = {sorted(after, key=int)[0]}")
    report = sync(project, T0, "--max-remove-pct", "1", code=1)
    assert all(s["status"] == "failed" and "max_remove_pct 1%" in s["error"] for s in report["syncs"])
    assert receiver.audience == after
    sync(project, T0)  # without the flag: 1 of ~20 is within 20%
    assert receiver.audience == preview(project, "active_vip", T0) == replay(audit)


# -- rejections (a destination registered in-process) -----------------------------------
class PickyList(Destination):
    """Accepts everything but the ids in ``REJECT``, as an API rejecting bad emails does."""

    capabilities: ClassVar[Capabilities] = Capabilities(max_batch_size=10)
    REJECT: ClassVar[set[str]] = set()
    audience: ClassVar[dict[str, dict[str, Any]]] = {}
    sent: ClassVar[list[tuple[str, str]]] = []

    def send(self, batch: Batch) -> BatchResult:
        rejected = {}
        for op in batch.operations:
            type(self).sent.append((op.op, op.id))
            if op.id in self.REJECT:
                rejected[op.id] = f"invalid email for {op.id}"
            elif op.op in ("add", "update"):
                self.audience[op.id] = dict(op.traits)
            elif op.op == "remove":
                self.audience.pop(op.id, None)
        return BatchResult(rejected)


@pytest.fixture
def picky() -> Iterator[type[PickyList]]:
    register_destination_type("picky_list", PickyList)
    PickyList.REJECT, PickyList.audience, PickyList.sent = set(), {}, []
    yield PickyList


def test_rejections_are_reported_and_retried_up_to_max_attempts(tmp_path: Path, picky: type[PickyList]) -> None:
    files = shop_files(syncs={"active_vip": [{"destination": "picky", "max_attempts": 3}]},
                       destinations={"picky": {"type": "picky_list"}})
    project = make_project(tmp_path, files)
    runner = Runner(project)
    members = runner.preview("active_vip", as_of=T0).members
    bad = sorted((m.id for m in members), key=int)[:3]
    picky.REJECT = set(bad)

    report = runner.sync(as_of=T0)
    [s] = report.syncs
    assert (s.added, s.rejected, s.status) == (len(members) - 3, 3, "partial")
    assert report.status == "partial" and report.exit_code == 1
    document = report.as_json()
    assert sorted(r["id"] for r in document["rejections"]) == bad
    assert document["rejections"][0]["reason"] == f"invalid email for {bad[0]}"
    assert document["syncs"][0]["rejected"] == 3 and len(document["syncs"][0]["rejections"]) == 3
    assert set(picky.audience) == {m.id for m in members} - set(bad)

    for attempt in (2, 3):  # retried on the next runs (up to max_attempts: 3)
        picky.sent.clear()
        [s] = Runner(project).sync(as_of=T0).syncs
        assert sorted(i for _op, i in picky.sent) == bad and s.rejected == 3, attempt
    picky.sent.clear()
    [s] = Runner(project).sync(as_of=T0).syncs
    assert picky.sent == [] and s.rejected == 0 and s.status == "success"
    # past max_attempts they are not sent again, even by a run that has other work to do...
    moment = T0 + timedelta(minutes=1)
    with connect(project / "warehouse.duckdb") as conn:
        conn.execute("INSERT INTO customers VALUES (9001, 'new@example.com', 'New', 'US', 900.0, ?)", [moment])
        conn.execute("INSERT INTO events VALUES (9001, 'viewed', ?)", [moment])
    [s] = Runner(project).sync(as_of=moment).syncs
    assert picky.sent == [("add", "9001")] and s.rejected == 0
    # ...until their traits change (a fixed email): then they are worth another try
    picky.sent.clear()
    picky.REJECT = set(bad[1:])
    moment += timedelta(minutes=1)
    with connect(project / "warehouse.duckdb") as conn:
        conn.execute("UPDATE customers SET email = 'fixed@example.com', updated_at = ? WHERE customer_id = ?",
                     [moment, int(bad[0])])
    [s] = Runner(project).sync(as_of=moment).syncs
    assert picky.sent == [("add", bad[0])] and s.added == 1 and s.rejected == 0
    assert picky.audience[bad[0]]["email"] == "fixed@example.com"
    picky.REJECT = set(bad[1:2])

    # a rejection that later succeeds clears its record; the CLI exits 1 on rejections
    files["segments/active_vip.yml"]["syncs"][0]["max_attempts"] = 5
    write_files(project, files)
    args = ["sync", "--json", "--as-of", iso(moment), "--project-dir", str(project)]
    result = CliRunner().invoke(revseg_main, args)
    assert result.exit_code == 1, result.output
    document = json.loads(result.output)
    assert document["status"] == "partial"
    assert document["rejections"] == [{"id": bad[1], "reason": f"invalid email for {bad[1]}"}]
    assert document["syncs"][0]["added"] == 1  # bad[2]: attempts 4 and 5 are allowed now
    picky.REJECT = set()
    result = CliRunner().invoke(revseg_main, args)
    assert result.exit_code == 0, result.output
    assert set(picky.audience) == {m.id for m in members} | {"9001"}
    result = CliRunner().invoke(revseg_main, args)
    assert json.loads(result.output)["syncs"][0]["added"] == 0  # nothing left over


def test_rejected_trigger_is_retried_on_the_next_run(tmp_path: Path, picky: type[PickyList]) -> None:
    files = shop_files(destinations={"picky": {"type": "picky_list"}})
    files["segments/big_spenders.yml"] = {**TRIGGER_FILES["segments/big_spenders.yml"], "syncs": [
        {"destination": "picky", "mode": "trigger", "template": "Hi {{ first_name }}", "backfill": True}]}
    project = make_project(tmp_path, files)
    members = sorted(m.id for m in Runner(project).preview("big_spenders", as_of=T0).members)
    picky.REJECT = {members[0]}
    [s] = Runner(project).sync(["big_spenders"], as_of=T0).syncs
    assert (s.triggered, s.rejected) == (len(members) - 1, 1)
    picky.REJECT, picky.sent = set(), []
    [s] = Runner(project).sync(["big_spenders"], as_of=T0 + timedelta(hours=1)).syncs
    assert (s.triggered, s.rejected) == (1, 0) and picky.sent == [("trigger", members[0])]
    picky.sent = []
    [s] = Runner(project).sync(["big_spenders"], as_of=T0 + timedelta(hours=2)).syncs
    assert s.triggered == 0 and picky.sent == []


class CrashingList(PickyList):
    """Applies every batch, but the process "dies" (KeyboardInterrupt) right after applying
    batch ``CRASH_AT``, before revseg records the acknowledgement: the batch stays in flight."""

    CRASH_AT: ClassVar[int] = 0

    def send(self, batch: Batch) -> BatchResult:
        result = super().send(batch)
        if batch.number == self.CRASH_AT:
            raise KeyboardInterrupt
        return result


def test_plan_after_a_killed_run_counts_the_batch_in_flight(tmp_path: Path, picky: type[PickyList]) -> None:
    register_destination_type("crashing_list", CrashingList)
    CrashingList.CRASH_AT = 2
    files = shop_files(syncs={"active_vip": [{"destination": "crashy"}]},
                       destinations={"crashy": {"type": "crashing_list"}})
    project = make_project(tmp_path, files)
    with pytest.raises(KeyboardInterrupt):
        Runner(project).sync(as_of=T0)
    in_flight = [i for op, i in picky.sent[10:20]]  # batch 2: applied, never acknowledged
    gone = in_flight[:3]
    with connect(project / "warehouse.duckdb") as conn:  # members of the batch in flight leave
        conn.execute(f"DELETE FROM customers WHERE customer_id IN ({','.join(gone)})")
    CrashingList.CRASH_AT = 0
    [planned] = Runner(project).plan(as_of=T0).syncs
    [synced] = Runner(project).sync(as_of=T0).syncs
    assert synced.removed == 3 and not set(gone) & picky.audience.keys()
    assert (planned.added, planned.removed, planned.updated) == (synced.added, synced.removed, synced.updated)


# -- exit codes --------------------------------------------------------------------------
def test_invalid_project_exits_2_and_touches_nothing(tmp_path: Path, receiver: WebhookReceiver) -> None:
    files = shop_files(syncs={"active_vip": [{"destination": "hookz"}]},
                       destinations={"hooks": webhook(receiver.url, secret=SECRET)})
    files["segments/buyers.yml"]["colour"] = "blue"
    project = make_project(tmp_path, files)
    done = revseg(project, "sync", "--json", "--as-of", iso(T0))
    assert done.returncode == 2, done.stderr
    assert "segments/buyers.yml:" in done.stderr and "colour" in done.stderr
    assert "segments/active_vip.yml:" in done.stderr and "hookz" in done.stderr
    assert receiver.deliveries == []
    with duckdb.connect(str(project / "warehouse.duckdb")) as conn:
        schemas = {r[0] for r in conn.execute("SELECT schema_name FROM information_schema.schemata").fetchall()}
    assert "revseg_state" not in schemas


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_warehouse_exits_3(tmp_path: Path, receiver: WebhookReceiver) -> None:
    port = closed_port()
    target = {"type": "postgres", "host": "127.0.0.1", "port": port, "user": "postgres",
              "database": "test", "connect_timeout": 2}
    files = shop_files(syncs={"active_vip": [{"destination": "hooks"}]},
                       destinations={"hooks": webhook(receiver.url, secret=SECRET)}, target=target)
    project = write_files(tmp_path, files)
    done = revseg(project, "sync", "--json", "--as-of", iso(T0))
    assert done.returncode == 3, done.stderr
    assert f"cannot connect to PostgreSQL at 127.0.0.1:{port}" in done.stderr
    assert receiver.deliveries == [] and done.stdout == ""


def test_success_exits_0_with_the_documented_json(tmp_path: Path, receiver: WebhookReceiver) -> None:
    files = shop_files(syncs={"buyers": [{"destination": "hooks"}]},
                       destinations={"hooks": webhook(receiver.url, secret=SECRET)})
    project = make_project(tmp_path, files)
    report = sync(project, T0, "--select", "buyers")
    assert set(report) - {"_stderr", "_code"} == {"run_id", "as_of", "status", "segments", "syncs"}
    assert report["run_id"].startswith("r") and report["as_of"] == "2026-03-01T12:00:00Z"
    [segment] = report["segments"]
    assert set(segment) == {"name", "mode", "members", "entered", "exited", "seconds"}
    [s] = report["syncs"]
    assert set(s) == {"segment", "destination", "mode", "added", "removed", "updated", "triggered",
                      "rejected", "skipped", "status", "seconds"}
    assert (s["mode"], s["status"], s["added"]) == ("mirror", "success", segment["members"])
    [delivery] = receiver.deliveries
    body = delivery.json()
    assert (body["type"], body["sync"], body["segment"], body["run_id"], body["batch"], body["as_of"]) == (
        "segment.membership.changed", "buyers.hooks", "buyers", report["run_id"], 1, "2026-03-01T12:00:00Z")
    assert delivery.headers["webhook-id"] == f"{report['run_id']}_1"


# -- output ------------------------------------------------------------------------------
def test_progress_bars_go_to_stderr_and_leave_stdout_clean(capsys: pytest.CaptureFixture[str]) -> None:
    """`revseg sync > report.txt` on a terminal: the bars belong on stderr (whose terminal
    enables them); stdout holds the summary alone, without even a blank line from rich."""
    from revseg.cli.progress import ProgressView

    with ProgressView(enabled=True) as view:
        view.update("batch", {"sync": "buyers.hooks", "total": 10, "done": 5})
        view.update("batch", {"sync": "buyers.hooks", "total": 10, "done": 10})
    assert capsys.readouterr().out == ""
