"""The sendgrid destination against the SendGrid emulator, over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from emaillists import (
    API_KEY_VAR,
    add,
    batch,
    mirror_scenario,
    remove,
    settings,
    update,
    write_project,
)
from pydantic import ValidationError

from revseg.destinations import sendgrid
from revseg.destinations.base import DeliverySettings
from revseg.destinations.registry import get_destination_type
from revseg.destinations.sendgrid import SendgridDestination, SendgridOptions
from revseg.errors import DeliveryError, TransientDeliveryError
from revseg.sandbox.sendgrid_emulator import SendgridEmulator

pytestmark = pytest.mark.http

PUT = "/v3/marketing/contacts"
SEARCH = "/v3/marketing/contacts/search/emails"


@pytest.fixture
def emu() -> Iterator[SendgridEmulator]:
    with SendgridEmulator(job_delay=0.05) as running:
        yield running


def destination(
    emu: SendgridEmulator,
    sleeps: list[float] | None = None,
    *,
    delivery: DeliverySettings | None = None,
    **options: object,
) -> SendgridDestination:
    opts = SendgridOptions.model_validate(
        {"list_id": emu.list_id, "api_key": emu.api_key, "base_url": emu.url, **options}
    )
    return SendgridDestination("sendgrid_list", opts, delivery or settings(sleeps))


def calls(emu: SendgridEmulator, method: str, path: str | None = None) -> list[dict[str, object]]:
    return [
        e.json()
        for e in emu.requests(method)
        if (path is None or e.request.path == path) and e.status < 300
    ]


def test_registered_with_capabilities_as_data() -> None:
    caps = get_destination_type("sendgrid").capabilities
    assert get_destination_type("sendgrid") is SendgridDestination
    assert caps.modes == frozenset({"mirror", "upsert"}) and caps.max_batch_size == 30_000
    assert caps.identifier_kinds == frozenset({"email"}) and caps.requires_identifier
    assert caps.hashed_identifiers == frozenset()


def test_list_id_must_be_a_uuid() -> None:
    with pytest.raises(ValidationError, match="UUID"):
        SendgridOptions.model_validate({"list_id": "12345", "api_key": "SG.x"})


def test_exact_request_shapes(emu: SendgridEmulator) -> None:
    with destination(emu, [], fields={"first_name": "first_name", "ltv": "e1_N"}) as dest:
        result = dest.send(
            batch(
                add("1", "Ann@Example.com", first_name="Ann", ltv=812.5),
                add("2", "bob@example.com", first_name=None),
            )
        )
        assert result.rejected == {}
        result = dest.send(
            batch(
                update("1", "ann@example.com", first_name="Annie", ltv=900),
                remove("2", "bob@example.com"),
                remove("3", "nobody@example.com"),
                number=2,
            )
        )
        assert result.rejected == {}
    first = emu.requests("PUT")[0]
    assert first.request.headers["authorization"] == f"Bearer {emu.api_key}"
    assert calls(emu, "PUT") == [
        {
            "list_ids": [emu.list_id],
            "contacts": [
                {"email": "Ann@Example.com", "first_name": "Ann", "custom_fields": {"e1_N": 812.5}},
                {"email": "bob@example.com", "first_name": ""},
            ],
        },
        {
            "list_ids": [emu.list_id],
            "contacts": [
                {"email": "ann@example.com", "first_name": "Annie", "custom_fields": {"e1_N": 900}}
            ],
        },
    ]
    assert calls(emu, "POST", SEARCH) == [{"emails": ["bob@example.com", "nobody@example.com"]}]
    [delete] = emu.requests("DELETE")
    assert delete.request.path == f"/v3/marketing/lists/{emu.list_id}/contacts"
    assert delete.request.param("contact_ids") == emu.contact("bob@example.com")["id"]
    polled = [e.request.path for e in emu.requests("GET")]
    assert polled and all(p.startswith("/v3/marketing/contacts/imports/") for p in polled)
    assert emu.members() == {"ann@example.com"}
    assert emu.contact("ann@example.com")["first_name"] == "Annie"


def test_a_base_url_with_its_version_path_reaches_the_same_endpoints(
    emu: SendgridEmulator,
) -> None:
    # SPEC 3: base_url is the API root "version path included"; SendGrid's paths start
    # with /v3, so .../v3 must not become /v3/v3/marketing/...
    with destination(emu, [], base_url=f"{emu.url}/v3/") as dest:
        assert dest.send(batch(add("1", "ann@example.com"))).rejected == {}
        assert emu.members() == {"ann@example.com"}
        assert dest.send(batch(remove("1", "ann@example.com"), number=2)).rejected == {}
    assert emu.members() == set()
    assert {e.request.path.split("/")[1] for e in emu.requests()} == {"v3"}


def test_bodies_are_split_under_the_size_limit(
    emu: SendgridEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sendgrid, "MAX_BODY", 600)
    with destination(emu, []) as dest:
        assert (
            dest.send(batch(*(add(str(i), f"user{i}@example.com") for i in range(40)))).rejected
            == {}
        )
    sizes = [len(e.request.body) for e in emu.requests("PUT")]
    assert len(sizes) > 1 and max(sizes) <= 600
    assert len(emu.members()) == 40


def test_removes_resolve_ids_100_at_a_time(emu: SendgridEmulator) -> None:
    with destination(emu, []) as dest:
        dest.send(batch(*(add(str(i), f"u{i}@example.com") for i in range(150))))
        result = dest.send(batch(*(remove(str(i), f"u{i}@example.com") for i in range(140))))
    assert result.rejected == {}
    assert [len(b["emails"]) for b in calls(emu, "POST", SEARCH)] == [100, 40]  # type: ignore[arg-type]
    assert len(emu.requests("DELETE")) == 2
    assert emu.members() == {f"u{i}@example.com" for i in range(140, 150)}


def test_invalid_contacts_are_rejected_and_the_rest_sent(emu: SendgridEmulator) -> None:
    with destination(emu, []) as dest:
        result = dest.send(
            batch(
                add("1", "ann@example.com"),
                add("2", "not-an-email"),
                add("3", "bob@example.com"),
                add("4", "x@y"),
                add("5", None),
            )
        )
    assert set(result.rejected) == {"2", "4", "5"}
    assert "is not valid" in result.rejected["2"] and "not-an-email" not in result.rejected["2"]
    assert [e.status for e in emu.requests("PUT")] == [400, 202]
    assert emu.members() == {"ann@example.com", "bob@example.com"}


def test_errored_and_failed_jobs_map_to_rejections(emu: SendgridEmulator) -> None:
    emu.fail_in_jobs("eve@example.com", "fay@example.com")
    with destination(emu, []) as dest:
        errored = dest.send(batch(add("1", "ann@example.com"), add("2", "eve@example.com")))
        failed = dest.send(batch(add("3", "fay@example.com"), number=2))
    assert set(errored.rejected) == {"2"} and "finished with errors" in errored.rejected["2"]
    assert set(failed.rejected) == {"3"} and "failed" in failed.rejected["3"]
    assert emu.members() == {"ann@example.com"}


def test_rate_limit_headers_are_honoured(emu: SendgridEmulator) -> None:
    """Three requests per endpoint per second: the client waits out ``X-RateLimit-Reset``
    when ``Remaining`` reaches 0, so even without retries no request is refused."""
    emu.rate_limit = (3, 1.0)
    started = time.monotonic()
    with destination(emu, delivery=settings(None, max_retries=0)) as dest:
        for number in range(1, 6):
            assert (
                dest.send(batch(add(str(number), f"u{number}@example.com"), number=number)).rejected
                == {}
            )
    assert all(e.status != 429 for e in emu.exchanges)
    assert time.monotonic() - started >= 1.0  # it did wait for a reset
    assert len(emu.members()) == 5


def test_a_429_waits_until_the_reset(emu: SendgridEmulator) -> None:
    emu.fail_next(status=429, reset_in=1.0)
    sleeps: list[float] = []
    with destination(emu, sleeps) as dest:
        assert dest.send(batch(add("1", "ann@example.com"))).rejected == {}
    assert len(sleeps) == 1 and 0.0 < sleeps[0] <= 2.1
    assert emu.members() == {"ann@example.com"}


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retried_and_converge(emu: SendgridEmulator, status: int) -> None:
    emu.fail_next(3, status=status)  # the PUT, then polls: each retried
    sleeps: list[float] = []
    with destination(emu, sleeps) as dest:
        assert (
            dest.send(batch(add("1", "ann@example.com"), remove("2", "zed@example.com"))).rejected
            == {}
        )
    assert emu.members() == {"ann@example.com"} and len(sleeps) == 3


def test_timeouts_are_retried_and_converge(emu: SendgridEmulator) -> None:
    emu.delay_next(1.0)
    sleeps: list[float] = []
    with destination(emu, sleeps, timeout=timedelta(seconds=0.3)) as dest:
        assert dest.send(batch(add("1", "ann@example.com"))).rejected == {}
    assert emu.members() == {"ann@example.com"} and len(sleeps) == 1


def test_a_job_that_never_finishes_is_transient(emu: SendgridEmulator) -> None:
    emu.store.job_delay = 30.0
    with destination(emu, [], job_timeout=timedelta(seconds=0.4)) as dest:
        with pytest.raises(TransientDeliveryError, match="still pending"):
            dest.send(batch(add("1", "ann@example.com")))


def test_bad_api_key_fails_the_batch(emu: SendgridEmulator) -> None:
    sleeps: list[float] = []
    opts = SendgridOptions(list_id=emu.list_id, api_key="SG.wrong-key-1234", base_url=emu.url)
    with SendgridDestination("sg", opts, settings(sleeps)) as dest:
        with pytest.raises(DeliveryError) as info:
            dest.send(batch(add("1", "ann@example.com")))
    assert not isinstance(info.value, TransientDeliveryError)
    assert "401" in str(info.value) and "wrong-key" not in str(info.value) and sleeps == []


def test_the_emulator_is_strict() -> None:
    with (
        SendgridEmulator() as emu,
        httpx.Client(
            base_url=emu.url, headers={"Authorization": f"Bearer {emu.api_key}"}
        ) as client,
    ):
        bad = client.put(PUT, json={"list_ids": ["nope"], "contacts": []})
        assert bad.status_code == 400
        assert {e["field"] for e in bad.json()["errors"]} == {"list_ids[0]", "contacts"}
        long_name = client.put(
            PUT, json={"contacts": [{"email": "a@b.co", "first_name": "x" * 51}]}
        )
        assert long_name.json()["errors"][0]["field"] == "contacts[0].first_name"
        nobody = client.put(PUT, json={"contacts": [{"first_name": "Ann"}]})
        assert nobody.status_code == 400
        unknown = client.put(
            PUT,
            json={
                "list_ids": ["ca7a3796-e8a8-4029-9ccb-000000000000"],
                "contacts": [{"email": "a@b.co"}],
            },
        )
        assert unknown.status_code == 404
        ok = client.put(PUT, json={"contacts": [{"email": "a@b.co"}]})
        assert ok.status_code == 202 and {
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
        } <= set(ok.headers)
        assert (
            client.get(f"/v3/marketing/contacts/imports/{ok.json()['job_id']}").json()["status"]
            == "pending"
        )
        emu.settle()
        job = client.get(f"/v3/marketing/contacts/imports/{ok.json()['job_id']}").json()
        assert job["status"] == "completed" and job["results"]["created_count"] == 1
        too_many = client.post(SEARCH, json={"emails": [f"u{i}@b.co" for i in range(101)]})
        assert too_many.status_code == 400
        assert client.post(SEARCH, json={"emails": ["zz@b.co"]}).status_code == 404
        missing = client.delete(f"/v3/marketing/lists/{emu.list_id}/contacts")
        assert missing.status_code == 400
        assert (
            httpx.put(f"{emu.url}{PUT}", json={"contacts": [{"email": "a@b.co"}]}).status_code
            == 401
        )


@pytest.mark.duckdb
def test_end_to_end_mirror_sync(tmp_path: Path, emu: SendgridEmulator) -> None:
    write_project(
        tmp_path,
        {
            "type": "sendgrid",
            "options": {
                "list_id": emu.list_id,
                "api_key": f"{{{{ env_var('{API_KEY_VAR}') }}}}",
                "base_url": emu.url,
            },
        },
    )
    mirror_scenario(
        tmp_path,
        emu.api_key,
        emu.members,
        lambda email: emu.contact(email).get("first_name"),
        lambda: emu.fail_next(1, status=429, reset_in=0.5),
    )
