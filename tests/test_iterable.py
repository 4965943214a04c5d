"""The iterable destination against the Iterable emulator, over real HTTP."""

from __future__ import annotations

import json
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

from revseg.destinations.base import DeliverySettings
from revseg.destinations.iterable import IterableDestination, IterableOptions
from revseg.destinations.registry import get_destination_type
from revseg.errors import DeliveryError, TransientDeliveryError
from revseg.sandbox.iterable_emulator import IterableEmulator

pytestmark = pytest.mark.http


@pytest.fixture
def emu() -> Iterator[IterableEmulator]:
    with IterableEmulator() as running:
        yield running


def destination(
    emu: IterableEmulator,
    sleeps: list[float] | None = None,
    *,
    delivery: DeliverySettings | None = None,
    **options: object,
) -> IterableDestination:
    """A destination on the emulator; retries record their delays in ``sleeps``."""
    opts = IterableOptions.model_validate(
        {"list_id": emu.list_id, "api_key": emu.api_key, "base_url": emu.url, **options}
    )
    return IterableDestination("iterable_list", opts, delivery or settings(sleeps))


def bodies(emu: IterableEmulator, path: str) -> list[dict[str, object]]:
    return [e.json() for e in emu.requests("POST") if e.request.path == path and e.status == 200]


def test_registered_with_capabilities_as_data() -> None:
    cls = get_destination_type("iterable")
    assert cls is IterableDestination
    caps = cls.capabilities
    assert caps.modes == frozenset({"mirror", "upsert"})
    assert caps.identifier_kinds == frozenset({"email"}) and caps.requires_identifier
    assert caps.hashed_identifiers == frozenset() and caps.max_batch_size == 1000


def test_options_are_strict_and_keep_the_key_secret() -> None:
    opts = IterableOptions.model_validate({"list_id": "12345", "api_key": "k-123456"})
    assert opts.list_id == 12345 and opts.base_url == "https://api.iterable.com"
    assert "k-123456" not in repr(opts)
    with pytest.raises(ValidationError):
        IterableOptions.model_validate({"list_id": "abc", "api_key": "k"})
    with pytest.raises(ValidationError) as info:
        IterableOptions.model_validate({"list_id": 1, "api_key": "secret-abc", "extra": 1})
    assert "secret-abc" not in str(info.value)


def test_exact_request_shapes(emu: IterableEmulator) -> None:
    with destination(emu, []) as dest:
        result = dest.send(
            batch(
                add("1", "ann@example.com", first_name="Ann", ltv=812.5),
                add("2", "bob@example.com", first_name=None, ltv=500.0),
                remove("3", "cat@example.com"),
            )
        )
        assert result.rejected == {}
        result = dest.send(
            batch(update("1", "ann@example.com", first_name="Annie", ltv=900.0), number=2)
        )
        assert result.rejected == {}
    [subscribe] = emu.requests("POST")[:1]
    assert subscribe.request.headers["api-key"] == emu.api_key
    assert subscribe.request.headers["content-type"] == "application/json"
    assert bodies(emu, "/api/lists/subscribe") == [
        {
            "listId": emu.list_id,
            "subscribers": [
                {"email": "ann@example.com", "dataFields": {"first_name": "Ann", "ltv": 812.5}},
                {"email": "bob@example.com", "dataFields": {"first_name": None, "ltv": 500.0}},
            ],
        }
    ]
    assert bodies(emu, "/api/lists/unsubscribe") == [
        {
            "listId": emu.list_id,
            "channelUnsubscribe": False,
            "subscribers": [{"email": "cat@example.com"}],
        }
    ]
    assert bodies(emu, "/api/users/bulkUpdate") == [
        {
            "createNewFields": True,
            "users": [
                {"email": "ann@example.com", "dataFields": {"first_name": "Annie", "ltv": 900.0}}
            ],
        }
    ]
    assert emu.members() == {"ann@example.com", "bob@example.com"}
    assert emu.user("ann@example.com") == {"first_name": "Annie", "ltv": 900.0}


def test_removes_take_members_off_the_list(emu: IterableEmulator) -> None:
    with destination(emu, []) as dest:
        dest.send(batch(*(add(str(i), f"u{i}@example.com") for i in range(5))))
        result = dest.send(
            batch(remove("1", "u1@example.com"), remove("3", "U3@Example.com"), remove("9", None))
        )
    assert emu.members() == {"u0@example.com", "u2@example.com", "u4@example.com"}
    assert set(result.rejected) == {"9"} and "no email" in result.rejected["9"]


def test_removing_a_user_iterable_does_not_know_is_not_a_rejection(emu: IterableEmulator) -> None:
    # iterable.md: unsubscribe fills failedUpdates.notFoundEmails (failCount > 0) for an
    # unknown user; unsubscribing a non-member is harmless, and the list does not hold it
    with destination(emu, []) as dest:
        dest.send(batch(add("1", "ann@example.com")))
        result = dest.send(
            batch(remove("1", "ann@example.com"), remove("2", "ghost@example.com"), number=2)
        )
    [sent] = [e.json() for e in emu.requests("POST") if e.request.path.endswith("/unsubscribe")]
    assert sent["subscribers"] == [{"email": "ann@example.com"}, {"email": "ghost@example.com"}]
    assert result.rejected == {} and emu.members() == set()


def test_a_base_url_ending_in_api_reaches_the_same_endpoints(emu: IterableEmulator) -> None:
    # the paths here start with /api; a root written as .../api must not give /api/api/...
    with destination(emu, [], base_url=f"{emu.url}/api/") as dest:
        adds = batch(add("1", "ann@example.com"), add("2", "bob@example.com"))
        assert dest.send(adds).rejected == {}
        assert dest.send(batch(remove("2", "bob@example.com"), number=2)).rejected == {}
    assert emu.members() == {"ann@example.com"}
    paths = {e.request.path for e in emu.requests()}
    assert paths == {"/api/lists/subscribe", "/api/lists/unsubscribe"}


def test_batch_too_large_is_halved_until_it_fits(emu: IterableEmulator) -> None:
    emu.batch_limit = 3
    with destination(emu, []) as dest:
        result = dest.send(batch(*(add(str(i), f"u{i}@example.com") for i in range(10))))
    assert result.rejected == {}
    assert emu.members() == {f"u{i}@example.com" for i in range(10)}
    accepted = [len(e.json()["subscribers"]) for e in emu.requests("POST") if e.status == 200]
    assert sum(accepted) == 10 and max(accepted) <= 3
    assert [e.status for e in emu.requests("POST")][0] == 400  # 10, then 5, then 2-3 ...


def test_per_record_failures_become_rejections(emu: IterableEmulator) -> None:
    emu.reject_emails("gone@example.com", kind="forgottenEmails")
    with destination(emu, []) as dest:
        result = dest.send(
            batch(
                add("1", "ann@example.com"),
                add("2", "not-an-email"),
                add("3", "gone@example.com"),
                add("4", None),
                add("5", "  "),
            )
        )
    assert set(result.rejected) == {"2", "3", "4", "5"}
    assert "invalid" in result.rejected["2"] and "not-an-email" not in result.rejected["2"]
    assert "forgotten" in result.rejected["3"]
    assert "no email address" in result.rejected["4"] and "no email address" in result.rejected["5"]
    assert emu.members() == {"ann@example.com"}


def test_shared_address_is_sent_once_and_membership_wins(emu: IterableEmulator) -> None:
    with destination(emu, []) as dest:
        result = dest.send(batch(add("1", "pat@example.com"), remove("2", "PAT@example.com")))
    assert result.rejected == {}
    assert emu.members() == {"pat@example.com"}
    assert len(emu.requests("POST")) == 1


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_errors_are_retried_and_converge(emu: IterableEmulator, status: int) -> None:
    emu.fail_next(2, status=status, retry_after=2 if status == 429 else None)
    sleeps: list[float] = []
    with destination(emu, sleeps) as dest:
        assert dest.send(batch(add("1", "ann@example.com"))).rejected == {}
    assert emu.members() == {"ann@example.com"}
    assert len(sleeps) == 2
    if status == 429:
        assert sleeps == [2.0, 2.0]  # Retry-After honoured exactly


def test_timeouts_are_retried_and_converge(emu: IterableEmulator) -> None:
    emu.delay_next(1.0)
    sleeps: list[float] = []
    with destination(emu, sleeps, timeout=timedelta(seconds=0.3)) as dest:
        assert dest.send(batch(add("1", "ann@example.com"))).rejected == {}
    assert emu.members() == {"ann@example.com"} and len(sleeps) == 1


def test_exhausted_retries_raise_transient(emu: IterableEmulator) -> None:
    emu.fail_next(10, status=500)
    with destination(emu, []) as dest, pytest.raises(TransientDeliveryError):
        dest.send(batch(add("1", "ann@example.com")))


def test_bad_api_key_fails_the_batch_without_leaking_it(emu: IterableEmulator) -> None:
    sleeps: list[float] = []
    opts = IterableOptions(list_id=emu.list_id, api_key="wrong-key-123456", base_url=emu.url)
    with IterableDestination("it", opts, settings(sleeps)) as dest:
        with pytest.raises(DeliveryError) as info:
            dest.send(batch(add("1", "ann@example.com")))
    assert not isinstance(info.value, TransientDeliveryError)
    assert "401" in str(info.value) and "wrong-key-123456" not in str(info.value)
    assert sleeps == []


def test_unknown_list_fails_the_batch(emu: IterableEmulator) -> None:
    with destination(emu, [], list_id=999) as dest, pytest.raises(DeliveryError, match="400"):
        dest.send(batch(add("1", "ann@example.com")))


def test_bulk_update_is_held_to_five_per_second(emu: IterableEmulator) -> None:
    """The emulator answers 429 past 5 bulkUpdates/s; the client's bucket never gets there."""
    with destination(emu, delivery=settings(None, max_retries=0)) as dest:  # opened: one client
        threads = [
            threading.Thread(
                target=dest.send, args=(batch(update(str(i), f"u{i}@example.com", n=i)),)
            )
            for i in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    statuses = [e.status for e in emu.requests("POST")]
    assert statuses == [200] * 8


def test_the_emulator_is_strict() -> None:
    with IterableEmulator() as emu, httpx.Client(base_url=emu.url) as client:
        headers = {"Api-Key": emu.api_key}
        wrong = client.post(
            "/api/lists/subscribe", json={"listId": "12345", "subscribers": []}, headers=headers
        )
        assert wrong.status_code == 400 and wrong.json()["code"] == "BadJsonBody"
        assert "listId" in wrong.json()["msg"]
        missing = client.post("/api/lists/subscribe", json={"listId": 12345}, headers=headers)
        assert missing.status_code == 400 and "subscribers" in missing.json()["msg"]
        neither = client.post(
            "/api/lists/subscribe",
            headers=headers,
            json={"listId": 12345, "subscribers": [{"dataFields": {}}]},
        )
        assert neither.status_code == 400 and neither.json()["code"] == "BadParams"
        unauthorized = client.post(
            "/api/lists/subscribe", json={"listId": 12345, "subscribers": []}
        )
        assert unauthorized.status_code == 401
        assert set(unauthorized.json()) == {"msg", "code", "params"}
        ok = client.post(
            "/api/lists/subscribe",
            headers=headers,
            json={"listId": 12345, "subscribers": [{"email": "a@b.co"}, {"email": "x"}]},
        )
        body = ok.json()
        assert (body["successCount"], body["failCount"]) == (1, 1)
        assert body["failedUpdates"]["invalidEmails"] == ["x"] and body["invalidEmails"] == ["x"]
        assert json.loads(client.get("/_list/12345").text)["members"] == ["a@b.co"]


@pytest.mark.duckdb
def test_end_to_end_mirror_sync(tmp_path: Path, emu: IterableEmulator) -> None:
    write_project(
        tmp_path,
        {
            "type": "iterable",
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
        lambda email: emu.user(email).get("first_name"),
        lambda: emu.fail_next(2, status=503),
    )
