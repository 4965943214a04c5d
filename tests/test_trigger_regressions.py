"""Trigger-mode defects of the runner (``runner/sync.py``), found while building the twilio
destination. Both tests fail until the runner is fixed; see each docstring for the fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

import pytest
from twilioproject import AS_OF, set_active, write_project

from revseg.destinations.base import Batch, BatchResult, Capabilities, Destination
from revseg.destinations.http import PossiblyDeliveredError
from revseg.destinations.registry import register_destination_type
from revseg.runner import Runner

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
