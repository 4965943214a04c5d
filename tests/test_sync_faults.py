"""Receiver faults during ``revseg sync`` (SPEC 3.1, 4): 5xx, 429 with Retry-After, timeouts,
and a 400 that fails the batch for this run. The real CLI runs against the in-process
receiver; every scenario ends with the receiver's audience equal to ``revseg preview`` and
no operation applied twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from syncproject import (
    T0,
    Ledger,
    jsonl_file,
    members,
    replay,
    seed,
    shop_files,
    sync,
    sync_report,
    webhook,
    write_files,
)

from revseg.sandbox.webhook import WebhookReceiver

pytestmark = [pytest.mark.duckdb, pytest.mark.http]

BATCH = 10


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


def project_for(root: Path, receiver: WebhookReceiver, timeout: str = "10s", **destination: Any) -> Path:
    files = shop_files(
        syncs={"active_vip": [{"destination": "hooks", "batch_size": BATCH}, {"destination": "audit"}]},
        destinations={"hooks": webhook(receiver.url, timeout=timeout, **destination),
                      "audit": jsonl_file("audit.jsonl")},
    )
    write_files(root, files)
    seed(root / "warehouse.duckdb", 200)
    return root


def settle(receiver: WebhookReceiver, requests: int, timeout: float = 5.0) -> None:
    """Wait until ``requests`` requests were answered (slow handlers finish after the client left)."""
    deadline = time.monotonic() + timeout
    while len(receiver.deliveries) < requests and time.monotonic() < deadline:
        time.sleep(0.02)


def assert_converged(project: Path, receiver: WebhookReceiver, as_of: Any) -> None:
    expected = members(project, "active_vip", as_of)
    assert receiver.audience == expected
    assert replay(project / "audit.jsonl") == expected
    ledger = Ledger()
    redundant = [a for a in receiver.applied if ledger.apply(a.op, a.id, a.traits)]
    assert redundant == [], "operations applied twice"
    applied_ids = [a.webhook_id for a in receiver.applied]
    batches = [d.id for d in receiver.deliveries if d.status == 200 and not d.duplicate]
    assert len(batches) == len(set(batches)) and set(applied_ids) <= set(batches)


def test_server_errors_are_retried_within_the_run(tmp_path: Path, receiver: WebhookReceiver) -> None:
    project = project_for(tmp_path, receiver)
    receiver.fail_next(3, status=500, skip=1)  # the second batch fails three times, then passes
    report = sync(project, T0)
    hooks = sync_report(report, "active_vip", "hooks")
    assert hooks["status"] == "success" and hooks["added"] == len(receiver.audience) > BATCH
    statuses = [(d.status, d.attempt) for d in receiver.deliveries[:5]]
    assert statuses == [(200, 1), (500, 1), (500, 2), (500, 3), (200, 4)]
    assert len({d.id for d in receiver.deliveries[1:5]}) == 1  # one webhook-id across the retries
    assert_converged(project, receiver, T0)


def test_429_retry_after_is_honoured(tmp_path: Path, receiver: WebhookReceiver) -> None:
    project = project_for(tmp_path, receiver)
    receiver.fail_next(1, status=429, retry_after=1)
    sync(project, T0)
    first, retry = receiver.deliveries[:2]
    assert (first.status, retry.status, first.id) == (429, 200, retry.id)
    waited = int(retry.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"])
    assert waited >= 1
    assert_converged(project, receiver, T0)


def test_timeouts_are_retried_and_the_late_copy_is_not_applied_again(tmp_path: Path, receiver: WebhookReceiver) -> None:
    project = project_for(tmp_path, receiver, timeout="1s")
    receiver.fail_next(1, delay=1.6, skip=2)  # batch 3 is applied only after the 1 s timeout
    report = sync(project, T0)
    assert sync_report(report, "active_vip", "hooks")["status"] == "success"
    batches = -(-len(members(project, "active_vip", T0)) // BATCH)
    settle(receiver, batches + 1)  # the late copy is answered after the client gave up on it
    [slow] = {d.id or "" for d in receiver.deliveries if d.json()["batch"] == 3}
    late = [d for d in receiver.deliveries if d.duplicate]
    assert slow in {d.id for d in late} and receiver.attempts(slow) >= 2
    assert_converged(project, receiver, T0)


def test_400_fails_the_batch_for_this_run_and_the_next_run_delivers(tmp_path: Path, receiver: WebhookReceiver) -> None:
    project = project_for(tmp_path, receiver)
    sync(project, T0)
    assert_converged(project, receiver, T0)
    # a day later some leave and some enter; the second batch of the run gets a 400
    as_of = T0 + timedelta(days=1)
    receiver.fail_next(1, status=400, body='{"error": "schema mismatch"}', skip=1)
    before = len(receiver.deliveries)
    report = sync(project, as_of, code=1)
    hooks, audit = sync_report(report, "active_vip", "hooks"), sync_report(report, "active_vip", "audit")
    assert report["status"] == "failed" and hooks["status"] == "failed"
    assert "HTTP 400" in hooks["error"] and "schema mismatch" in hooks["error"]
    assert audit["status"] == "success"  # another sync of the run is not held back
    assert [d.status for d in receiver.deliveries[before:]] == [200, 400]  # not retried, run stops
    assert hooks["added"] + hooks["removed"] == BATCH  # batch 1 was acknowledged, batch 2 refused
    expected = members(project, "active_vip", as_of)
    assert receiver.audience != expected and replay(project / "audit.jsonl") == expected
    # the next run delivers the rest, the refused batch included
    report = sync(project, as_of)
    assert report["status"] == "success"
    assert_converged(project, receiver, as_of)


def test_exhausted_retries_fail_the_sync_and_the_next_run_converges(tmp_path: Path, receiver: WebhookReceiver) -> None:
    project = project_for(tmp_path, receiver, max_retries=1)
    receiver.fail_next(2, status=503, skip=1)
    report = sync(project, T0, code=1)
    hooks = sync_report(report, "active_vip", "hooks")
    assert hooks["status"] == "failed" and "HTTP 503" in hooks["error"] and "gave up after 2 attempts" in hooks["error"]
    assert hooks["added"] == BATCH
    report = sync(project, T0)
    assert sync_report(report, "active_vip", "hooks")["status"] == "success"
    assert_converged(project, receiver, T0)


def test_mixed_faults_over_several_runs_converge(tmp_path: Path, receiver: WebhookReceiver) -> None:
    project = project_for(tmp_path, receiver, timeout="1s")
    steps = [
        (T0, dict(n=2, status=502, skip=1), 0),
        (T0 + timedelta(days=1), dict(n=1, status=429, retry_after="1"), 0),
        (T0 + timedelta(days=2), dict(n=1, delay=1.3, skip=1), 0),
        (T0 + timedelta(days=3), dict(n=1, status=409), 1),  # the run's first batch is refused
        (T0 + timedelta(days=3), None, 0),
        (T0 + timedelta(days=4), dict(n=1, status=503), 0),
        (T0 + timedelta(days=5), dict(n=1, delay=1.2), 0),
    ]
    for as_of, fault, code in steps:
        if fault is not None:
            receiver.fail_next(**fault)
        report = sync(project, as_of, code=code)
        if fault and fault.get("delay"):
            time.sleep(fault["delay"])  # let the slow handler answer its late copy
        if code == 0:
            assert_converged(project, receiver, as_of)
        else:
            assert "HTTP 409" in sync_report(report, "active_vip", "hooks")["error"]
    assert sum(d.duplicate for d in receiver.deliveries) >= 2  # the late copies, not applied
