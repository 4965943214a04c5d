"""The meta destination against the Meta emulator over real HTTP (destinations/meta.md)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from adproject import (
    T0,
    Customer,
    cli,
    customers,
    email_hash,
    phone_hash,
    sha,
    sync_in_process,
    upsert,
    write_project,
)
from pydantic import ValidationError
from syncproject import sync

from revseg.destinations.base import Batch, BatchResult, DeliverySettings, Operation
from revseg.destinations.columns import OperationColumns
from revseg.destinations.http import EXTRA_SLEEP
from revseg.destinations.meta import MetaDestination, MetaOptions, session_id
from revseg.destinations.registry import get_destination_type
from revseg.errors import DeliveryError, TransientDeliveryError
from revseg.sandbox.emulator import Fault
from revseg.sandbox.graph import error_body
from revseg.sandbox.meta_emulator import MetaEmulator

pytestmark = pytest.mark.http

TOKEN = "meta-test-token"
AS_OF = datetime(2026, 11, 28, 17, 0, tzinfo=UTC)
JANE = sha("jane.doe@example.com")
PHONE = sha("14155552671")
MARY = sha("mary")


@pytest.fixture
def emu() -> Iterator[MetaEmulator]:
    with MetaEmulator(access_token=TOKEN) as running:
        yield running


def make(
    emu: MetaEmulator, sleeps: list[float] | None = None, max_retries: int = 3, **options: Any
) -> MetaDestination:
    raw = {
        "audience_id": emu.audience_id,
        "access_token": TOKEN,
        "base_url": emu.url,
        "timeout": timedelta(seconds=5),
        **options,
    }
    extra = {EXTRA_SLEEP: (sleeps if sleeps is not None else []).append}
    settings = DeliverySettings(max_retries=max_retries, extra=extra)
    return MetaDestination("meta_aud", MetaOptions.model_validate(raw), settings)


def op(kind: str, record_id: str, **identifiers: str) -> Operation:
    return Operation(kind, record_id, {}, identifiers)  # type: ignore[arg-type]


def batch(*operations: Operation, seq: int = 1) -> Batch:
    return Batch("r20261128T170000Z-3f2a", "vips.meta_aud", "vips", 1, seq, AS_OF, operations)


def send(emu: MetaEmulator, *operations: Operation, **kwargs: Any) -> dict[str, str]:
    with make(emu, **kwargs) as destination:
        return dict(destination.send(batch(*operations)).rejected)


# -- request shapes ----------------------------------------------------------------------
def test_exact_requests_removes_then_adds_with_hashed_multi_key_rows(emu: MetaEmulator) -> None:
    emu.audiences[emu.audience_id].add(frozenset({("EMAIL", sha("old@example.com"))}))
    rejected = send(
        emu,
        op(
            "add",
            "c1",
            email=" Jane.Doe@Example.com ",
            phone="+1 (415) 555-2671",
            first_name="Mary",
        ),
        op("remove", "c2", email="old@example.com"),
        op("add", "c3", external_id="CRM-42"),
    )
    assert rejected == {}
    delete, post = emu.requests()
    assert (delete.request.method, post.request.method) == ("DELETE", "POST")
    for exchange in (delete, post):
        request = exchange.request
        assert request.path == f"/v26.0/{emu.audience_id}/users"
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.headers["content-type"] == "application/json"
        assert request.query == {}  # no token in the URL
    assert delete.json()["payload"] == {"schema": ["EMAIL"], "data": [[sha("old@example.com")]]}
    body = post.json()
    assert body["payload"] == {
        "schema": ["EXTERN_ID", "EMAIL", "PHONE", "FN"],
        "data": [["", JANE, PHONE, MARY], ["CRM-42", "", "", ""]],
    }
    assert body["session"] == {
        "session_id": session_id(batch(), "POST"),
        "batch_seq": 1,
        "last_batch_flag": True,
        "estimated_num_total": 2,
    }
    assert delete.json()["session"]["session_id"] != body["session"]["session_id"]
    assert emu.audience(emu.audience_id) == {
        frozenset({("EMAIL", JANE), ("PHONE", PHONE), ("FN", MARY)}),
        frozenset({("EXTERN_ID", "CRM-42")}),
    }


def test_already_hashed_values_pass_through(emu: MetaEmulator) -> None:
    assert send(emu, op("add", "c1", email=JANE.upper())) == {}
    assert emu.values(emu.audience_id, "EMAIL") == {JANE}


def test_upload_over_the_cap_is_one_session_split_at_10000(emu: MetaEmulator) -> None:
    adds = [op("add", f"c{i}", email=f"u{i}@example.com") for i in range(25_001)]
    assert send(emu, *adds) == {}
    posts = [e.json() for e in emu.requests("POST")]
    assert [len(p["payload"]["data"]) for p in posts] == [10_000, 10_000, 5_001]
    sessions = [p["session"] for p in posts]
    assert {s["session_id"] for s in sessions} == {session_id(batch(), "POST")}
    assert [(s["batch_seq"], s["last_batch_flag"]) for s in sessions] == [
        (1, False),
        (2, False),
        (3, True),
    ]
    assert {s["estimated_num_total"] for s in sessions} == {25_001}
    assert len(emu.audience(emu.audience_id)) == 25_001
    assert MetaDestination.capabilities.max_batch_size == 10_000


def test_encode_builds_the_requests_and_send_only_posts_them(emu: MetaEmulator) -> None:
    """The runner encodes the next batch while one is in flight, and hands over columns:
    the requests are the ones ``send`` alone builds from a tuple of operations, byte for byte."""
    operations = (
        op("remove", "c0", email="old@example.com"),
        op("add", "c1", email=" Jane.Doe@Example.com ", phone="+1 (415) 555-2671"),
        op("add", "bad", email="n/a"),
        *(op("add", f"c{i}", email=f"u{i}@example.com") for i in range(2, 10_003)),
    )
    with make(emu) as destination:
        plain = destination.send(batch(*operations))
    expected = [(e.request.method, e.request.body) for e in emu.requests()]
    with MetaEmulator(access_token=TOKEN) as other, make(other) as destination:
        columns = replace(batch(), operations=OperationColumns.of(operations))
        encoded = destination.encode(columns)
        assert other.requests() == []
        assert destination.send(encoded) == plain == BatchResult({"bad": plain.rejected["bad"]})
        assert [(e.request.method, e.request.body) for e in other.requests()] == expected
    assert [m for m, _ in expected] == ["DELETE", "POST", "POST"]


def test_appsecret_proof_when_the_app_enforces_it() -> None:
    with MetaEmulator(access_token=TOKEN, app_secret="app-s3cret") as emu:
        assert send(emu, op("add", "c1", email="a@example.com"), app_secret="app-s3cret") == {}
        proof = hmac.new(b"app-s3cret", TOKEN.encode(), hashlib.sha256).hexdigest()
        assert emu.requests()[0].request.param("appsecret_proof") == proof
        with pytest.raises(DeliveryError, match="appsecret_proof") as caught:
            send(emu, op("add", "c2", email="b@example.com"))
        assert not isinstance(caught.value, TransientDeliveryError)


# -- faults --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fault", ["500", "503", "429", "throttle-17", "throttle-4", "throttle-613"]
)
def test_transient_faults_are_retried_and_converge(emu: MetaEmulator, fault: str) -> None:
    if fault.startswith("throttle"):
        emu.throttle_next(2, code=int(fault.split("-")[1]))
    elif fault == "429":
        emu.inject(Fault(429, error_body(4, "Application request limit reached")), 2)
    else:
        emu.fail_next(2, status=int(fault))
    sleeps: list[float] = []
    assert send(emu, op("add", "c1", email="jane.doe@example.com"), sleeps=sleeps) == {}
    posts = emu.requests("POST")
    assert [e.status for e in posts] == [int(fault) if fault.isdigit() else 400] * 2 + [200]
    assert posts[0].request.body == posts[2].request.body  # same session, same batch_seq
    assert len(sleeps) == 2
    assert emu.values(emu.audience_id, "EMAIL") == {JANE}


def test_throttle_waits_for_the_usage_headers_regain_time(emu: MetaEmulator) -> None:
    emu.throttle_next(code=17, regain_minutes=2)
    sleeps: list[float] = []
    assert send(emu, op("add", "c1", email="jane.doe@example.com"), sleeps=sleeps) == {}
    assert sleeps == [120.0]


def test_throttle_longer_than_a_run_waits_is_transient_at_once(emu: MetaEmulator) -> None:
    emu.throttle_next(code=613, regain_minutes=60)
    with pytest.raises(TransientDeliveryError, match="613") as caught:
        send(emu, op("add", "c1", email="jane.doe@example.com"))
    assert caught.value.retry_after == 3600
    assert len(emu.requests()) == 1


def test_timeouts_are_retried_and_converge(emu: MetaEmulator) -> None:
    emu.delay_next(1.0)  # answered after the client gave up: applied anyway, then re-sent
    rejected = send(
        emu, op("add", "c1", email="jane.doe@example.com"), timeout=timedelta(seconds=0.3)
    )
    assert rejected == {}
    assert emu.values(emu.audience_id, "EMAIL") == {JANE}


def test_giving_up_after_max_retries_is_transient(emu: MetaEmulator) -> None:
    emu.fail_next(5)
    with pytest.raises(TransientDeliveryError, match="gave up after 2 attempts"):
        send(emu, op("add", "c1", email="a@example.com"), max_retries=1)


def test_invalid_token_is_terminal_and_not_echoed(emu: MetaEmulator) -> None:
    emu.access_token = "the-right-token"
    with pytest.raises(DeliveryError, match="190") as caught:
        send(emu, op("add", "c1", email="a@example.com"))
    assert not isinstance(caught.value, TransientDeliveryError)
    assert "invalid or expired" in str(caught.value) and TOKEN not in str(caught.value)
    assert len(emu.requests()) == 1


@pytest.mark.parametrize("problem", ["locked", "unknown"])
def test_audience_errors_are_terminal(emu: MetaEmulator, problem: str) -> None:
    audience, expected = emu.audience_id, "1713230"
    if problem == "locked":
        emu.lock_audience(audience)
    else:
        audience, expected = "999", "does not exist"
    with pytest.raises(DeliveryError, match=expected) as caught:
        send(emu, op("add", "c1", email="a@example.com"), audience_id=audience)
    assert not isinstance(caught.value, TransientDeliveryError)


# -- rejections ------------------------------------------------------------------------------
def test_members_without_a_matchable_identifier_are_rejected_not_sent(emu: MetaEmulator) -> None:
    rejected = send(
        emu,
        op("add", "bad", email="n/a", phone="12"),
        op("add", "weak", country="US"),  # a country alone identifies nobody
        op("add", "good", email="jane.doe@example.com"),
        op("remove", "never-added", email="n/a"),  # nothing to remove: acknowledged
    )
    assert set(rejected) == {"bad", "weak"}
    assert "email, phone not usable" in rejected["bad"] and "n/a" not in rejected["bad"]
    assert "first_name with last_name" in rejected["weak"]
    [post] = emu.requests()
    assert post.json()["payload"]["data"] == [[JANE]]


def test_invalid_entries_named_by_meta_become_rejections(emu: MetaEmulator) -> None:
    emu.reject_values(sha("bad@example.com"), reason="Invalid email hash")
    rejected = send(
        emu, op("add", "c1", email="bad@example.com"), op("add", "c2", email="jane.doe@example.com")
    )
    assert rejected == {"c1": "Meta counted the entry invalid: Invalid email hash"}
    assert emu.values(emu.audience_id, "EMAIL") == {JANE}
    assert emu.requests()[0].status == 200  # a partial success, not an error


def test_invalid_entries_meta_does_not_name_are_logged(
    emu: MetaEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    emu.sample_limit = 1
    emu.reject_values(*(sha(f"bad{i}@example.com") for i in range(3)))
    with caplog.at_level(logging.WARNING, "revseg.destinations.meta"):
        rejected = send(emu, *(op("add", f"c{i}", email=f"bad{i}@example.com") for i in range(3)))
    assert len(rejected) == 1
    assert "dropped 2 invalid entries it did not name" in caplog.text


# -- the emulator checks what Meta checks ------------------------------------------------------
def graph(emu: MetaEmulator, method: str, **kwargs: Any) -> httpx.Response:
    url = f"{emu.url}/{emu.audience_id}/users"
    return httpx.request(method, url, headers={"authorization": f"Bearer {TOKEN}"}, **kwargs)


def test_emulator_accepts_the_sdk_encodings() -> None:
    with MetaEmulator(access_token=TOKEN) as emu:
        payload = json.dumps({"schema": "EMAIL_SHA256", "data": [JANE]})
        assert graph(emu, "POST", data={"payload": payload}).status_code == 200  # form
        assert emu.values(emu.audience_id, "EMAIL") == {JANE}
        assert graph(emu, "DELETE", params={"payload": payload}).status_code == 200  # query
        assert emu.audience(emu.audience_id) == set()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"payload": {"schema": ["EMAIL", "PHONE"], "data": [[JANE]]}}, "must match the schema"),
        ({"payload": {"schema": ["E_MAIL"], "data": [[JANE]]}}, "Invalid schema"),
        ({"payload": {"schema": ["EMAIL"], "data": [[JANE]] * 10_001}}, "at most 10000"),
        (
            {"payload": {"schema": ["EMAIL"], "data": [[JANE]]}, "session": {"session_id": 1}},
            "Invalid parameter session",
        ),
        ({}, "payload is required"),
    ],
)
def test_emulator_refuses_malformed_requests(emu: MetaEmulator, body: Any, message: str) -> None:
    response = graph(emu, "POST", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 100 and message in error["message"] and error["fbtrace_id"]


def test_emulator_counts_unhashed_values_invalid_and_enforces_session_end(
    emu: MetaEmulator,
) -> None:
    session = {"session_id": 7, "batch_seq": 1, "last_batch_flag": True}
    rows = {"schema": ["EMAIL"], "data": [[JANE.upper()], ["jane@example.com"], [JANE]]}
    answer = graph(emu, "POST", json={"payload": rows, "session": session}).json()
    assert answer["num_received"] == 3 and answer["num_invalid_entries"] == 2
    assert set(answer["invalid_entry_samples"]) == {JANE.upper(), "jane@example.com"}
    assert answer["session_id"] == "7"
    late = {**session, "batch_seq": 2}
    response = graph(emu, "POST", json={"payload": rows, "session": late})
    assert response.status_code == 400 and "already ended" in response.json()["error"]["message"]
    assert graph(emu, "POST", json={"payload": rows, "session": session}).status_code == 200


# -- registry, options -------------------------------------------------------------------------
def test_registered_with_capabilities_as_data() -> None:
    assert get_destination_type("meta") is MetaDestination
    caps = MetaDestination.capabilities
    assert caps.modes == {"mirror", "upsert"} and caps.requires_identifier
    assert not caps.supports_update and caps.max_batch_size == 10_000
    assert {"email", "phone", "first_name", "last_name", "country", "external_id"} <= (
        caps.identifier_kinds or set()
    )
    assert "email" in caps.hashed_identifiers and "external_id" not in caps.hashed_identifiers


def test_options_validation_never_echoes_the_token() -> None:
    with pytest.raises(ValidationError) as caught:
        MetaOptions.model_validate({"audience_id": "act_12", "access_token": "tok-secret-value"})
    assert "audience_id" in str(caught.value) and "tok-secret-value" not in str(caught.value)
    options = MetaOptions.model_validate({"audience_id": 2384000000000, "access_token": "tok-x"})
    assert options.audience_id == "2384000000000"
    assert options.base_url == "https://graph.facebook.com/v26.0"
    assert "tok-x" not in repr(options)


# -- end to end: revseg sync --json over several steps ----------------------------------------
def expected_rows(people: list[Customer]) -> set[frozenset[tuple[str, str]]]:
    rows = set()
    for c in people:
        row = {("EMAIL", email_hash(c)), ("PHONE", phone_hash(c))}
        row = {(k, v) for k, v in row if v is not None}
        if c.vip and row:
            rows.add(frozenset(row))
    return rows  # type: ignore[return-value]


def meta_destination(emu: MetaEmulator) -> dict[str, Any]:
    options = {"audience_id": emu.audience_id, "access_token": TOKEN, "base_url": emu.url}
    return {"type": "meta", "max_retries": 2, "options": options}


def flip(people: list[Customer], ids: set[int], vip: bool) -> list[Customer]:
    return [
        Customer(c.id, c.email, c.phone, c.first_name, c.last_name, vip)
        for c in people
        if c.id in ids
    ]


def test_mirror_sync_end_to_end(tmp_path: Path, emu: MetaEmulator) -> None:
    people = {c.id: c for c in customers()}
    identifiers = {"email": "email", "phone": "phone"}
    project = write_project(tmp_path, meta_destination(emu), identifiers, people.values())

    def step(as_of: datetime) -> dict[str, Any]:
        report = sync(project, as_of, code=None)
        [result] = report["syncs"]
        vips = [c for c in people.values() if c.vip]
        assert result["skipped"] == sum(1 for c in vips if not c.email and not c.phone)
        assert result["rejected"] == sum(1 for c in vips if c.email == "not-an-email")
        assert all("no identifier Meta can match" in r["reason"] for r in report["rejections"])
        assert emu.audience(emu.audience_id) == expected_rows(list(people.values()))
        return result

    first = step(T0)
    assert first["added"] == len(expected_rows(list(people.values()))) and first["skipped"] > 0

    # members leave, others join (one of them new), a transient fault on the way
    changed = flip(list(people.values()), {1, 2, 3}, False) + flip(
        list(people.values()), {4, 8}, True
    )
    changed.append(Customer(99, "New.Vip@Example.com", "0044 20 7946 0099", "N", "V", True))
    at = T0 + timedelta(hours=1)
    upsert(project, changed, at)
    people |= {c.id: c for c in changed}
    emu.fail_next(1)
    second = step(at + timedelta(minutes=5))
    assert second["removed"] == 3 and second["added"] == 3

    # one comes back with a phone it lacked: removed earlier, added now with both keys
    back = [Customer(2, people[2].email, "+1 415 555 0202", "F", "L", True)]
    upsert(project, back, at + timedelta(hours=1))
    people |= {c.id: c for c in back}
    assert step(at + timedelta(hours=1, minutes=5))["added"] == 1


def test_identifier_change_of_a_current_member_reaches_the_audience(
    tmp_path: Path, emu: MetaEmulator
) -> None:
    people = [Customer(1, "a@example.com", None, "A", "B", True)]
    project = write_project(tmp_path, meta_destination(emu), {"email": "email"}, people)
    assert sync_in_process(project, T0).exit_code == 0
    upsert(project, [Customer(1, "a.new@example.com", None, "A", "B", True)], T0)
    assert sync_in_process(project, T0 + timedelta(minutes=5)).exit_code == 0
    assert emu.values(emu.audience_id, "EMAIL") == {sha("a.new@example.com")}


def test_validate_rejects_identifier_kinds_meta_does_not_know(tmp_path: Path) -> None:
    destination = {"type": "meta", "options": {"audience_id": "1", "access_token": TOKEN}}
    project = write_project(tmp_path, destination, {"mail": "email"}, customers(3))
    done = cli(project, "validate")
    assert done.exit_code == 2
    assert "'meta' has no identifier kind 'mail'" in done.output


def test_runs_as_a_process() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "revseg.sandbox.meta_emulator", "--port", "0", "--audience", "77"],
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            port = int(process.stdout.readline())
            root = f"http://127.0.0.1:{port}"
            assert httpx.get(f"{root}/_health").json()["service"] == "revseg-sandbox-meta"
            body = {"payload": {"schema": "EMAIL_SHA256", "data": [JANE]}}
            headers = {"authorization": f"Bearer {TOKEN}"}
            assert (
                httpx.post(f"{root}/v26.0/77/users", json=body, headers=headers).status_code == 200
            )
            assert httpx.get(f"{root}/_audience/77").json() == [{"EMAIL": JANE}]
        finally:
            process.terminate()
            assert process.wait(timeout=10) == 0
