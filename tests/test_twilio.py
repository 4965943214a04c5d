"""The twilio destination against the Twilio emulator, over real HTTP; then trigger syncs
end to end through ``revseg sync --json`` (see ``twilioproject.py``)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from syncproject import sync
from twilioproject import AS_OF, TOKEN_VAR, set_active, twilio, write_project

from revseg.destinations.base import Batch, DeliverySettings, Operation
from revseg.destinations.http import EXTRA_SLEEP, EXTRA_TRANSPORT
from revseg.destinations.registry import get_destination_type
from revseg.destinations.twilio import TwilioDestination, TwilioOptions, e164
from revseg.errors import DeliveryError, TransientDeliveryError
from revseg.sandbox.openapi import load_spec, validate
from revseg.sandbox.twilio_emulator import TwilioEmulator

pytestmark = pytest.mark.http


@pytest.fixture
def emu() -> Iterator[TwilioEmulator]:
    with TwilioEmulator() as running:
        yield running


def trigger(record_id: str, phone: str | None, message: str | None = "Hi") -> Operation:
    return Operation("trigger", record_id, {"phone": phone}, {"phone": phone} if phone else {}, message)


def batch(*ops: Operation, number: int = 1) -> Batch:
    return Batch("r20260301T120000Z-ab12", "vips.sms", "vips", number, number, AS_OF, ops)


def settings(sleeps: list[float], max_retries: int = 3, **extra: Any) -> DeliverySettings:
    return DeliverySettings(max_retries=max_retries, extra={EXTRA_SLEEP: sleeps.append, **extra})


def destination(emu: TwilioEmulator, sleeps: list[float], *, delivery: DeliverySettings | None = None,
                **options: Any) -> TwilioDestination:
    values: dict[str, Any] = {"account_sid": emu.account_sid, "auth_token": emu.auth_token,
                              "base_url": emu.url, **options}
    if "from" not in values and "messaging_service_sid" not in values:
        values["messaging_service_sid"] = emu.messaging_service_sid
    return TwilioDestination("sms", TwilioOptions.model_validate(values), delivery or settings(sleeps))


def posts(emu: TwilioEmulator) -> int:
    return len(emu.requests("POST"))


def test_registered_with_capabilities_as_data() -> None:
    cls = get_destination_type("twilio")
    assert cls is TwilioDestination
    caps = cls.capabilities
    assert caps.modes == frozenset({"trigger"})
    assert caps.identifier_kinds == frozenset({"phone"}) and caps.requires_identifier
    assert caps.hashed_identifiers == frozenset() and not caps.supports_update


def test_options_need_exactly_one_sender_and_keep_the_token_secret(emu: TwilioEmulator) -> None:
    base = {"account_sid": emu.account_sid, "auth_token": "tok-secret-123"}
    opts = TwilioOptions.model_validate({**base, "from": "+15005550006"})
    assert opts.from_ == "+15005550006" and opts.base_url == "https://api.twilio.com/2010-04-01"
    assert "tok-secret-123" not in repr(opts)
    for bad in ({}, {"from": "+15005550006", "messaging_service_sid": emu.messaging_service_sid}):
        with pytest.raises(ValidationError, match="exactly one of messaging_service_sid or from"):
            TwilioOptions.model_validate({**base, **bad})
    for bad in ({"account_sid": "AC123"}, {"messaging_service_sid": "MG1"}, {"colour": 1}):
        with pytest.raises(ValidationError) as info:
            TwilioOptions.model_validate({**base, "from": "+15005550006", **bad})
        assert "tok-secret-123" not in str(info.value)


def test_e164_refuses_numbers_without_a_country_code() -> None:
    assert e164("+44 20 7946 0958") == "+442079460958"
    assert e164("(415) 555-2671") is None and e164("+0123456789") is None and e164("") is None


def test_exact_request_shape_and_basic_auth(emu: TwilioEmulator) -> None:
    sleeps: list[float] = []
    hook = "https://example.com/twilio/status"
    with destination(emu, sleeps, status_callback=hook) as dest:
        result = dest.send(batch(trigger("1", " +1 (415) 555-0101 ", "Hi Ann"),
                                 trigger("2", "+14155550102", "Hi Bob")))
    assert result.rejected == {}
    [first, _] = emu.requests("POST")
    assert first.request.path == f"/2010-04-01/Accounts/{emu.account_sid}/Messages.json"
    assert first.request.headers["content-type"] == "application/x-www-form-urlencoded"
    token = base64.b64encode(f"{emu.account_sid}:{emu.auth_token}".encode()).decode()
    assert first.request.headers["authorization"] == f"Basic {token}"
    assert emu.forms()[0] == {"To": ["+14155550101"], "Body": ["Hi Ann"],
                              "MessagingServiceSid": [emu.messaging_service_sid], "StatusCallback": [hook]}
    messages = emu.messages()
    assert [(m["to"], m["body"], m["status"]) for m in messages] == [
        ("+14155550101", "Hi Ann", "accepted"), ("+14155550102", "Hi Bob", "accepted")]
    with destination(emu, sleeps, **{"from": "+15005550006"}) as dest:
        assert dest.send(batch(trigger("3", "+14155550103", "Hi Cat"))).rejected == {}
    assert emu.forms()[-1] == {"To": ["+14155550103"], "Body": ["Hi Cat"], "From": ["+15005550006"]}
    assert emu.messages()[-1]["from"] == "+15005550006" and sleeps == []


def test_a_base_url_given_as_the_bare_host_gets_the_api_version(emu: TwilioEmulator) -> None:
    # the doc's URL is https://api.twilio.com/2010-04-01/Accounts/...: the host alone is
    # also "the API's root as the vendor documents it" (SPEC 3)
    root = emu.url.removesuffix("/2010-04-01")
    assert TwilioOptions.model_validate(
        {"account_sid": emu.account_sid, "auth_token": "t", "from": "+15005550006",
         "base_url": f"{root}/"}).base_url == emu.url
    with destination(emu, [], base_url=root) as dest:
        assert dest.send(batch(trigger("1", "+14155550101", "Hi Ann"))).rejected == {}
    [sent] = emu.requests("POST")
    assert sent.request.path == f"/2010-04-01/Accounts/{emu.account_sid}/Messages.json"


def test_unusable_records_are_rejected_without_a_request(emu: TwilioEmulator) -> None:
    with destination(emu, []) as dest:
        result = dest.send(batch(
            trigger("1", "415-555-0101"), trigger("2", None), trigger("3", "+14155550103", "x" * 1601),
            trigger("4", "+14155550104", "  "), trigger("5", "+14155550105", "y" * 1600)))
    assert set(result.rejected) == {"1", "2", "3", "4"}
    assert "E.164" in result.rejected["1"] and "555" not in result.rejected["1"]
    assert "no phone number" in result.rejected["2"]
    assert "1601 characters" in result.rejected["3"] and "1600" in result.rejected["3"]
    assert "empty" in result.rejected["4"]
    assert [m["to"] for m in emu.messages()] == ["+14155550105"]  # 1,600 characters are fine


@pytest.mark.parametrize("code", [21610, 21211, 21614, 21612, 21408, 21608])
def test_twilio_errors_about_a_number_reject_that_record_only(emu: TwilioEmulator, code: int) -> None:
    emu.fail_number("+14155550102", code)
    with destination(emu, []) as dest:
        result = dest.send(batch(trigger("1", "+14155550101"), trigger("2", "+1 415 555 0102"),
                                 trigger("3", "+14155550103")))
    assert list(result.rejected) == ["2"]
    reason = result.rejected["2"]
    assert f"Twilio error {code}" in reason and f"docs/errors/{code}" in reason
    assert "0102" not in reason  # never the phone number
    assert [m["to"] for m in emu.messages()] == ["+14155550101", "+14155550103"]


def test_429_is_retried_and_sends_once(emu: TwilioEmulator) -> None:
    emu.fail_next(2, status=429)
    sleeps: list[float] = []
    with destination(emu, sleeps) as dest:
        assert dest.send(batch(trigger("1", "+14155550101"))).rejected == {}
    assert len(sleeps) == 2 and posts(emu) == 3 and len(emu.messages()) == 1


def test_connect_errors_are_retried_then_fail_the_batch() -> None:
    sleeps: list[float] = []
    with TwilioEmulator() as emu:
        url = emu.url
    options = {"account_sid": emu.account_sid, "auth_token": emu.auth_token, "base_url": url,
               "messaging_service_sid": emu.messaging_service_sid}
    with TwilioDestination("sms", TwilioOptions.model_validate(options), settings(sleeps)) as dest:
        with pytest.raises(DeliveryError) as info:
            dest.send(batch(trigger("1", "+14155550101"), trigger("2", "+14155550102")))
    assert not isinstance(info.value, TransientDeliveryError) and len(sleeps) == 3


@pytest.mark.parametrize("fault", ["timeout", "dropped", "500"])
def test_a_send_that_may_have_reached_twilio_is_never_retried(emu: TwilioEmulator, fault: str) -> None:
    """The message counts as sent (not rejected: that would retry it); the rest of the batch
    and later batches are not sent in this run and come back as rejections (retried later)."""
    {"timeout": lambda: emu.delay_next(1.0), "dropped": emu.drop_next,
     "500": lambda: emu.fail_next(status=500)}[fault]()
    sleeps: list[float] = []
    with destination(emu, sleeps, timeout=timedelta(seconds=0.3)) as dest:
        result = dest.send(batch(trigger("1", "+14155550101"), trigger("2", "+14155550102"),
                                 trigger("3", "+14155550103")))
        assert set(result.rejected) == {"2", "3"}
        assert all(r.startswith("not sent: the answer to the message for '1' was lost")
                   for r in result.rejected.values())
        assert "0101" not in result.rejected["2"]
        with pytest.raises(DeliveryError, match="not sent|was lost"):
            dest.send(batch(trigger("4", "+14155550104"), number=2))
    assert sleeps == [] and posts(emu) <= 1
    deadline = time.monotonic() + 5
    while fault == "timeout" and not emu.messages() and time.monotonic() < deadline:
        time.sleep(0.02)  # the slow emulator applies the send after the client gave up
    assert [m["to"] for m in emu.messages()] == ([] if fault == "500" else ["+14155550101"])


def test_a_lost_answer_mid_batch_keeps_what_was_sent(emu: TwilioEmulator) -> None:
    with destination(emu, []) as dest:
        assert dest.send(batch(trigger("0", "+14155550100"))).rejected == {}
        emu.drop_next()
        result = dest.send(batch(trigger("1", "+14155550101"), trigger("2", "+14155550102"), number=2))
    assert list(result.rejected) == ["2"] and len(emu.messages()) == 2


class FailSecond(httpx.BaseTransport):
    """Forwards to the emulator, but answers the second request with a 401."""

    def __init__(self) -> None:
        self.inner, self.calls = httpx.HTTPTransport(), 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls == 2:
            return httpx.Response(401, json={"code": 20003, "message": "Authenticate",
                                             "more_info": "https://www.twilio.com/docs/errors/20003",
                                             "status": 401})
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_auth_errors_fail_the_batch_without_leaking_the_token(emu: TwilioEmulator) -> None:
    sleeps: list[float] = []
    with destination(emu, sleeps, auth_token="wrong-token-123456") as dest:
        with pytest.raises(DeliveryError) as info:
            dest.send(batch(trigger("1", "+14155550101"), trigger("2", "+14155550102")))
        with pytest.raises(DeliveryError):  # the sync stops trying for this run
            dest.send(batch(trigger("3", "+14155550103"), number=2))
    assert not isinstance(info.value, TransientDeliveryError)
    assert "401" in str(info.value) and "wrong-token-123456" not in str(info.value)
    assert posts(emu) == 1 and sleeps == []
    # after a message went out the batch cannot fail whole (it would be re-sent): the rest is rejected
    delivery = settings([], **{EXTRA_TRANSPORT: FailSecond()})
    with destination(emu, [], delivery=delivery) as dest:
        result = dest.send(batch(trigger("1", "+14155550101"), trigger("2", "+14155550102"),
                                 trigger("3", "+14155550103")))
    assert set(result.rejected) == {"2", "3"} and "401" in result.rejected["2"]
    assert len(emu.messages()) == 1


def test_the_emulator_is_strict(emu: TwilioEmulator) -> None:
    path = f"/Accounts/{emu.account_sid}/Messages.json"
    ok = {"To": "+14155552671", "Body": "Hi Jane", "MessagingServiceSid": emu.messaging_service_sid}
    with httpx.Client(base_url=emu.url, auth=(emu.account_sid, emu.auth_token)) as client:
        def code(data: dict[str, Any], url: str = path) -> int:
            answer = client.post(url, data=data)
            assert set(answer.json()) == {"code", "message", "more_info", "status"}
            return int(answer.json()["code"])

        created = client.post(path, data=ok)
        assert created.status_code == 201
        assert validate(created.json(), {"$ref": "#/components/schemas/api.v2010.account.message"},
                        load_spec("twilio")) == []
        assert code({"Body": "x", "From": "+15005550006"}) == 21604
        assert code({"To": "+14155552671", "Body": "x"}) == 21603  # one of From / MessagingServiceSid
        assert code({"To": "+14155552671", "From": "+15005550006"}) == 21619  # one of Body / MediaUrl / ContentSid
        assert code({**ok, "To": "4155552671"}) == 21211
        assert code({**ok, "Body": "x" * 1601}) == 21617
        assert code({**ok, "ValidityPeriod": "soon"}) == 20001  # typed by the schema: an integer
        assert client.post(path, data={**ok, "ValidityPeriod": "600"}).status_code == 201
        assert code({**ok, "MessagingServiceSid": "MG123"}) == 21701
        assert code({"To": "+14155552671", "Body": "x", "From": "+15551112222"}) == 21606
        both = client.post(path, data={**ok, "From": "+15005550006"})  # From in the service's pool
        assert both.status_code == 201 and both.json()["status"] == "queued"
        assert code(ok, f"/Accounts/AC{'9' * 32}/Messages.json") == 20404
        assert client.post(path, json=ok).json()["code"] == 21604  # JSON is not a form
    assert httpx.post(emu.url + path, data=ok, auth=(emu.account_sid, "nope")).json()["code"] == 20003
    assert len(emu.messages()) == 3


# -- end to end: trigger syncs through the CLI ------------------------------------------
PHONES = {i: f"+1415555{i:04d}" for i in range(1, 8)}
CUSTOMERS = [
    (1, PHONES[1], "Ann", True),
    (2, PHONES[2], "Bob", True),
    (3, PHONES[3], "Cat", False),  # enters at t1, leaves, re-enters within the cooldown and after it
    (4, PHONES[4], None, False),  # enters at t1: its template fails (no first name)
    (5, PHONES[5], "Eve", False),  # enters at t1: unsubscribed at Twilio (21610)
    (6, None, "Fay", False),  # enters at t1: no phone, skipped
]


def texts(emu: TwilioEmulator, seen: int) -> list[tuple[str, str]]:
    return sorted((m["to"], m["body"]) for m in emu.messages()[seen:])


def report_of(report: dict[str, Any], destination: str) -> dict[str, Any]:
    [found] = [s for s in report["syncs"] if s["destination"] == destination]
    return dict(found)


@pytest.mark.duckdb
def test_trigger_syncs_end_to_end(tmp_path: Any, emu: TwilioEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_VAR, emu.auth_token)
    syncs = [
        {"destination": "sms_enter", "mode": "trigger", "on": "enter", "identifiers": {"phone": "phone"},
         "template": "Hi {{ first_name.strip() }}", "cooldown": "2d", "max_attempts": 1},
        {"destination": "sms_exit", "mode": "trigger", "on": "exit", "identifiers": {"phone": "phone"},
         "template": "Bye {{ first_name }}"},
    ]
    destinations = {
        "sms_enter": twilio(emu.url, emu.account_sid, messaging_service_sid=emu.messaging_service_sid),
        "sms_exit": twilio(emu.url, emu.account_sid, **{"from": emu.numbers[0]}),
    }
    project = write_project(tmp_path, syncs, destinations, CUSTOMERS)
    emu.fail_number(PHONES[5], 21610)
    t0 = AS_OF
    steps: list[tuple[datetime, list[tuple[str, str]]]] = []

    def step(at: datetime, code: int = 0) -> dict[str, Any]:
        seen = len(emu.messages())
        report = sync(project, at, code=code)
        assert emu.auth_token not in report["_stderr"] + json.dumps(report)
        steps.append((at, texts(emu, seen)))
        return report

    # first sync: current members (Ann, Bob) recorded as triggered; nothing sent
    first = step(t0)
    assert steps[-1][1] == [] and report_of(first, "sms_enter")["triggered"] == 0
    # t1: Cat, 4, Eve and Fay enter: Cat gets one text (after a 429 the CLI retries)
    emu.fail_next(status=429, retry_after=0)
    set_active(project, t0 + timedelta(hours=1), active=[3, 4, 5, 6])
    t1 = step(t0 + timedelta(hours=1), code=1)
    assert steps[-1][1] == [(PHONES[3], "Hi Cat")]
    enter = report_of(t1, "sms_enter")
    assert (enter["triggered"], enter["rejected"], enter["skipped"]) == (1, 2, 1)
    reasons = {r["id"]: r["reason"] for r in enter["rejections"]}
    assert reasons["4"].startswith("template error") and "21610" in reasons["5"]
    assert PHONES[5] not in json.dumps(t1) and PHONES[5][-4:] not in reasons["5"]
    # t2: Ann and Cat leave: the exit sync says goodbye
    set_active(project, t0 + timedelta(hours=2), inactive=[1, 3])
    step(t0 + timedelta(hours=2))
    assert steps[-1][1] == [(PHONES[1], "Bye Ann"), (PHONES[3], "Bye Cat")]
    # t3: both come back: Ann was never texted on entry (first sync), Cat was, 2h ago: cooldown
    set_active(project, t0 + timedelta(hours=3), active=[1, 3])
    back = step(t0 + timedelta(hours=3))
    assert steps[-1][1] == [(PHONES[1], "Hi Ann")]
    assert report_of(back, "sms_enter")["suppressed"] == 1
    # t4: Cat leaves again; 2d after her first text she re-enters and is texted again
    set_active(project, t0 + timedelta(hours=4), inactive=[3])
    step(t0 + timedelta(hours=4))
    assert steps[-1][1] == [(PHONES[3], "Bye Cat")]
    set_active(project, t0 + timedelta(days=2, hours=2), active=[3])
    step(t0 + timedelta(days=2, hours=2))
    assert steps[-1][1] == [(PHONES[3], "Hi Cat")]
    assert len(emu.messages()) == 6


@pytest.mark.duckdb
def test_backfill_texts_every_current_member_once(tmp_path: Any, emu: TwilioEmulator,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_VAR, emu.auth_token)
    syncs = [{"destination": "sms", "mode": "trigger", "identifiers": {"phone": "phone"},
              "template": "Hi {{ first_name }}", "backfill": True}]
    project = write_project(tmp_path, syncs, {"sms": twilio(emu.url, emu.account_sid, **{"from": emu.numbers[0]})},
                            CUSTOMERS[:3])
    report = sync(project, AS_OF)
    assert report_of(report, "sms")["triggered"] == 2
    assert texts(emu, 0) == [(PHONES[1], "Hi Ann"), (PHONES[2], "Hi Bob")]
    sync(project, AS_OF + timedelta(hours=1))
    assert len(emu.messages()) == 2
