"""The linkedin destination against the LinkedIn emulator over real HTTP
(destinations/linkedin.md)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from adproject import T0, Customer, customers, email_hash, sha, upsert, write_project
from pydantic import ValidationError
from syncproject import sync

from revseg.destinations.base import Batch, DeliverySettings, Operation
from revseg.destinations.http import EXTRA_SLEEP
from revseg.destinations.linkedin import LinkedInDestination, LinkedInOptions
from revseg.destinations.registry import get_destination_type
from revseg.errors import DeliveryError, TransientDeliveryError
from revseg.sandbox.linkedin_emulator import LinkedInEmulator

pytestmark = pytest.mark.http

TOKEN = "linkedin-test-token"
AS_OF = datetime(2026, 11, 28, 17, 0, tzinfo=UTC)
JANE = sha("jane.doe@example.com")
AID = "38400000-8cf0-11bd-b23e-10b96e40000d"


@pytest.fixture
def emu() -> Iterator[LinkedInEmulator]:
    with LinkedInEmulator(access_token=TOKEN) as running:
        yield running


def make(
    emu: LinkedInEmulator, sleeps: list[float] | None = None, max_retries: int = 3, **options: Any
) -> LinkedInDestination:
    raw = {
        "segment_id": emu.segment_id,
        "access_token": TOKEN,
        "base_url": emu.url,
        "timeout": timedelta(seconds=5),
        **options,
    }
    extra = {EXTRA_SLEEP: (sleeps if sleeps is not None else []).append}
    settings = DeliverySettings(max_retries=max_retries, extra=extra)
    return LinkedInDestination("li", LinkedInOptions.model_validate(raw), settings)


def op(kind: str, record_id: str, **identifiers: str) -> Operation:
    return Operation(kind, record_id, {}, identifiers)  # type: ignore[arg-type]


def send(emu: LinkedInEmulator, *operations: Operation, **kwargs: Any) -> dict[str, str]:
    batch = Batch("r20261128T170000Z-3f2a", "vips.li", "vips", 1, 1, AS_OF, operations)
    with make(emu, **kwargs) as destination:
        return dict(destination.send(batch).rejected)


def test_exact_batch_request_removes_first(emu: LinkedInEmulator) -> None:
    emu.segments[emu.segment_id].add(frozenset({("SHA256_EMAIL", sha("old@example.com"))}))
    rejected = send(
        emu,
        op(
            "add",
            "c1",
            email=" Jane.Doe@Example.com ",
            google_aid=AID.upper(),
            first_name="Jane",
            last_name="Doe",
            company="Acme",
            country="US",
        ),
        op("remove", "c2", email="old@example.com", first_name="Old"),
        op("add", "c3", first_name="Ann", last_name="Lee"),  # names are enough without ids
    )
    assert rejected == {}
    [exchange] = emu.requests()
    request = exchange.request
    assert request.path == f"/rest/dmpSegments/{emu.segment_id}/users"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["linkedin-version"] == "202604"
    assert request.headers["x-restli-protocol-version"] == "2.0.0"
    assert request.headers["x-restli-method"] == "BATCH_CREATE"
    assert request.headers["content-type"] == "application/json"
    assert exchange.json() == {
        "elements": [
            {
                "action": "REMOVE",
                "userIds": [{"idType": "SHA256_EMAIL", "idValue": sha("old@example.com")}],
            },
            {
                "action": "ADD",
                "userIds": [
                    {"idType": "SHA256_EMAIL", "idValue": JANE},
                    {"idType": "GOOGLE_AID", "idValue": AID},
                ],
                "firstName": "Jane",
                "lastName": "Doe",
                "company": "Acme",
                "country": "US",
            },
            {"action": "ADD", "userIds": [], "firstName": "Ann", "lastName": "Lee"},
        ]
    }
    assert emu.hashed_emails(emu.segment_id) == {JANE}
    assert len(emu.members(emu.segment_id)) == 2


def test_batches_are_split_at_5000(emu: LinkedInEmulator) -> None:
    adds = [op("add", f"c{i}", email=f"u{i}@example.com") for i in range(12_001)]
    assert send(emu, *adds) == {}
    assert [len(e.json()["elements"]) for e in emu.requests()] == [5_000, 5_000, 2_001]
    assert len(emu.hashed_emails(emu.segment_id)) == 12_001


def test_default_rate_limit_is_the_documented_600_per_minute(emu: LinkedInEmulator) -> None:
    assert make(emu).settings.rate_limit_per_s == 10.0
    options = LinkedInOptions.model_validate({"segment_id": "1", "access_token": "t"})
    mine = LinkedInDestination("li", options, DeliverySettings(rate_limit_per_s=2.0))
    assert mine.settings.rate_limit_per_s == 2.0  # a configured rate_limit wins


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_faults_are_retried_and_converge(emu: LinkedInEmulator, status: int) -> None:
    emu.fail_next(2, status=status)
    sleeps: list[float] = []
    assert send(emu, op("add", "c1", email="jane.doe@example.com"), sleeps=sleeps) == {}
    assert [e.status for e in emu.requests()] == [status, status, 200]
    assert len([s for s in sleeps if s > 0]) >= 1 and emu.hashed_emails(emu.segment_id) == {JANE}


def test_timeouts_are_retried_and_converge(emu: LinkedInEmulator) -> None:
    emu.delay_next(1.0)
    assert (
        send(emu, op("add", "c1", email="jane.doe@example.com"), timeout=timedelta(seconds=0.3))
        == {}
    )
    assert emu.hashed_emails(emu.segment_id) == {JANE}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("token", "invalid or expired"),
        ("version", "NONEXISTENT_VERSION"),
        ("segment", "unknown segment"),
    ],
)
def test_request_errors_are_terminal(emu: LinkedInEmulator, change: str, expected: str) -> None:
    options: dict[str, Any] = {}
    if change == "token":
        emu.access_token = "another-token"
    elif change == "version":
        options["api_version"] = "202401"
    else:
        options["segment_id"] = "424242"
    with pytest.raises(DeliveryError, match=expected) as caught:
        send(emu, op("add", "c1", email="a@example.com"), **options)
    assert not isinstance(caught.value, TransientDeliveryError)
    assert TOKEN not in str(caught.value) and len(emu.requests()) == 1


def test_rejections_per_element_and_for_unmatchable_members(emu: LinkedInEmulator) -> None:
    emu.reject_ids(sha("bad@example.com"), message="Invalid SHA256_EMAIL")
    rejected = send(
        emu,
        op("add", "bad", email="bad@example.com"),
        op("add", "none", email="n/a", first_name="Only"),  # no id, and no last name
        op("add", "good", email="jane.doe@example.com"),
        op("remove", "never-added", email="n/a"),  # nothing to remove: acknowledged
    )
    assert rejected["bad"] == "LinkedIn element status 400: Invalid SHA256_EMAIL"
    assert "no identifier LinkedIn can match (email not usable" in rejected["none"]
    assert set(rejected) == {"bad", "none"}
    assert len(emu.requests()[0].json()["elements"]) == 2
    assert emu.hashed_emails(emu.segment_id) == {JANE}


def test_emulator_checks_headers_and_elements(emu: LinkedInEmulator) -> None:
    url = f"{emu.url}/dmpSegments/{emu.segment_id}/users"
    headers = {
        "authorization": f"Bearer {TOKEN}",
        "linkedin-version": "202604",
        "x-restli-protocol-version": "2.0.0",
        "x-restli-method": "BATCH_CREATE",
    }
    element = {"action": "ADD", "userIds": [{"idType": "SHA256_EMAIL", "idValue": JANE.upper()}]}
    answer = httpx.post(url, headers=headers, json={"elements": [element]})
    assert answer.status_code == 200
    assert answer.json()["elements"][0]["status"] == 400  # uppercase hex is not the format
    no_protocol = {k: v for k, v in headers.items() if k != "x-restli-protocol-version"}
    assert httpx.post(url, headers=no_protocol, json={"elements": [element]}).status_code == 400
    too_many = {"elements": [element] * 5_001}
    assert httpx.post(url, headers=headers, json=too_many).status_code == 400
    single = {"action": "ADD", "userIds": [{"idType": "SHA256_EMAIL", "idValue": JANE}]}
    no_method = {k: v for k, v in headers.items() if k != "x-restli-method"}
    assert httpx.post(url, headers=no_method, json=single).status_code == 201
    assert emu.hashed_emails(emu.segment_id) == {JANE}


def test_capabilities_and_options() -> None:
    assert get_destination_type("linkedin") is LinkedInDestination
    caps = LinkedInDestination.capabilities
    assert caps.min_audience_size == 300 and caps.max_batch_size == 5_000
    assert caps.modes == {"mirror", "upsert"} and caps.requires_identifier
    assert caps.hashed_identifiers == {"email"} and "phone" not in (caps.identifier_kinds or ())
    options = LinkedInOptions.model_validate({"segment_id": 10001, "access_token": "tok-x"})
    assert options.base_url == "https://api.linkedin.com/rest" and options.segment_id == "10001"
    with pytest.raises(ValidationError, match="api_version"):
        LinkedInOptions.model_validate(
            {"segment_id": "1", "access_token": "t", "api_version": "v2"}
        )


def test_mirror_sync_end_to_end(tmp_path: Path, emu: LinkedInEmulator) -> None:
    people = {c.id: c for c in customers()}
    destination = {
        "type": "linkedin",
        "max_retries": 2,
        "options": {"segment_id": emu.segment_id, "access_token": TOKEN, "base_url": emu.url},
    }
    project = write_project(tmp_path, destination, {"email": "email"}, people.values())

    def step(as_of: datetime) -> None:
        report = sync(project, as_of, code=None)
        [result] = report["syncs"]
        vips = [c for c in people.values() if c.vip]
        assert result["skipped"] == sum(1 for c in vips if not c.email)
        assert result["rejected"] == sum(1 for c in vips if c.email == "not-an-email")
        expected = {h for c in vips if (h := email_hash(c)) is not None}
        assert emu.hashed_emails(emu.segment_id) == expected
        assert len(emu.members(emu.segment_id)) == len(expected)

    step(T0)
    changed = [
        Customer(c.id, c.email, c.phone, c.first_name, c.last_name, not c.vip)
        for c in list(people.values())[:8]
    ]
    upsert(project, changed, T0 + timedelta(hours=1))
    people |= {c.id: c for c in changed}
    emu.fail_next(1, status=429)
    step(T0 + timedelta(hours=1, minutes=5))


def test_runs_as_a_process() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "revseg.sandbox.linkedin_emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            root = f"http://127.0.0.1:{int(process.stdout.readline())}"
            assert httpx.get(f"{root}/_health").json()["service"] == "revseg-sandbox-linkedin"
            assert httpx.get(f"{root}/_segment/10001").json() == []
        finally:
            process.terminate()
            assert process.wait(timeout=10) == 0
