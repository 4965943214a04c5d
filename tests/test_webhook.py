"""The webhook destination against the real test receiver over HTTP (SPEC 3.1)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from revseg.destinations.base import Batch, DeliverySettings, Operation
from revseg.destinations.http import EXTRA_SLEEP
from revseg.destinations.webhook import (
    WebhookDestination,
    WebhookOptions,
    encode_batch,
    message_id,
)
from revseg.errors import DeliveryError, TransientDeliveryError
from revseg.sandbox.webhook import WebhookReceiver

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
RUN_ID = "r20261128T170000Z-3f2a"
AS_OF = datetime(2026, 11, 28, 17, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parent.parent

ADD = Operation("add", "c_42", {"email": "a@example.com", "ltv": Decimal("812.50")})
REMOVE = Operation("remove", "c_7")


def make_batch(*operations: Operation, number: int = 1, seq: int = 1) -> Batch:
    return Batch(
        RUN_ID, "cart_abandoners.hooks", "cart_abandoners", number, seq, AS_OF, operations or (ADD,)
    )


def make_destination(
    url: str,
    *,
    secret: str | None = SECRET,
    timeout: str = "5s",
    max_retries: int = 3,
    sleeps: list[float] | None = None,
    clock: Callable[[], float] | None = None,
) -> WebhookDestination:
    raw: dict[str, object] = {"url": url, "timeout": timeout}
    if secret is not None:
        raw["secret"] = secret
    extra: dict[str, object] = {EXTRA_SLEEP: (sleeps if sleeps is not None else []).append}
    if clock is not None:
        extra["clock"] = clock
    settings = DeliverySettings(max_retries=max_retries, extra=extra)
    return WebhookDestination("hooks", WebhookOptions.model_validate(raw), settings)


def expected_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """The Standard Webhooks reference signer, written independently of revseg's."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as running:
        yield running


# -- without HTTP ----------------------------------------------------------------------
def test_body_is_exact_minified_json() -> None:
    batch = make_batch(
        ADD,
        REMOVE,
        Operation(
            "update", "c_9", {"email": "b@example.com", "ltv": Decimal("0.10000000000000000001")}
        ),
        Operation(
            "trigger",
            "c_5",
            {
                "first_name": "Ann",
                "seen": datetime(2026, 11, 27, 8, 30, 0, 250000),
                "born": date(1990, 2, 3),
            },
            message="Hi Ann",
        ),
        number=3,
    )
    assert encode_batch(batch) == (
        b'{"type":"segment.membership.changed","sync":"cart_abandoners.hooks",'
        b'"segment":"cart_abandoners","run_id":"r20261128T170000Z-3f2a","batch":3,'
        b'"as_of":"2026-11-28T17:00:00Z","operations":['
        b'{"op":"add","id":"c_42","traits":{"email":"a@example.com","ltv":812.5}},'
        b'{"op":"remove","id":"c_7"},'
        b'{"op":"update","id":"c_9","traits":{"email":"b@example.com",'
        b'"ltv":"0.10000000000000000001"}},'
        b'{"op":"trigger","id":"c_5","traits":{"first_name":"Ann",'
        b'"seen":"2026-11-27T08:30:00.250000Z","born":"1990-02-03"},"message":"Hi Ann"}]}'
    )


@pytest.mark.parametrize(
    ("as_of", "text"),
    [
        (datetime(2026, 11, 28, 17, 0, 5, 120), "2026-11-28T17:00:05.000120Z"),
        (
            datetime(2026, 11, 28, 19, 0, tzinfo=timezone(timedelta(hours=2))),
            "2026-11-28T17:00:00Z",
        ),
    ],
)
def test_as_of_is_utc_with_z(as_of: datetime, text: str) -> None:
    batch = Batch(RUN_ID, "s.hooks", "s", 1, 1, as_of, (REMOVE,))
    assert json.loads(encode_batch(batch))["as_of"] == text


def test_webhook_id_is_run_and_seq_without_dots() -> None:
    assert message_id(make_batch(seq=17)) == f"{RUN_ID}_17"
    dotted = Batch("r1.5", "s.hooks", "s", 1, 2, AS_OF, (ADD,))
    with pytest.raises(DeliveryError, match="must not contain"):
        message_id(dotted)


@pytest.mark.parametrize(
    "secret", ["abc", "whsec_", "whsec_not base64!", "whsk_" + SECRET[6:], SECRET[6:], "whsec_YQ"]
)
def test_bad_secret_format_is_a_validation_error(secret: str) -> None:
    with pytest.raises(ValidationError) as info:
        WebhookOptions.model_validate({"url": "https://example.com/h", "secret": secret})
    message = str(info.value)
    assert "secret must be 'whsec_' followed by a base64 key" in message
    assert "input_value" not in message  # a secret is never echoed


def test_options_defaults_and_errors() -> None:
    options = WebhookOptions.model_validate({"url": "https://example.com/h"})
    assert options.timeout == timedelta(seconds=30) and options.secret is None
    assert WebhookOptions.model_validate(
        {"url": "https://example.com/h", "timeout": "2m"}
    ).timeout == timedelta(minutes=2)
    for bad in [
        {"url": "example.com/h"},
        {"url": "ftp://example.com"},
        {},
        {"url": "https://example.com", "timeout": "30"},
        {"url": "https://example.com", "timeout": "0s"},
        {"url": "https://example.com", "retries": 3},
    ]:
        with pytest.raises(ValidationError):
            WebhookOptions.model_validate(bad)
    assert "whsec" not in repr(
        WebhookOptions.model_validate({"url": "https://e.com", "secret": SECRET})
    )


def test_capabilities() -> None:
    caps = WebhookDestination.capabilities
    assert caps.modes == {"mirror", "upsert", "trigger"}
    assert caps.max_batch_size == 10_000


# -- over HTTP -------------------------------------------------------------------------
@pytest.mark.http
def test_signed_delivery_has_exact_headers(receiver: WebhookReceiver) -> None:
    before = int(time.time())
    with make_destination(receiver.url) as destination:
        result = destination.send(make_batch(ADD, seq=7))
    assert result.rejected == {}
    [delivery] = receiver.deliveries
    assert delivery.status == 200
    headers = delivery.headers
    assert set(headers) == {
        "host",
        "accept",
        "accept-encoding",
        "connection",
        "user-agent",
        "content-length",
        "content-type",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
    assert {k for k in headers if k.startswith("webhook-")} == {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "revseg/0.1.0"
    assert headers["webhook-id"] == f"{RUN_ID}_7"
    assert before <= int(headers["webhook-timestamp"]) <= time.time() + 1
    assert headers["webhook-signature"] == expected_signature(
        SECRET, headers["webhook-id"], headers["webhook-timestamp"], delivery.body
    )
    assert delivery.body == encode_batch(make_batch(ADD, seq=7))
    assert receiver.audience == {"c_42": {"email": "a@example.com", "ltv": 812.5}}


@pytest.mark.http
def test_operations_converge_on_the_receiver(receiver: WebhookReceiver) -> None:
    with make_destination(receiver.url) as destination:
        destination.send(make_batch(ADD, Operation("add", "c_7", {"email": "c@x"}), seq=1))
        destination.send(
            make_batch(
                REMOVE,
                Operation("update", "c_42", {"email": "new@x"}),
                Operation("trigger", "c_42", {"email": "new@x"}, message="hello"),
                number=2,
                seq=2,
            )
        )
    assert receiver.audience == {"c_42": {"email": "new@x"}}
    assert receiver.triggers == [("c_42", "hello")]


@pytest.mark.http
def test_without_secret_no_signature_is_sent() -> None:
    with WebhookReceiver() as receiver, make_destination(receiver.url, secret=None) as dest:
        dest.send(make_batch())
        [delivery] = receiver.deliveries
    assert "webhook-signature" not in delivery.headers
    assert delivery.headers["webhook-id"] == f"{RUN_ID}_1"


@pytest.mark.http
def test_server_errors_are_retried_with_fresh_timestamps(receiver: WebhookReceiver) -> None:
    receiver.fail_next(2, status=500)
    ticks = iter([time.time() - 2, time.time() - 1, time.time()])
    sleeps: list[float] = []
    with make_destination(receiver.url, sleeps=sleeps, clock=lambda: next(ticks)) as dest:
        dest.send(make_batch(seq=4))
    assert [d.status for d in receiver.deliveries] == [500, 500, 200]
    assert [d.attempt for d in receiver.deliveries] == [1, 2, 3]
    assert {d.headers["webhook-id"] for d in receiver.deliveries} == {f"{RUN_ID}_4"}
    stamps = [d.headers["webhook-timestamp"] for d in receiver.deliveries]
    assert len(set(stamps)) == 3
    for delivery in receiver.deliveries:
        assert delivery.body == receiver.deliveries[0].body
        assert delivery.headers["webhook-signature"] == expected_signature(
            SECRET, f"{RUN_ID}_4", delivery.headers["webhook-timestamp"], delivery.body
        )
    assert len(sleeps) == 2
    assert receiver.audience == {"c_42": {"email": "a@example.com", "ltv": 812.5}}


@pytest.mark.http
def test_429_retry_after_is_honoured(receiver: WebhookReceiver) -> None:
    receiver.fail_next(1, status=429, retry_after=1)
    sleeps: list[float] = []
    with make_destination(receiver.url, sleeps=sleeps) as destination:
        destination.send(make_batch())
    assert sleeps == [1.0]
    assert receiver.attempts(f"{RUN_ID}_1") == 2 and "c_42" in receiver.audience


@pytest.mark.http
def test_timeout_is_retried_and_the_late_copy_is_deduplicated() -> None:
    receiver = WebhookReceiver(SECRET).start()
    try:
        receiver.fail_next(1, delay=1.6)  # the first attempt outlives the 1 s timeout
        with make_destination(receiver.url, timeout="1s") as destination:
            started = time.monotonic()
            destination.send(make_batch(seq=9))
            assert 0.9 < time.monotonic() - started < 1.6
        assert receiver.audience == {"c_42": {"email": "a@example.com", "ltv": 812.5}}
    finally:
        receiver.stop()  # wakes the slow handler, which then finds its id already applied
    assert receiver.attempts(f"{RUN_ID}_9") == 2
    assert sorted(d.duplicate for d in receiver.deliveries) == [False, True]
    assert receiver.audience == {"c_42": {"email": "a@example.com", "ltv": 812.5}}


@pytest.mark.http
def test_exhausted_retries_raise_transient_error(receiver: WebhookReceiver) -> None:
    receiver.fail_next(10, status=503)
    with (
        make_destination(receiver.url, max_retries=2) as destination,
        pytest.raises(TransientDeliveryError, match="HTTP 503"),
    ):
        destination.send(make_batch())
    assert receiver.attempts(f"{RUN_ID}_1") == 3 and receiver.audience == {}


@pytest.mark.http
def test_400_fails_the_batch_at_once(receiver: WebhookReceiver) -> None:
    receiver.fail_next(1, status=400, body='{"error": "unknown segment"}')
    sleeps: list[float] = []
    with (
        make_destination(receiver.url, sleeps=sleeps) as destination,
        pytest.raises(DeliveryError) as info,
    ):
        destination.send(make_batch())
    assert not isinstance(info.value, TransientDeliveryError)
    assert "HTTP 400" in str(info.value) and "unknown segment" in str(info.value)
    assert sleeps == [] and receiver.attempts(f"{RUN_ID}_1") == 1 and receiver.audience == {}


@pytest.mark.http
def test_wrong_secret_is_rejected_by_the_receiver(receiver: WebhookReceiver) -> None:
    other = "whsec_" + base64.b64encode(b"another key, 32 bytes long......").decode()
    with (
        make_destination(receiver.url, secret=other) as destination,
        pytest.raises(DeliveryError, match="HTTP 401"),
    ):
        destination.send(make_batch())
    assert receiver.audience == {}


@pytest.mark.http
def test_receiver_as_a_subprocess(tmp_path: Path) -> None:
    audience_file = tmp_path / "audience.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "revseg.sandbox.webhook",
            "--port",
            "0",
            "--secret",
            SECRET,
            "--audience-file",
            str(audience_file),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        base = f"http://127.0.0.1:{port}"
        httpx.post(f"{base}/_faults", json={"n": 1, "status": 502}).raise_for_status()
        with make_destination(f"{base}/hooks") as destination:
            destination.send(make_batch(ADD, Operation("add", "c_1", {}), seq=1))
            destination.send(make_batch(REMOVE, Operation("remove", "c_1"), number=2, seq=2))
        audience = httpx.get(f"{base}/_audience").json()
        assert audience == {"c_42": {"email": "a@example.com", "ltv": 812.5}}
        assert json.loads(audience_file.read_text()) == audience
        statuses = [d["status"] for d in httpx.get(f"{base}/_deliveries").json()]
        assert statuses == [502, 200, 200]
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
    assert process.returncode == 0
