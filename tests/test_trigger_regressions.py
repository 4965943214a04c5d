"""Trigger-mode defects of the runner (``runner/sync.py``), found while building the twilio
destination and in a black-box audit of delivery under faults. Each test failed until the
runner was fixed; see each docstring for the fix.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

import pytest
from syncproject import write_files
from twilioproject import AS_OF, set_active, write_project

from revseg.destinations.base import Batch, BatchResult, Capabilities, Destination
from revseg.destinations.http import PossiblyDeliveredError
from revseg.destinations.registry import register_destination_type
from revseg.runner import Runner
from revseg.sandbox.webhook import WebhookReceiver

pytestmark = pytest.mark.duckdb


class LostAnswer(Destination):
    """Texts each entity; the first send's answer is lost (the core's PossiblyDeliveredError)."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        modes=frozenset({"trigger"}), identifier_kinds=frozenset({"phone"}), requires_identifier=True)
    sent: ClassVar[list[str]] = []
    lose_next: ClassVar[bool] = True

    def send(self, batch: Batch) -> BatchResult:
        for op in batch.operations:
            type(self).sent.append(op.id)  # the message reached the API
            if type(self).lose_next:
                type(self).lose_next = False
                raise PossiblyDeliveredError("POST /Messages.json: ReadTimeout (may have been delivered; not resent)")
        return BatchResult()


@pytest.fixture
def lost_answer() -> Iterator[type[LostAnswer]]:
    register_destination_type("lost_answer", LostAnswer)
    LostAnswer.sent, LostAnswer.lose_next = [], True
    yield LostAnswer


def project(root: Path, template: str, destination: str) -> Path:
    syncs = [{"destination": "sms", "mode": "trigger", "identifiers": {"phone": "phone"}, "template": template}]
    customers = [(1, "+14155550101", "Ann", True), (2, "+14155550102", None, False)]
    return write_project(root, syncs, {"sms": {"type": destination}}, customers)


def test_a_possibly_delivered_trigger_is_not_sent_again(tmp_path: Path, lost_answer: type[LostAnswer]) -> None:
    """``SyncRun._send`` catches every non-transient ``DeliveryError`` of a trigger batch as
    "the API refused the whole batch: nothing was sent" and records each operation as a
    rejection, which ``acknowledge`` turns into a retry (``on: enter``: the id leaves
    ``sync_members``; the triggers row becomes ``rejected``, which ``_recent`` ignores). But
    ``PossiblyDeliveredError`` (raised by ``HttpCore.request(idempotent=False)``) subclasses
    ``DeliveryError`` and means the opposite: the request may have reached the API. So the
    next run sends the message again, breaking SPEC 3's at-most-once. Fix: treat
    ``PossiblyDeliveredError`` like ``TransientDeliveryError`` there (leave the batch as
    intent, never retried), or acknowledge it without rejections."""
    root = project(tmp_path, "Hi {{ first_name }}", "lost_answer")
    Runner(root).sync(as_of=AS_OF)  # first sync: Ann recorded, nothing sent
    set_active(root, AS_OF + timedelta(hours=1), active=[2])
    Runner(root).sync(as_of=AS_OF + timedelta(hours=1))  # customer 2 enters; the answer is lost
    assert lost_answer.sent == ["2"]
    Runner(root).sync(as_of=AS_OF + timedelta(hours=2))
    assert lost_answer.sent == ["2"], "the possibly delivered message was sent a second time"


class Quiet(Destination):
    capabilities: ClassVar[Capabilities] = LostAnswer.capabilities
    messages: ClassVar[dict[str, str | None]] = {}

    def send(self, batch: Batch) -> BatchResult:
        type(self).messages.update((op.id, op.message) for op in batch.operations)
        return BatchResult()


def test_a_template_that_fails_on_one_record_rejects_that_record(tmp_path: Path) -> None:
    """``prepare_page`` (runner/operations.py) catches only ``jinja2.TemplateError`` around ``template.render``.
    A template that is valid but fails on one record's data with an ordinary exception
    (``{{ first_name + '!' }}`` on a NULL first name raises TypeError, ``{{ 1 / n }}`` a
    ZeroDivisionError) escapes the delivery loop and aborts the whole run with a traceback, on
    every run: one bad record blocks its sync and every segment after it. SPEC: a template
    error in a record is a rejection. Fix: catch ``Exception`` there (keeping the reason)."""
    register_destination_type("quiet_sms", Quiet)
    Quiet.messages = {}
    root = project(tmp_path, "Hi {{ first_name + '!' }}", "quiet_sms")
    Runner(root).sync(as_of=AS_OF)
    set_active(root, AS_OF + timedelta(hours=1), active=[2])
    [report] = Runner(root).sync(as_of=AS_OF + timedelta(hours=1)).syncs
    assert report.rejected == 1 and report.rejections[0]["id"] == "2"


def hooks(url: str) -> dict[str, object]:
    return {"type": "webhook", "options": {"url": url, "timeout": "2s"}, "max_retries": 1}


def test_a_trigger_batch_that_never_reached_the_endpoint_is_sent_by_the_next_run(tmp_path: Path) -> None:
    """``SyncRun._outcome`` re-raised every ``TransientDeliveryError`` as "may have been
    delivered", leaving the trigger batch in flight, which the next run's ``recover`` counts
    as sent. But retries exhausted on connection refused prove nothing reached the endpoint
    (SPEC 3: only a send that *may* have reached the API is not retried), so a webhook (or
    any destination) that was down for one run lost its triggers for good. Fix: the HTTP core
    says whether any attempt may have been delivered (``maybe_delivered``); a trigger batch
    that never was is recorded as a rejection (retried next run) and the sync fails."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{closed.getsockname()[1]}/hooks"  # nothing listens there
    syncs = [{"destination": "hooks", "mode": "trigger", "template": "Hi {{ first_name }}"}]
    root = write_project(tmp_path, syncs, {"hooks": hooks(down)}, [(1, None, "Ann", True), (2, None, "Bob", False)])
    Runner(root).sync(as_of=AS_OF)  # first sync: Ann recorded, nothing sent
    set_active(root, AS_OF + timedelta(hours=1), active=[2])
    [report] = Runner(root).sync(as_of=AS_OF + timedelta(hours=1)).syncs
    assert report.status == "failed" and report.triggered == 0 and "ConnectError" in str(report.error)
    with WebhookReceiver() as receiver:
        write_files(root, {"destinations/hooks.yml": {"name": "hooks", **hooks(receiver.url)}})
        [report] = Runner(root).sync(as_of=AS_OF + timedelta(hours=2)).syncs
        assert (report.status, report.triggered) == ("success", 1)
        assert receiver.triggers == [("2", "Hi Bob")]


def test_a_trigger_batch_refused_whole_fails_the_sync_and_is_sent_by_the_next_run(tmp_path: Path) -> None:
    """A webhook answering 400 fails the batch for this run (SPEC 3.1) and the run's status is
    ``failed`` when a sync failed (SPEC 5); a trigger sync reported it only as rejections
    (status ``partial``) and went on sending its later batches."""
    with WebhookReceiver() as receiver:
        syncs = [{"destination": "hooks", "mode": "trigger", "template": "Hi {{ first_name }}", "batch_size": 1}]
        customers = [(1, None, "Ann", False), (2, None, "Bob", False), (3, None, "Cy", False)]
        root = write_project(tmp_path, syncs, {"hooks": hooks(receiver.url)}, customers)
        Runner(root).sync(as_of=AS_OF)
        set_active(root, AS_OF + timedelta(hours=1), active=[1, 2, 3])
        receiver.fail_next(1, status=400, skip=1)  # the second batch is refused
        run = Runner(root).sync(as_of=AS_OF + timedelta(hours=1))
        [report] = run.syncs
        assert (run.status, report.status, report.triggered) == ("failed", "failed", 1)
        assert "HTTP 400" in str(report.error) and len(receiver.deliveries) == 2  # the third waits
        [report] = Runner(root).sync(as_of=AS_OF + timedelta(hours=2)).syncs
        assert (report.status, report.triggered) == ("success", 2)
        assert sorted(receiver.triggers) == [("1", "Hi Ann"), ("2", "Hi Bob"), ("3", "Hi Cy")]
