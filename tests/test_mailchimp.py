"""The mailchimp destination against the Mailchimp emulator, over real HTTP."""

from __future__ import annotations

import base64
import threading
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

from revseg.destinations import mailchimp
from revseg.destinations.base import DeliverySettings
from revseg.destinations.mailchimp import MailchimpDestination, MailchimpOptions, subscriber_hash
from revseg.destinations.registry import get_destination_type
from revseg.errors import DeliveryError, TransientDeliveryError
from revseg.sandbox.emulator import Fault
from revseg.sandbox.mailchimp_emulator import MailchimpEmulator

pytestmark = pytest.mark.http


@pytest.fixture
def emu() -> Iterator[MailchimpEmulator]:
    with MailchimpEmulator() as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connection slots are process-wide per account; each test starts with its own."""
    monkeypatch.setattr(mailchimp, "_slots", {})


def destination(
    emu: MailchimpEmulator,
    sleeps: list[float] | None = None,
    *,
    delivery: DeliverySettings | None = None,
    **options: object,
) -> MailchimpDestination:
    opts = MailchimpOptions.model_validate(
        {"list_id": emu.list_id, "api_key": emu.api_key, "base_url": emu.url, **options}
    )
    return MailchimpDestination("mailchimp_list", opts, delivery or settings(sleeps))


def posted(emu: MailchimpEmulator) -> list[dict[str, object]]:
    return [e.json() for e in emu.requests("POST") if e.status == 200]


def test_registered_with_capabilities_as_data() -> None:
    caps = get_destination_type("mailchimp").capabilities
    assert get_destination_type("mailchimp") is MailchimpDestination
    assert caps.modes == frozenset({"mirror", "upsert"}) and caps.max_batch_size == 500
    assert caps.identifier_kinds == frozenset({"email"}) and caps.requires_identifier
    assert caps.hashed_identifiers == frozenset()


def test_the_datacenter_comes_from_the_key() -> None:
    opts = MailchimpOptions.model_validate({"list_id": "abc123", "api_key": "f00dfeed-us21"})
    assert opts.api_root() == "https://us21.api.mailchimp.com/3.0"
    override = MailchimpOptions.model_validate(
        {"list_id": "abc123", "api_key": "f00dfeed-us21", "base_url": "http://127.0.0.1:9/3.0/"}
    )
    assert override.api_root() == "http://127.0.0.1:9/3.0"
    with pytest.raises(ValidationError, match="data-center suffix") as info:
        MailchimpOptions.model_validate({"list_id": "abc123", "api_key": "nosuffixkey1234"})
    assert "nosuffixkey1234" not in str(info.value)
    with pytest.raises(ValidationError):
        MailchimpOptions.model_validate({"list_id": "a", "api_key": "k-us1", "max_connections": 11})


def test_exact_request_shapes(emu: MailchimpEmulator) -> None:
    with destination(emu, []) as dest:
        emu.lists[emu.list_id][subscriber_hash("cat@example.com")] = {
            "id": subscriber_hash("cat@example.com"),
            "email_address": "cat@example.com",
            "status": "subscribed",
            "merge_fields": {},
        }
        result = dest.send(
            batch(
                add("1", "Ann@Example.com", first_name="Ann", ltv=812.5),
                update("2", "bob@example.com", first_name=None),
                remove("3", "cat@example.com"),
            )
        )
    assert result.rejected == {}
    [exchange] = emu.requests("POST")
    assert exchange.request.path == f"/3.0/lists/{emu.list_id}"
    user, _, key = (
        base64.b64decode(exchange.request.headers["authorization"].split()[1])
        .decode()
        .partition(":")
    )
    assert key == emu.api_key and user
    assert exchange.json() == {
        "members": [
            {
                "email_address": "Ann@Example.com",
                "status": "subscribed",
                "merge_fields": {"FNAME": "Ann"},
            },
            {
                "email_address": "bob@example.com",
                "status": "subscribed",
                "merge_fields": {"FNAME": ""},
            },
            {"email_address": "cat@example.com", "status": "unsubscribed"},
        ],
        "update_existing": True,
    }
    assert emu.statuses() == {
        "ann@example.com": "subscribed",
        "bob@example.com": "subscribed",
        "cat@example.com": "unsubscribed",
    }
    assert emu.members() == {"ann@example.com", "bob@example.com"}


def test_merge_fields_mapping(emu: MailchimpEmulator) -> None:
    with destination(emu, [], merge_fields={"ltv": "LTV", "first_name": "FNAME"}) as dest:
        dest.send(batch(add("1", "ann@example.com", first_name="Ann", ltv=812.5)))
    assert emu.member("ann@example.com")["merge_fields"] == {"LTV": 812.5, "FNAME": "Ann"}


def test_batches_are_split_at_500_members(emu: MailchimpEmulator) -> None:
    with destination(emu, []) as dest:
        result = dest.send(batch(*(add(str(i), f"u{i}@example.com") for i in range(1203))))
    assert result.rejected == {}
    assert [len(b["members"]) for b in posted(emu)] == [500, 500, 203]  # type: ignore[arg-type]
    assert len(emu.members()) == 1203


def test_member_errors_become_rejections(emu: MailchimpEmulator) -> None:
    emu.reject_emails("fake@example.com")
    with destination(emu, []) as dest:
        result = dest.send(
            batch(
                add("1", "ann@example.com"),
                add("2", "bad@"),
                add("3", "fake@example.com"),
                add("4", None),
            )
        )
    assert set(result.rejected) == {"2", "3", "4"}
    assert (
        "looks fake or invalid" in result.rejected["2"] and "ERROR_GENERIC" in result.rejected["2"]
    )
    assert "bad@" not in result.rejected["2"] and "fake@example.com" not in result.rejected["3"]
    assert "no email address" in result.rejected["4"]
    assert emu.members() == {"ann@example.com"}


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_errors_are_retried_and_converge(emu: MailchimpEmulator, status: int) -> None:
    emu.fail_next(2, status=status)
    sleeps: list[float] = []
    with destination(emu, sleeps) as dest:
        assert dest.send(batch(add("1", "ann@example.com"))).rejected == {}
    assert emu.members() == {"ann@example.com"} and len(sleeps) == 2


def test_a_bare_403_is_throttling(emu: MailchimpEmulator) -> None:
    emu.inject(Fault(403, None))  # no problem document: Mailchimp's throttle at high volume
    sleeps: list[float] = []
    with destination(emu, sleeps) as dest:
        assert dest.send(batch(add("1", "ann@example.com"))).rejected == {}
    assert len(sleeps) == 1 and emu.members() == {"ann@example.com"}


def test_timeouts_are_retried_and_converge(emu: MailchimpEmulator) -> None:
    emu.delay_next(1.0)
    sleeps: list[float] = []
    with destination(emu, sleeps, timeout=timedelta(seconds=0.3)) as dest:
        assert dest.send(batch(add("1", "ann@example.com"))).rejected == {}
    assert emu.members() == {"ann@example.com"} and len(sleeps) == 1


def test_bad_api_key_fails_the_batch(emu: MailchimpEmulator) -> None:
    sleeps: list[float] = []
    opts = MailchimpOptions(list_id=emu.list_id, api_key="badbadbadbad-us21", base_url=emu.url)
    with MailchimpDestination("mc", opts, settings(sleeps)) as dest:
        with pytest.raises(DeliveryError) as info:
            dest.send(batch(add("1", "ann@example.com")))
    assert not isinstance(info.value, TransientDeliveryError)
    assert "401" in str(info.value) and "badbadbadbad" not in str(info.value) and sleeps == []


def test_connection_limit_is_respected(emu: MailchimpEmulator) -> None:
    """Twelve concurrent batches through one account's slots: never more than
    ``max_connections`` in flight, so the emulator's limit (3 here) never answers 429."""
    emu.max_connections = 3
    emu.latency = 0.1
    dests = [
        destination(emu, delivery=settings(None, max_retries=0), max_connections=3)
        for _ in range(4)
    ]
    for dest in dests:
        dest.open()  # before the threads: the lazy ``http`` property is not thread-safe
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            dests[index % 4].send(batch(add(str(index), f"u{index}@example.com")))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for dest in dests:
        dest.close()
    assert errors == []
    assert emu.peak_connections == 3
    assert len(emu.members()) == 12


def test_the_emulator_is_strict() -> None:
    with (
        MailchimpEmulator() as emu,
        httpx.Client(base_url=emu.url, auth=("x", emu.api_key)) as client,
    ):
        path = f"lists/{emu.list_id}"
        wrong = client.post(path, json={"members": {"email_address": "a@b.co"}})
        assert wrong.status_code == 400
        assert wrong.headers["content-type"] == "application/problem+json"
        assert wrong.json()["errors"] == [
            {"field": "members", "message": "Schema describes array, object found instead"}
        ]
        no_status = client.post(path, json={"members": [{"email_address": "a@b.co"}]})
        assert no_status.status_code == 400
        too_many = client.post(
            path,
            json={
                "members": [
                    {"email_address": f"u{i}@b.co", "status": "subscribed"} for i in range(501)
                ]
            },
        )
        assert too_many.status_code == 400
        first = client.post(
            path, json={"members": [{"email_address": "a@b.co", "status": "subscribed"}]}
        )
        assert first.json()["total_created"] == 1
        again = client.post(
            path, json={"members": [{"email_address": "a@b.co", "status": "subscribed"}]}
        )
        assert again.json()["errors"][0]["error_code"] == "ERROR_CONTACT_EXISTS"
        assert client.post("lists/nope", json={"members": []}).status_code == 404
        assert (
            httpx.post(
                f"{emu.url}/{path}", json={"members": []}, auth=("x", "wrong-us21")
            ).status_code
            == 401
        )
        assert (
            httpx.post(
                f"{emu.url}/{path}",
                json={"members": []},
                headers={"Authorization": f"apikey {emu.api_key}"},
            ).status_code
            == 200
        )


@pytest.mark.duckdb
def test_end_to_end_mirror_sync(tmp_path: Path, emu: MailchimpEmulator) -> None:
    write_project(
        tmp_path,
        {
            "type": "mailchimp",
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
        lambda email: emu.member(email)["merge_fields"].get("FNAME"),
        lambda: emu.fail_next(1, status=429),
    )
    assert set(emu.statuses().values()) == {"subscribed", "unsubscribed"}  # bob: unsubscribed
