"""The klaviyo destination against the Klaviyo emulator, over real HTTP."""

from __future__ import annotations

import json
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

from revseg.destinations import klaviyo
from revseg.destinations.base import DeliverySettings
from revseg.destinations.klaviyo import KlaviyoDestination, KlaviyoOptions
from revseg.destinations.klaviyo_wire import REVISION
from revseg.destinations.registry import get_destination_type
from revseg.errors import DeliveryError, TransientDeliveryError
from revseg.sandbox.emulator import Fault
from revseg.sandbox.klaviyo_emulator import MEDIA, KlaviyoEmulator
from revseg.sandbox.openapi import load_spec, validate

pytestmark = pytest.mark.http

JOBS = "/api/profile-bulk-import-jobs"


@pytest.fixture
def emu() -> Iterator[KlaviyoEmulator]:
    with KlaviyoEmulator(job_delay=0.05) as running:
        yield running


def destination(
    emu: KlaviyoEmulator,
    sleeps: list[float] | None = None,
    *,
    delivery: DeliverySettings | None = None,
    **options: object,
) -> KlaviyoDestination:
    opts = KlaviyoOptions.model_validate(
        {"list_id": emu.list_id, "api_key": emu.api_key, "base_url": emu.url, **options}
    )
    return KlaviyoDestination("klaviyo_list", opts, delivery or settings(sleeps))


def calls(emu: KlaviyoEmulator, method: str, path: str) -> list[Any]:
    return [
        e for e in emu.requests(method) if e.request.path.rstrip("/") == path and e.status < 300
    ]


def test_registered_with_capabilities_as_data() -> None:
    cls = get_destination_type("klaviyo")
    assert cls is KlaviyoDestination
    caps = cls.capabilities
    assert caps.modes == frozenset({"mirror", "upsert"}) and caps.max_batch_size == 10_000
    assert caps.identifier_kinds == frozenset({"email"}) and caps.requires_identifier
    assert caps.hashed_identifiers == frozenset() and caps.supports_update


def test_options() -> None:
    opts = KlaviyoOptions.model_validate({"list_id": " Y6nRLr ", "api_key": "pk_secret_123"})
    assert opts.base_url == "https://a.klaviyo.com" and opts.list_id == "Y6nRLr"
    assert "pk_secret_123" not in repr(opts)
    doc_form = {"list_id": "L", "api_key": "k", "base_url": "https://a.klaviyo.com/api/"}
    assert KlaviyoOptions.model_validate(doc_form).base_url == "https://a.klaviyo.com"
    with pytest.raises(ValidationError):
        KlaviyoOptions.model_validate({"list_id": "", "api_key": "k"})
    with pytest.raises(ValidationError) as info:
        KlaviyoOptions.model_validate({"list_id": "L", "api_key": "pk_abc", "extra": 1})
    assert "pk_abc" not in str(info.value)


def test_exact_request_shapes(emu: KlaviyoEmulator) -> None:
    with destination(emu, []) as dest:
        result = dest.send(
            batch(
                add("1", "ann@example.com", first_name="Ann", ltv=812.5, plan=None),
                add("2", "bob@example.com", first_name=None, ltv=500.0),
                remove("3", "cat@example.com"),
            )
        )
        assert result.rejected == {}
        result = dest.send(batch(update("1", "Ann@Example.com", first_name="Annie"), number=2))
        assert result.rejected == {}
        result = dest.send(batch(remove("2", "BOB@example.com"), number=3))
        assert result.rejected == {}
    for exchange in emu.requests():
        headers = exchange.request.headers
        assert headers["authorization"] == f"Klaviyo-API-Key {emu.api_key}"
        assert headers["revision"] == REVISION and headers["accept"] == MEDIA
        if exchange.request.body:
            assert headers["content-type"] == MEDIA
    imports = [e.json() for e in calls(emu, "POST", JOBS)]
    assert imports[0] == {
        "data": {
            "type": "profile-bulk-import-job",
            "attributes": {
                "profiles": {
                    "data": [
                        {
                            "type": "profile",
                            "attributes": {
                                "email": "ann@example.com",
                                "first_name": "Ann",
                                "properties": {"ltv": 812.5},
                            },
                            "meta": {"patch_properties": {"unset": ["plan"]}},
                        },
                        {
                            "type": "profile",
                            "attributes": {
                                "email": "bob@example.com",
                                "first_name": None,
                                "properties": {"ltv": 500.0},
                            },
                        },
                    ]
                }
            },
            "relationships": {"lists": {"data": [{"type": "list", "id": emu.list_id}]}},
        }
    }
    assert imports[1]["data"]["attributes"]["profiles"]["data"] == [
        {"type": "profile", "attributes": {"email": "Ann@Example.com", "first_name": "Annie"}}
    ]
    lookups = calls(emu, "GET", "/api/profiles")
    assert [e.request.query for e in lookups] == [
        {
            "filter": ['any(email,["cat@example.com"])'],
            "page[size]": ["100"],
            "fields[profile]": ["email"],
        },
        {
            "filter": ['any(email,["bob@example.com"])'],
            "page[size]": ["100"],
            "fields[profile]": ["email"],
        },
    ]
    deletes = calls(emu, "DELETE", f"/api/lists/{emu.list_id}/relationships/profiles")
    assert len(deletes) == 1  # cat was never a profile: nothing to delete
    assert deletes[0].status == 204
    assert deletes[0].json() == {
        "data": [{"type": "profile", "id": emu.store.by_email["bob@example.com"]}]
    }
    assert emu.members() == {"ann@example.com"}
    assert emu.profile("ann@example.com")["first_name"] == "Annie"
    assert emu.profile("bob@example.com")  # removal ends membership only


def test_phone_numbers_are_sent_in_e164() -> None:
    """klaviyo.md: phone_number must be E.164; one written with its country code is put in
    that form, one without goes as it is (Klaviyo refuses it; revseg does not guess a country)."""
    from revseg.destinations.email_lists import Recipient
    from revseg.destinations.klaviyo_wire import profile

    def phone(value: object) -> object:
        return profile(Recipient("a@example.com", "add", {"phone_number": value}))["attributes"]["phone_number"]

    assert phone("+1 (415) 555-2671") == "+14155552671"
    assert phone("0044 20 7946 0958") == "+442079460958"
    assert phone("(415) 555-2671") == "(415) 555-2671"
    assert phone(None) is None


def test_jobs_are_polled_to_completion(emu: KlaviyoEmulator) -> None:
    """The batch is acknowledged only once its job is complete: queued, processing, done."""
    emu.store.job_delay = 0.6
    with destination(emu, []) as dest:
        dest.send(batch(add("1", "ann@example.com")))
        assert emu.members() == {"ann@example.com"}  # already applied when send returned
    polls = [e for e in emu.requests("GET") if e.request.path.startswith(f"{JOBS}/")]
    assert len(polls) >= 3 and all(e.status == 200 for e in polls)


def _auth(emu: KlaviyoEmulator) -> dict[str, str]:
    return {"Authorization": f"Klaviyo-API-Key {emu.api_key}", "revision": REVISION}


def test_import_jobs_hold_at_most_10000_profiles(emu: KlaviyoEmulator) -> None:
    with destination(emu, []) as dest:
        assert dest.send(batch(*(add(str(i), f"u{i}@x.io") for i in range(10_050)))).rejected == {}
    sizes = [
        len(e.json()["data"]["attributes"]["profiles"]["data"]) for e in calls(emu, "POST", JOBS)
    ]
    assert sizes == [10_000, 50] and len(emu.members()) == 10_050


def test_removes_look_up_100_and_delete_1000_at_a_time(emu: KlaviyoEmulator) -> None:
    emails = [f"u{i}@x.io" for i in range(1_050)]
    with destination(emu, []) as dest:
        dest.send(batch(*(add(str(i), e) for i, e in enumerate(emails))))
        dest.send(
            batch(
                *(remove(str(i), e) for i, e in enumerate(emails)), remove("x", "zz@x.io"), number=2
            )
        )
    lookups = calls(emu, "GET", "/api/profiles")
    assert len(lookups) == 11
    deletes = [
        len(e.json()["data"])
        for e in calls(emu, "DELETE", f"/api/lists/{emu.list_id}/relationships/profiles")
    ]
    assert deletes == [1_000, 50] and emu.members() == set()


def test_lookups_follow_pages(emu: KlaviyoEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(klaviyo, "MAX_LOOKUP", 3)  # a page smaller than the filter's values
    with destination(emu, []) as dest:
        dest.send(batch(*(add(str(i), f"u{i}@x.io") for i in range(5))))
        dest.send(batch(*(remove(str(i), f"u{i}@x.io") for i in range(5)), number=2))
    assert emu.members() == set()


def test_import_errors_become_rejections(emu: KlaviyoEmulator) -> None:
    emu.reject_emails("gone@example.com", detail="gone@example.com is suppressed.")
    with destination(emu, []) as dest:
        result = dest.send(
            batch(
                add("1", "ann@example.com"),
                add("2", "not-an-email"),
                add("3", "gone@example.com"),
                add("4", None),
                add("5", "eve@example.com", phone_number="555"),
            )
        )
    assert set(result.rejected) == {"2", "3", "4", "5"}
    assert "Invalid email" in result.rejected["2"] and "not-an-email" not in result.rejected["2"]
    assert "suppressed" in result.rejected["3"] and "gone@example.com" not in result.rejected["3"]
    assert "no email address" in result.rejected["4"]
    assert "phone" in result.rejected["5"] and "555" not in result.rejected["5"]
    assert emu.members() == {"ann@example.com"}


def test_a_400_pointing_at_profiles_rejects_them_and_imports_the_rest(emu: KlaviyoEmulator) -> None:
    error = {
        "id": "e1",
        "status": 400,
        "code": "invalid",
        "title": "Invalid input.",
        "detail": "Profile is too large.",
        "source": {"pointer": "/data/attributes/profiles/data/1/attributes"},
    }
    emu.inject(Fault(400, {"errors": [error]}))
    with destination(emu, []) as dest:
        result = dest.send(batch(add("1", "a@x.io"), add("2", "b@x.io"), add("3", "c@x.io")))
    assert result.rejected == {"2": "Klaviyo: Invalid input. Profile is too large."}
    assert emu.members() == {"a@x.io", "c@x.io"}
    emu.inject(Fault(400, {"errors": [{**error, "source": {"pointer": "/data/type"}}]}))
    with destination(emu, []) as dest, pytest.raises(DeliveryError, match="refused the import"):
        dest.send(batch(add("1", "a@x.io")))


def test_a_429_honours_retry_after(emu: KlaviyoEmulator) -> None:
    emu.fail_next(2, status=429, retry_after=2)
    sleeps: list[float] = []
    with destination(emu, sleeps) as dest:
        assert dest.send(batch(add("1", "ann@example.com"))).rejected == {}
    assert sleeps == [2.0, 2.0] and emu.members() == {"ann@example.com"}


def test_bursts_beyond_the_limit_are_throttled_and_converge() -> None:
    with KlaviyoEmulator(job_delay=0.01, burst=3) as emu:
        with destination(emu, delivery=settings(None, max_retries=5)) as dest:
            for number in range(1, 4):
                dest.send(batch(add(str(number), f"u{number}@x.io"), number=number))
        assert 429 in {e.status for e in emu.exchanges}
        assert len(emu.members()) == 3


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retried_and_converge(emu: KlaviyoEmulator, status: int) -> None:
    emu.fail_next(3, status=status)  # the import, then the polls: each retried
    sleeps: list[float] = []
    with destination(emu, sleeps) as dest:
        assert dest.send(batch(add("1", "ann@example.com"), remove("2", "z@x.io"))).rejected == {}
    assert emu.members() == {"ann@example.com"} and len(sleeps) == 3


def test_timeouts_are_retried_and_converge(emu: KlaviyoEmulator) -> None:
    emu.delay_next(1.0)
    sleeps: list[float] = []
    with destination(emu, sleeps, timeout=timedelta(seconds=0.3)) as dest:
        assert dest.send(batch(add("1", "ann@example.com"))).rejected == {}
    assert emu.members() == {"ann@example.com"} and len(sleeps) == 1


def test_a_job_that_never_finishes_is_transient(emu: KlaviyoEmulator) -> None:
    emu.store.job_delay = 30.0
    with destination(emu, [], job_timeout=timedelta(seconds=0.4)) as dest:
        with pytest.raises(TransientDeliveryError, match="still"):
            dest.send(batch(add("1", "ann@example.com")))


def test_bad_api_key_fails_the_batch(emu: KlaviyoEmulator) -> None:
    sleeps: list[float] = []
    opts = KlaviyoOptions(list_id=emu.list_id, api_key="pk_wrong_key_1234", base_url=emu.url)
    with KlaviyoDestination("k", opts, settings(sleeps)) as dest:
        with pytest.raises(DeliveryError) as info:
            dest.send(batch(add("1", "ann@example.com")))
    assert not isinstance(info.value, TransientDeliveryError)
    assert "401" in str(info.value) and "pk_wrong_key" not in str(info.value) and sleeps == []


def test_unknown_list_fails_the_batch(emu: KlaviyoEmulator) -> None:
    with destination(emu, [], list_id="NoSuch") as dest, pytest.raises(DeliveryError, match="404"):
        dest.send(batch(add("1", "ann@example.com")))


def test_the_emulator_is_strict() -> None:
    spec = load_spec("klaviyo")
    job_schema = {"$ref": "#/components/schemas/GetProfileImportJobResponseCompoundDocument"}
    errors_schema = {"$ref": "#/components/schemas/GetImportErrorResponseCollection"}
    with KlaviyoEmulator() as emu, httpx.Client(base_url=emu.url) as client:
        auth = {**_auth(emu), "content-type": MEDIA}
        profiles = [{"type": "profile", "attributes": {"email": e}} for e in ("a@b.co", "nope")]
        body = {
            "data": {
                "type": "profile-bulk-import-job",
                "attributes": {"profiles": {"data": profiles}},
                "relationships": {"lists": {"data": [{"type": "list", "id": emu.list_id}]}},
            }
        }
        content = json.dumps(body)
        assert (
            client.post(JOBS, content=content, headers={"content-type": MEDIA}).status_code == 401
        )
        no_revision = client.post(
            JOBS, content=content, headers={k: v for k, v in auth.items() if k != "revision"}
        )
        assert no_revision.status_code == 400
        assert no_revision.json()["errors"][0]["source"] == {"parameter": "revision"}
        wrong_media = client.post(
            JOBS, content=content, headers={**auth, "content-type": "application/json"}
        )
        assert wrong_media.status_code == 415
        wrong_type = json.dumps({"data": {**body["data"], "type": "profiles"}})
        invalid = client.post(JOBS, content=wrong_type, headers=auth)
        assert invalid.status_code == 400 and invalid.json()["errors"][0]["source"] == {
            "pointer": "/data/type"
        }
        assert set(invalid.json()["errors"][0]) == {
            "id",
            "status",
            "code",
            "title",
            "detail",
            "source",
            "meta",
        }
        accepted = client.post(JOBS, content=content, headers=auth)
        assert accepted.status_code == 202
        assert accepted.json()["data"]["attributes"]["status"] == "queued"
        job_id = accepted.json()["data"]["id"]
        emu.settle()
        job = client.get(f"{JOBS}/{job_id}", headers=auth).json()
        assert validate(job, job_schema, spec) == []
        assert job["data"]["attributes"]["failed_count"] == 1
        page = client.get(f"{JOBS}/{job_id}/import-errors", params={"page[size]": 1}, headers=auth)
        assert validate(page.json(), errors_schema, spec) == []
        assert page.json()["data"][0]["attributes"]["source"]["pointer"].startswith(
            "/data/attributes/profiles/data/1"
        )
        assert (
            client.get(
                "/api/profiles",
                params={"filter": 'any(email,["a@b.co"])', "page[size]": 101},
                headers=auth,
            ).status_code
            == 400
        )
        assert (
            client.get("/api/profiles", params={"filter": "email=a@b.co"}, headers=auth).status_code
            == 400
        )
        found = client.get(
            "/api/profiles", params={"filter": 'equals(email,"A@b.co")'}, headers=auth
        )
        assert [p["attributes"]["email"] for p in found.json()["data"]] == ["a@b.co"]
        relationships = f"/api/lists/{emu.list_id}/relationships/profiles"
        many = json.dumps({"data": [{"type": "profile", "id": str(i)} for i in range(1_001)]})
        assert (
            client.request("DELETE", relationships, content=many, headers=auth).status_code == 400
        )
        unknown = json.dumps({"data": [{"type": "profile", "id": "01NOPE"}]})
        missing = client.request("DELETE", relationships, content=unknown, headers=auth)
        assert missing.status_code == 400
        assert missing.json()["errors"][0]["source"] == {"pointer": "/data/0/id"}
        assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= set(found.headers)
        assert client.get("/_list/" + emu.list_id).json()["members"] == ["a@b.co"]


@pytest.mark.duckdb
def test_end_to_end_mirror_sync(tmp_path: Path, emu: KlaviyoEmulator) -> None:
    write_project(
        tmp_path,
        {
            "type": "klaviyo",
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
        lambda email: emu.profile(email).get("first_name"),
        lambda: emu.fail_next(2, status=503),
    )
