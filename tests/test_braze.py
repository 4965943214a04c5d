"""The braze destination against the Braze emulator, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

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

from revseg.destinations.base import DeliverySettings, Operation
from revseg.destinations.braze import BrazeDestination, BrazeOptions
from revseg.destinations.braze_wire import RequestWindow
from revseg.destinations.registry import get_destination_type
from revseg.errors import DeliveryError, TransientDeliveryError
from revseg.sandbox.braze_emulator import FATAL, BrazeEmulator
from revseg.sandbox.emulator import Fault

pytestmark = pytest.mark.http

TRACK = "/users/track"


@pytest.fixture
def emu() -> Iterator[BrazeEmulator]:
    with BrazeEmulator() as running:
        yield running


def destination(
    emu: BrazeEmulator,
    sleeps: list[float] | None = None,
    *,
    delivery: DeliverySettings | None = None,
    **options: object,
) -> BrazeDestination:
    """A destination on the emulator; retries record their delays in ``sleeps``."""
    opts = BrazeOptions.model_validate({"api_key": emu.api_key, "base_url": emu.url, **options})
    return BrazeDestination("braze_users", opts, delivery or settings(sleeps))


def sent(emu: BrazeEmulator) -> list[list[dict[str, Any]]]:
    """The ``attributes`` of every request Braze accepted, in order."""
    return [e.json()["attributes"] for e in emu.requests("POST") if e.status < 300]


def emails_of(emu: BrazeEmulator, attribute: str) -> set[str]:
    users = emu.users()
    return {str(users[k].get("email", "")).lower() for k in emu.members(attribute)}


def test_registered_with_capabilities_as_data() -> None:
    cls = get_destination_type("braze")
    assert cls is BrazeDestination
    caps = cls.capabilities
    assert caps.modes == frozenset({"mirror", "upsert"}) and caps.max_batch_size == 75
    assert caps.identifier_kinds == frozenset({"external_id", "email", "phone"})
    assert caps.hashed_identifiers == frozenset() and not caps.requires_identifier
    assert caps.supports_update


def test_options_are_strict_and_keep_the_key_secret() -> None:
    opts = BrazeOptions.model_validate(
        {"api_key": "rest-key-123456", "base_url": "https://rest.iad-01.braze.com/"}
    )
    assert opts.base_url == "https://rest.iad-01.braze.com" and opts.identify_by == "external_id"
    assert "rest-key-123456" not in repr(opts)
    with pytest.raises(ValidationError, match="base_url"):
        BrazeOptions.model_validate({"api_key": "k"})  # the instance host has no default
    with pytest.raises(ValidationError):
        BrazeOptions.model_validate({"api_key": "k", "base_url": "ftp://x", "identify_by": "id"})
    with pytest.raises(ValidationError) as info:
        BrazeOptions.model_validate({"api_key": "secret-abc", "base_url": "https://x", "x": 1})
    assert "secret-abc" not in str(info.value)


def test_exact_request_shapes_send_only_what_changes(emu: BrazeEmulator) -> None:
    with destination(emu, []) as dest:
        first = dest.send(
            batch(
                add("1", "ann@example.com", first_name="Ann", ltv=812.5, plan=None),
                add("2", "bob@example.com", first_name="Bob", ltv=500.0),
                remove("3", "cat@example.com"),
            )
        )
        second = dest.send(
            batch(update("1", "ann@example.com", first_name="Annie", ltv=None), number=2)
        )
    assert first.rejected == {} and second.rejected == {}
    request = emu.requests("POST")[0].request
    assert request.headers["authorization"] == f"Bearer {emu.api_key}"
    assert request.headers["content-type"] == "application/json"
    assert sent(emu) == [
        [
            {
                "external_id": "1",
                "email": "ann@example.com",
                "first_name": "Ann",
                "ltv": 812.5,
                "vips": True,
            },
            {
                "external_id": "2",
                "email": "bob@example.com",
                "first_name": "Bob",
                "ltv": 500.0,
                "vips": True,
            },
            {"external_id": "3", "_update_existing_only": True, "vips": False},
        ],
        # an update: the traits only (all of them: the previous values are not known)
        [{"external_id": "1", "email": "ann@example.com", "first_name": "Annie", "ltv": None}],
    ]
    assert emu.members("vips") == {"1", "2"}
    assert "3" not in emu.users()  # a removal never creates a profile
    assert emu.users()["1"] == {
        "external_id": "1",
        "email": "ann@example.com",
        "first_name": "Annie",
        "vips": True,
    }
    assert emu.data_points == 4 + 4 + 3  # ann, bob, then ann's three traits


def test_attribute_name_and_subscription_group(emu: BrazeEmulator) -> None:
    with destination(emu, [], attribute_name="in_vips") as dest:
        dest.send(batch(add("1", "ann@example.com")))
    assert emu.members("in_vips") == {"1"}
    with destination(emu, [], subscription_group_id=emu.group_id) as dest:
        dest.send(batch(add("1", "ann@example.com"), add("2", "bob@example.com")))
        dest.send(batch(remove("2", "bob@example.com"), number=2))
    assert sent(emu)[-1] == [
        {
            "external_id": "2",
            "_update_existing_only": True,
            "subscription_groups": [
                {"subscription_group_id": emu.group_id, "subscription_state": "unsubscribed"}
            ],
        }
    ]
    assert emu.subscribed() == {"1"}
    assert "vips" not in emu.users()["1"]  # no membership attribute in subscription mode
    with destination(emu, [], subscription_group_id="not-a-group") as dest:
        result = dest.send(batch(add("3", "cat@example.com")))
    assert "subscription group" in result.rejected["3"]


def test_identifiers_choose_the_user(emu: BrazeEmulator) -> None:
    def op(kind: str, record_id: str, **identifiers: str) -> Operation:
        return Operation(
            kind, record_id, {"first_name": "X"} if kind != "remove" else {}, identifiers
        )  # type: ignore[arg-type]

    with destination(emu, []) as dest:
        assert dest.send(batch(op("add", "1", external_id="crm-1", email="a@x.io"))).rejected == {}
        # email changed: the runner sends remove(old) + add(new); one user, one object
        dest.send(batch(op("remove", "2", email="old@x.io"), op("add", "2", email="new@x.io")))
    assert sent(emu)[0][0]["external_id"] == "crm-1"
    assert sent(emu)[1] == [
        {"external_id": "2", "first_name": "X", "email": "new@x.io", "vips": True}
    ]
    with destination(emu, [], identify_by="email") as dest:
        result = dest.send(
            batch(op("add", "5", email="Eve@X.io", phone="+1 415 555 2671"), op("add", "6"))
        )
    assert sent(emu)[-1] == [
        {"email": "Eve@X.io", "first_name": "X", "phone": "+14155552671", "vips": True}
    ]
    assert set(result.rejected) == {"6"} and "no email" in result.rejected["6"]
    with destination(emu, [], identify_by="phone") as dest:
        result = dest.send(
            batch(
                op("add", "7", phone="0044 20-7946.0958", email="p@x.io"),
                op("add", "8", phone="12"),
                # braze.md: phone is E.164; a national number is not made one by guessing
                # (it was sent as +4155552671, another country's number)
                op("add", "9", phone="(415) 555-2671"),
            )
        )
    assert sent(emu)[-1] == [{"phone": "+442079460958", "first_name": "X", "vips": True}]
    assert set(result.rejected) == {"8", "9"}
    assert "E.164" in result.rejected["8"] and "12" not in result.rejected["8"].replace("E.164", "")
    assert "E.164" in result.rejected["9"] and "555" not in result.rejected["9"]


def test_batches_are_split_at_75_objects(emu: BrazeEmulator) -> None:
    with destination(emu, []) as dest:
        dest.send(batch(*(add(str(i), f"u{i}@example.com") for i in range(160))))
    assert [len(a) for a in sent(emu)] == [75, 75, 10]
    delivery = DeliverySettings(batch_size=50, extra=settings([]).extra)
    with destination(emu, delivery=delivery) as dest:
        dest.send(batch(*(add(str(i), f"u{i}@example.com") for i in range(60))))
    assert [len(a) for a in sent(emu)][3:] == [50, 10]
    assert len(emu.members("vips")) == 160


def test_max_input_length_exceeded_halves_the_request(emu: BrazeEmulator) -> None:
    emu.max_objects = 50  # a workspace on an MAU-based plan
    with destination(emu, []) as dest:
        assert (
            dest.send(batch(*(add(str(i), f"u{i}@example.com") for i in range(75)))).rejected == {}
        )
    assert [e.status for e in emu.requests("POST")] == [400, 201, 201]
    assert len(emu.members("vips")) == 75


def test_per_object_errors_become_rejections(emu: BrazeEmulator) -> None:
    emu.reject_users("5", kind="user is blocklisted")
    with destination(emu, []) as dest:
        result = dest.send(
            batch(
                add("1", "ann@example.com"),
                add("2", "not-an-email"),
                add("3", "bob@example.com", bio="x" * 300),
                add("4", None),  # keyed by the entity id: no email is fine
                add("5", "eve@example.com"),
            )
        )
    assert set(result.rejected) == {"2", "3", "5"}
    assert (
        "not a valid email" in result.rejected["2"] and "not-an-email" not in result.rejected["2"]
    )
    assert "255" in result.rejected["3"] and "blocklisted" in result.rejected["5"]
    assert emu.members("vips") == {"1", "4"}
    with destination(emu, []) as dest:  # every object invalid: Braze's fatal 400
        result = dest.send(batch(add("6", "bad@"), add("7", "worse@"), number=2))
    assert set(result.rejected) == {"6", "7"} and "bad@" not in result.rejected["6"]
    assert emu.requests("POST")[-1].status == 400


def test_a_fatal_400_naming_objects_drops_them_and_sends_the_rest(emu: BrazeEmulator) -> None:
    error = {"type": "'ltv' is not valid", "input_array": "attributes", "index": 1}
    emu.inject(Fault(400, {"message": FATAL, "errors": [error]}))
    with destination(emu, []) as dest:
        result = dest.send(batch(add("1", "a@x.io"), add("2", "b@x.io"), add("3", "c@x.io")))
    assert result.rejected == {"2": "Braze: 'ltv' is not valid"}
    assert [[o["external_id"] for o in e.json()["attributes"]] for e in emu.requests("POST")] == [
        ["1", "2", "3"],
        ["1", "3"],
    ]
    assert emu.members("vips") == {"1", "3"}


def test_a_400_without_object_errors_fails_the_batch(emu: BrazeEmulator) -> None:
    emu.inject(Fault(400, {"message": "Bad syntax"}))
    with destination(emu, []) as dest, pytest.raises(DeliveryError, match="Bad syntax"):
        dest.send(batch(add("1", "a@x.io")))


def test_queued_during_maintenance_is_accepted(emu: BrazeEmulator) -> None:
    emu.queued = True
    with destination(emu, []) as dest:
        assert dest.send(batch(add("1", "ann@example.com"))).rejected == {}
    assert emu.requests("POST")[0].status == 202 and emu.members("vips") == {"1"}


def test_rate_limit_headers_are_honoured(emu: BrazeEmulator) -> None:
    """Three requests per second: the client waits out ``X-RateLimit-Reset`` when
    ``X-RateLimit-Remaining`` reaches 0, so even without retries no request is refused."""
    emu.rate_limit = (3, 1.0)
    with destination(emu, delivery=settings(None, max_retries=0)) as dest:
        for number in range(1, 6):
            assert (
                dest.send(batch(add(str(number), f"u{number}@x.io"), number=number)).rejected == {}
            )
    assert all(e.status == 201 for e in emu.exchanges)  # 3/s: the 4th waited for a reset
    assert len(emu.members("vips")) == 5


def test_a_429_waits_until_the_reset(emu: BrazeEmulator) -> None:
    emu.fail_next(status=429, reset_in=1.0)
    sleeps: list[float] = []
    with destination(emu, sleeps) as dest:
        assert dest.send(batch(add("1", "ann@example.com"))).rejected == {}
    assert len(sleeps) == 1 and 0.0 < sleeps[0] <= 2.1
    assert emu.members("vips") == {"1"}


def test_a_window_resetting_beyond_the_run_is_transient() -> None:
    slept: list[float] = []
    window = RequestWindow(clock=lambda: 1000.0, sleep=slept.append, max_wait=60.0)
    request = httpx.Request("POST", "https://rest.example/users/track")
    spent = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1002"}
    assert window.observe(httpx.Response(201, headers=spent, request=request)) == pytest.approx(
        2.05
    )
    assert window.wait() == pytest.approx(2.05) and slept == [pytest.approx(2.05)]
    window.observe(
        httpx.Response(201, headers={**spent, "X-RateLimit-Reset": "4600"}, request=request)
    )
    with pytest.raises(TransientDeliveryError, match="longer than a run waits"):
        window.wait()


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retried_and_converge(emu: BrazeEmulator, status: int) -> None:
    emu.fail_next(2, status=status)
    sleeps: list[float] = []
    with destination(emu, sleeps) as dest:
        assert dest.send(batch(add("1", "ann@example.com"))).rejected == {}
    assert emu.members("vips") == {"1"} and len(sleeps) == 2


def test_timeouts_are_retried_and_converge(emu: BrazeEmulator) -> None:
    emu.delay_next(1.0)
    sleeps: list[float] = []
    with destination(emu, sleeps, timeout=timedelta(seconds=0.3)) as dest:
        assert dest.send(batch(add("1", "ann@example.com"))).rejected == {}
    assert emu.members("vips") == {"1"} and len(sleeps) == 1


def test_exhausted_retries_raise_transient(emu: BrazeEmulator) -> None:
    emu.fail_next(10, status=500)
    with destination(emu, []) as dest, pytest.raises(TransientDeliveryError):
        dest.send(batch(add("1", "ann@example.com")))


def test_bad_api_key_fails_the_batch_without_leaking_it(emu: BrazeEmulator) -> None:
    sleeps: list[float] = []
    opts = BrazeOptions(api_key="wrong-key-123456", base_url=emu.url)
    with BrazeDestination("braze", opts, settings(sleeps)) as dest:
        with pytest.raises(DeliveryError) as info:
            dest.send(batch(add("1", "ann@example.com")))
    assert not isinstance(info.value, TransientDeliveryError)
    assert "401" in str(info.value) and "wrong-key-123456" not in str(info.value)
    assert sleeps == []


def test_the_emulator_is_strict() -> None:
    with BrazeEmulator() as emu, httpx.Client(base_url=emu.url) as client:
        auth = {"Authorization": f"Bearer {emu.api_key}"}
        assert client.post(TRACK, json={"attributes": [{"external_id": "1"}]}).status_code == 401
        form = client.post(TRACK, data={"attributes": "x"}, headers=auth)
        assert form.status_code == 400 and "Content-Type" in form.json()["message"]
        too_many = client.post(
            TRACK,
            headers=auth,
            json={
                "attributes": [{"external_id": str(i)} for i in range(50)],
                "events": [{"external_id": "1", "name": "e", "time": "2026-01-01T00:00:00Z"}] * 26,
            },
        )
        assert (
            too_many.status_code == 400
            and too_many.json()["message"] == "Max Input Length Exceeded"
        )
        partial = client.post(
            TRACK,
            headers=auth,
            json={"attributes": [{"external_id": "1", "vip": True}, {"vip": True}]},
        )
        assert partial.status_code == 201
        assert partial.json()["errors"] == [
            {
                "type": "'external_id' or 'braze_id' or 'user_alias' or 'email' or 'phone' is required",
                "input_array": "attributes",
                "index": 1,
            }
        ]
        assert partial.json()["attributes_processed"] == 1
        assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= set(
            partial.headers
        )
        fatal = client.post(TRACK, headers=auth, json={"attributes": [{"phone": "555"}]})
        assert fatal.status_code == 400 and fatal.json()["message"].startswith("Valid data must")
        assert fatal.json()["errors"][0]["index"] == 0
        ops = client.post(
            TRACK,
            headers=auth,
            json={
                "attributes": [{"external_id": "1", "n": {"inc": 2}, "tags": {"add": ["a", "b"]}}]
            },
        )
        assert ops.status_code == 201
        client.post(
            TRACK,
            headers=auth,
            json={"attributes": [{"external_id": "1", "tags": {"remove": ["a"]}, "vip": None}]},
        )
        assert client.get("/_users").json()["users"]["1"] == {
            "external_id": "1",
            "n": 2,
            "tags": ["b"],
        }


@pytest.mark.duckdb
def test_end_to_end_mirror_sync(tmp_path: Path, emu: BrazeEmulator) -> None:
    write_project(
        tmp_path,
        {
            "type": "braze",
            "options": {
                "api_key": f"{{{{ env_var('{API_KEY_VAR}') }}}}",
                "base_url": emu.url,
            },
        },
    )
    mirror_scenario(
        tmp_path,
        emu.api_key,
        lambda: emails_of(emu, "vips"),
        lambda email: emu.find(email).get("first_name"),
        lambda: emu.fail_next(2, status=503),
    )
