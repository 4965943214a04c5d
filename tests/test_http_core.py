"""The shared HTTP core against httpx.MockTransport: classification, retries, limits, logs."""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable

import httpx
import pytest

from revseg.destinations.base import DeliverySettings
from revseg.destinations.http import (
    EXTRA_SLEEP,
    EXTRA_TRANSPORT,
    USER_AGENT,
    HttpCore,
    Outcome,
    PossiblyDeliveredError,
    RetryPolicy,
    Verdict,
    classify_status,
    parse_retry_after,
)
from revseg.destinations.ratelimit import TokenBucket
from revseg.destinations.redact import redact_url
from revseg.errors import DeliveryError, TransientDeliveryError

pytestmark = pytest.mark.http

Handler = Callable[[httpx.Request], httpx.Response]
TOKEN = "tok_live_9f8e7d6c5b4a39281706"


class Recorder:
    """A MockTransport handler playing a script of responses (or exceptions) in order."""

    def __init__(self, *script: httpx.Response | Exception) -> None:
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        return step


def make_core(
    handler: Handler, sleeps: list[float] | None = None, max_retries: int = 3, **kwargs: object
) -> HttpCore:
    sleeps = sleeps if sleeps is not None else []
    return HttpCore(
        transport=httpx.MockTransport(handler),
        sleep=sleeps.append,
        policy=RetryPolicy(max_retries=max_retries, base_delay=0.5),
        rng=random.Random(7),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.OK),
        (201, Outcome.OK),
        (204, Outcome.OK),
        (299, Outcome.OK),
        (408, Outcome.TRANSIENT),
        (429, Outcome.TRANSIENT),
        (500, Outcome.TRANSIENT),
        (502, Outcome.TRANSIENT),
        (503, Outcome.TRANSIENT),
        (599, Outcome.TRANSIENT),
        (301, Outcome.TERMINAL),
        (302, Outcome.TERMINAL),
        (307, Outcome.TERMINAL),
        (400, Outcome.TERMINAL),
        (401, Outcome.TERMINAL),
        (404, Outcome.TERMINAL),
        (410, Outcome.TERMINAL),
        (422, Outcome.TERMINAL),
        (100, Outcome.TERMINAL),
    ],
)
def test_classify_status(status: int, outcome: Outcome) -> None:
    assert classify_status(status) is outcome


def test_ok_is_one_attempt_with_user_agent_and_timeouts() -> None:
    recorder = Recorder(httpx.Response(200, json={"ok": True}))
    sleeps: list[float] = []
    with make_core(recorder, sleeps, timeout=12.0) as core:
        response = core.request("POST", "https://api.example.com/v1/x", json={"a": 1})
    assert response.json() == {"ok": True}
    assert len(recorder.requests) == 1 and sleeps == []
    request = recorder.requests[0]
    assert request.headers["user-agent"] == USER_AGENT == "revseg/0.1.0"
    assert request.extensions["timeout"] == {
        "connect": 12.0,
        "read": 12.0,
        "write": 12.0,
        "pool": 12.0,
    }


def test_transient_statuses_are_retried_with_jittered_backoff() -> None:
    recorder = Recorder(
        httpx.Response(503), httpx.Response(500), httpx.Response(408), httpx.Response(200)
    )
    sleeps: list[float] = []
    with make_core(recorder, sleeps) as core:
        assert core.request("GET", "https://api.example.com/").status_code == 200
    assert len(recorder.requests) == 4
    assert len(sleeps) == 3
    for retry, delay in enumerate(sleeps, start=1):
        assert 0.0 <= delay <= 0.5 * 2 ** (retry - 1)


def test_retries_are_bounded_then_transient_error() -> None:
    recorder = Recorder(httpx.Response(502, text="bad gateway"))
    sleeps: list[float] = []
    with (
        make_core(recorder, sleeps, max_retries=2) as core,
        pytest.raises(
            TransientDeliveryError, match=r"HTTP 502 Bad Gateway: bad gateway \(gave up after 3"
        ),
    ):
        core.request("GET", "https://api.example.com/")
    assert len(recorder.requests) == 3 and len(sleeps) == 2


def test_zero_retries_means_one_attempt() -> None:
    recorder = Recorder(httpx.Response(500))
    with make_core(recorder, max_retries=0) as core, pytest.raises(TransientDeliveryError):
        core.request("GET", "https://api.example.com/")
    assert len(recorder.requests) == 1


def test_retry_after_seconds_is_honoured_exactly() -> None:
    recorder = Recorder(httpx.Response(429, headers={"retry-after": "7"}), httpx.Response(200))
    sleeps: list[float] = []
    with make_core(recorder, sleeps) as core:
        core.request("GET", "https://api.example.com/")
    assert sleeps == [7.0]


def test_retry_after_http_date_is_honoured() -> None:
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    recorder = Recorder(httpx.Response(503, headers={"retry-after": when}), httpx.Response(200))
    sleeps: list[float] = []
    with make_core(recorder, sleeps) as core:
        core.request("GET", "https://api.example.com/")
    assert len(sleeps) == 1 and 17.0 <= sleeps[0] <= 20.0


def test_too_long_retry_after_gives_up_at_once_with_the_hint() -> None:
    recorder = Recorder(httpx.Response(429, headers={"retry-after": "3600"}))
    sleeps: list[float] = []
    with make_core(recorder, sleeps) as core, pytest.raises(TransientDeliveryError) as info:
        core.request("GET", "https://api.example.com/")
    assert info.value.retry_after == 3600.0
    assert sleeps == [] and len(recorder.requests) == 1


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5", 5.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("-3", 0.0),
        ("", None),
        (None, None),
        ("soon", None),
        ("nan", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 422])
def test_terminal_statuses_fail_at_once_with_status_and_excerpt(status: int) -> None:
    recorder = Recorder(httpx.Response(status, text=f'{{"error": "nope {status}"}}'))
    with make_core(recorder) as core, pytest.raises(DeliveryError) as info:
        core.request("POST", "https://api.example.com/v1/x", content=b"{}")
    assert not isinstance(info.value, TransientDeliveryError)
    assert f"HTTP {status}" in str(info.value) and f"nope {status}" in str(info.value)
    assert len(recorder.requests) == 1


def test_long_error_bodies_are_cut_short() -> None:
    recorder = Recorder(httpx.Response(400, text="x" * 5000))
    with make_core(recorder) as core, pytest.raises(DeliveryError) as info:
        core.request("GET", "https://api.example.com/")
    assert len(str(info.value)) < 400 and str(info.value).endswith("…")


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_never_followed(status: int) -> None:
    recorder = Recorder(
        httpx.Response(status, headers={"location": f"https://evil.example/steal?token={TOKEN}"})
    )
    with make_core(recorder) as core, pytest.raises(DeliveryError) as info:
        core.request("POST", "https://api.example.com/v1/x", content=b"{}")
    assert len(recorder.requests) == 1
    assert not isinstance(info.value, TransientDeliveryError)
    message = str(info.value)
    assert f"HTTP {status}" in message and "redirects are not followed" in message
    assert "evil.example" in message and TOKEN not in message


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("slow connect"),
        httpx.ReadTimeout("slow read"),
        httpx.WriteTimeout("slow write"),
        httpx.ReadError("reset"),
        httpx.RemoteProtocolError("closed without response"),
    ],
)
def test_transport_errors_are_transient(error: Exception) -> None:
    recorder = Recorder(error, httpx.Response(200))
    sleeps: list[float] = []
    with make_core(recorder, sleeps) as core:
        assert core.request("GET", "https://api.example.com/").status_code == 200
    assert len(recorder.requests) == 2 and len(sleeps) == 1


def test_transport_errors_exhaust_into_transient_error() -> None:
    recorder = Recorder(httpx.ReadTimeout("timed out"))
    with (
        make_core(recorder, max_retries=1) as core,
        pytest.raises(TransientDeliveryError, match="ReadTimeout: timed out"),
    ):
        core.request("GET", "https://api.example.com/")
    assert len(recorder.requests) == 2


@pytest.mark.parametrize(
    ("script", "maybe_delivered"),
    [
        ((httpx.ConnectError("refused"),), False),
        ((httpx.Response(429), httpx.ConnectError("refused")), False),
        ((httpx.Response(408),), False),
        ((httpx.ReadTimeout("t"), httpx.ConnectError("refused")), True),
        ((httpx.Response(503), httpx.ConnectError("refused")), True),
    ],
)
def test_exhausted_retries_say_whether_any_attempt_may_have_been_delivered(
    script: tuple[httpx.Response | Exception, ...], maybe_delivered: bool
) -> None:
    """A trigger batch whose attempts never reached the API may be sent again (SPEC 3)."""
    with make_core(Recorder(*script), max_retries=1) as core, pytest.raises(TransientDeliveryError) as info:
        core.request("POST", "https://api.example.com/hooks")
    assert info.value.maybe_delivered is maybe_delivered


def test_unsupported_scheme_is_terminal() -> None:
    with HttpCore() as core, pytest.raises(DeliveryError) as info:
        core.request("GET", "ftp://files.example.com/x")
    assert not isinstance(info.value, TransientDeliveryError)


@pytest.mark.parametrize(
    ("step", "retried"),
    [
        (httpx.ConnectError("refused"), True),
        (httpx.ConnectTimeout("t"), True),
        (httpx.Response(429), True),
        (httpx.Response(408), True),
        (httpx.ReadTimeout("t"), False),
        (httpx.RemoteProtocolError("x"), False),
        (httpx.Response(500), False),
        (httpx.Response(503), False),
    ],
)
def test_non_idempotent_requests_are_retried_only_when_never_delivered(
    step: httpx.Response | Exception, retried: bool
) -> None:
    recorder = Recorder(step, httpx.Response(201))
    with make_core(recorder) as core:
        if retried:
            core.request("POST", "https://api.example.com/sms", idempotent=False)
            assert len(recorder.requests) == 2
        else:
            with pytest.raises(PossiblyDeliveredError, match="may have been delivered"):
                core.request("POST", "https://api.example.com/sms", idempotent=False)
            assert len(recorder.requests) == 1


def test_prepare_runs_before_every_attempt() -> None:
    recorder = Recorder(httpx.Response(500), httpx.Response(200))
    seen: list[int] = []

    def prepare(request: httpx.Request, attempt: int) -> None:
        seen.append(attempt)
        request.headers["x-attempt"] = str(attempt)

    with make_core(recorder) as core:
        core.request("POST", "https://api.example.com/", content=b"abc", prepare=prepare)
    assert seen == [1, 2]
    assert [r.headers["x-attempt"] for r in recorder.requests] == ["1", "2"]
    assert all(r.content == b"abc" for r in recorder.requests)


def test_classify_hook_can_retry_fail_or_accept() -> None:
    def classify(response: httpx.Response) -> Verdict | None:
        error = response.json().get("error") if response.content else None
        if error == "throttled":
            return Verdict(Outcome.TRANSIENT, "throttled", retry_after=2.0)
        if error == "partial":
            return Verdict(Outcome.OK)  # the destination maps per-record errors itself
        if response.status_code == 200 and error:
            return Verdict(Outcome.TERMINAL, f"API error: {error}")
        return None

    recorder = Recorder(
        httpx.Response(400, json={"error": "throttled"}),
        httpx.Response(422, json={"error": "partial"}),
    )
    sleeps: list[float] = []
    with make_core(recorder, sleeps, classify=classify) as core:
        assert core.request("GET", "https://api.example.com/").status_code == 422
    assert sleeps == [2.0]

    recorder = Recorder(httpx.Response(200, json={"error": "invalid audience"}))
    with (
        make_core(recorder, classify=classify) as core,
        pytest.raises(DeliveryError, match="API error: invalid audience"),
    ):
        core.request("GET", "https://api.example.com/")


def test_subclass_can_override_classify() -> None:
    class Api(HttpCore):
        def classify(self, response: httpx.Response) -> Verdict:
            if response.status_code == 400 and b"RATE" in response.content:
                return Verdict(Outcome.TRANSIENT, "rate limited")
            return super().classify(response)

    recorder = Recorder(httpx.Response(400, text="RATE"), httpx.Response(200))
    sleeps: list[float] = []
    core = Api(transport=httpx.MockTransport(recorder), sleep=sleeps.append)
    with core:
        core.request("GET", "https://api.example.com/")
    assert len(recorder.requests) == 2


def test_logs_and_errors_never_show_credentials(caplog: pytest.LogCaptureFixture) -> None:
    signature = "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="
    recorder = Recorder(
        httpx.Response(503, text=f"upstream said: Bearer {TOKEN}"),
        httpx.Response(401, json={"error": "bad token", "access_token": TOKEN}),
    )
    caplog.set_level(logging.DEBUG, logger="revseg.http")
    caplog.set_level(logging.INFO, logger="httpx")  # httpx logs every URL at INFO
    core = make_core(recorder, headers={"authorization": f"Bearer {TOKEN}"}, secrets=[TOKEN])
    with core, pytest.raises(DeliveryError) as info:
        core.request(
            "POST",
            "https://api.example.com/v1/x",
            params={"access_token": TOKEN, "audience": "42"},
            headers={"webhook-signature": signature, "x-api-key": TOKEN},
            content=b"{}",
        )
    assert recorder.requests[0].headers["authorization"] == f"Bearer {TOKEN}"  # sent, not logged
    logged = caplog.text
    assert caplog.records, "the core logs its requests"
    assert {r.name for r in caplog.records} == {"revseg.http", "httpx"}
    for text in (logged, str(info.value)):
        assert TOKEN not in text
        assert signature.split(",", 1)[1] not in text
    assert "audience=42" in logged and "[redacted]" in logged
    assert "HTTP 401" in str(info.value)


def test_redact_url_hides_path_tokens_and_userinfo() -> None:
    url = "https://user:pw@hooks.example.com/services/T0001/B0002/aZ3kQ9xW7pL2mN5vB8cR4tY6?x=1"
    shown = redact_url(url)
    assert shown == "https://hooks.example.com/services/T0001/B0002/[redacted]?x=1"


def test_token_bucket_spaces_requests_at_the_rate() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    bucket = TokenBucket(4.0, clock=lambda: now[0], sleep=sleep)
    waits = [bucket.acquire() for _ in range(12)]
    assert waits[:4] == [0.0] * 4  # the burst: one second's worth
    assert waits[4:] == pytest.approx([0.25] * 8)
    assert now[0] == pytest.approx(2.0)
    now[0] += 10.0  # idle time refills to capacity, never beyond
    assert [bucket.acquire() for _ in range(5)] == pytest.approx([0, 0, 0, 0, 0.25])


def test_rate_limit_from_settings_throttles_requests() -> None:
    sleeps: list[float] = []
    recorder = Recorder(httpx.Response(200))
    settings = DeliverySettings(
        rate_limit_per_s=2.0,
        extra={EXTRA_TRANSPORT: httpx.MockTransport(recorder), EXTRA_SLEEP: sleeps.append},
    )
    with HttpCore.from_settings(settings) as core:
        for _ in range(5):
            core.request("GET", "https://api.example.com/")
    # 2 tokens of burst, then each request waits for its own token: 0.5 s of debt more each
    # time, since the injected sleep lets no real time pass.
    assert sleeps == pytest.approx([0.5, 1.0, 1.5], abs=0.05)


def test_from_settings_takes_max_retries() -> None:
    recorder = Recorder(httpx.Response(500))
    settings = DeliverySettings(
        max_retries=1,
        extra={EXTRA_TRANSPORT: httpx.MockTransport(recorder), EXTRA_SLEEP: lambda s: None},
    )
    with HttpCore.from_settings(settings) as core, pytest.raises(TransientDeliveryError):
        core.request("GET", "https://api.example.com/")
    assert len(recorder.requests) == 2
