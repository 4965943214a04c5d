"""The google_ads destination against the Google Ads emulator over real HTTP, both paths:
exact request shapes, batch caps, removes, per-record failures, faults and auth errors.

The expected bodies are written out here field by field from ``destinations/google_ads.md``
and Google's references; the digests are computed with hashlib from normalized text.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from revseg.destinations.base import Batch, BatchResult, DeliverySettings, Operation
from revseg.destinations.google_ads import GoogleAdsDestination, GoogleAdsOptions
from revseg.destinations.google_ads_errors import classify
from revseg.destinations.google_ads_identifiers import UserIds
from revseg.destinations.google_ads_jobs import requests_of
from revseg.destinations.http import EXTRA_SLEEP, Outcome
from revseg.destinations.registry import get_destination_type
from revseg.errors import DeliveryError, TransientDeliveryError
from revseg.sandbox.google_ads_emulator import ACCESS_TOKEN, DEVELOPER_TOKEN, GoogleAdsEmulator

pytestmark = pytest.mark.http

DM = "data_manager"
ADS = "offline_user_data_jobs"
CID = "1234567890"
LIST = "222"


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


ANN = Operation("add", "c1", {}, {"email": " Ann@Example.com", "phone": "+1 (212) 555-0101"})
BOB = Operation(
    "add",
    "c2",
    {},
    {
        "email": "bob.smith@gmail.com",
        "first_name": "Bob",
        "last_name": "Smith",
        "country": "us",
        "postal_code": "94105",
    },
)
ANN_KEYS = frozenset({f"email={h('ann@example.com')}", f"phone={h('+12125550101')}"})
BOB_KEYS = frozenset(
    {f"email={h('bob.smith@gmail.com')}", f"address={h('bob')}|{h('smith')}|US|94105"}
)


@pytest.fixture
def emu() -> Iterator[GoogleAdsEmulator]:
    with GoogleAdsEmulator() as running:
        yield running


def make(
    emu: GoogleAdsEmulator,
    api: str = DM,
    *,
    sleep: Callable[[float], None] | None = None,
    max_retries: int = 3,
    **options: Any,
) -> GoogleAdsDestination:
    raw: dict[str, Any] = {
        "customer_id": "123-456-7890",
        "user_list_id": LIST,
        "access_token": ACCESS_TOKEN,
        "developer_token": DEVELOPER_TOKEN,
        "api": api,
        "base_url": emu.data_manager_url if api == DM else emu.google_ads_url,
        "timeout": "1s",
        **options,
    }
    settings = DeliverySettings(
        max_retries=max_retries, extra={EXTRA_SLEEP: sleep or (lambda _s: None)}
    )
    return GoogleAdsDestination("gads", GoogleAdsOptions.model_validate(raw), settings)


def send(destination: GoogleAdsDestination, *operations: Operation) -> BatchResult:
    batch = Batch("r1", "vip.gads", "vip", 1, 1, datetime(2026, 11, 28, tzinfo=UTC), operations)
    with destination:
        return destination.send(batch)


def adds(n: int, start: int = 0, phone: bool = False) -> list[Operation]:
    ops = []
    for i in range(start, start + n):
        identifiers = {"email": f"u{i}@example.com"} | ({"phone": f"+1646{i:07d}"} if phone else {})
        ops.append(Operation("add", f"u{i}", {}, identifiers))
    return ops


# -- registration, capabilities and options ----------------------------------------------
def test_registered_with_capabilities() -> None:
    kind = get_destination_type("google_ads")
    assert kind is GoogleAdsDestination
    caps = kind.capabilities
    assert caps.modes == {"mirror", "upsert"} and caps.max_batch_size == 10_000
    assert caps.identifier_kinds == {
        "email",
        "phone",
        "first_name",
        "last_name",
        "country",
        "postal_code",
    }
    assert caps.hashed_identifiers == {"email", "phone", "first_name", "last_name"}
    assert caps.requires_identifier and not caps.supports_update
    assert any("48 hours" in c for c in GoogleAdsDestination.constraints)


def test_options() -> None:
    base = {"customer_id": "123-456-7890", "user_list_id": 222, "access_token": "ya29.secret-value"}
    options = GoogleAdsOptions.model_validate(base)
    assert (options.customer_id, options.user_list_id, options.api) == (CID, "222", DM)
    assert "ya29.secret-value" not in repr(options)
    destination = GoogleAdsDestination("g", options, DeliverySettings())
    assert destination.base_url() == "https://datamanager.googleapis.com/v1"
    ads = GoogleAdsOptions.model_validate(base | {"api": ADS, "developer_token": "dev"})
    assert (
        GoogleAdsDestination("g", ads, DeliverySettings()).base_url()
        == "https://googleads.googleapis.com/v26"
    )
    for bad in (
        {"customer_id": "12345"},
        {"user_list_id": "users/1"},
        {"api": ADS},
        {"base_url": "ftp://x"},
    ):
        with pytest.raises(ValidationError):
            GoogleAdsOptions.model_validate(base | bad)


# -- Data Manager API ----------------------------------------------------------------------
def test_data_manager_ingest_request_is_exact(emu: GoogleAdsEmulator) -> None:
    assert send(make(emu), ANN, BOB) == BatchResult({})
    [request] = emu.requests("audienceMembers:ingest")
    assert request.body == {
        "destinations": [
            {
                "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": CID},
                "productDestinationId": LIST,
            }
        ],
        "audienceMembers": [
            {
                "userData": {
                    "userIdentifiers": [
                        {"emailAddress": h("ann@example.com")},
                        {"phoneNumber": h("+12125550101")},
                    ]
                }
            },
            {
                "userData": {
                    "userIdentifiers": [
                        {"emailAddress": h("bob.smith@gmail.com")},
                        {
                            "address": {
                                "givenName": h("bob"),
                                "familyName": h("smith"),
                                "regionCode": "US",
                                "postalCode": "94105",
                            }
                        },
                    ]
                }
            },
        ],
        "consent": {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"},
        "validateOnly": False,
        "encoding": "HEX",
        "termsOfService": {"customerMatchTermsOfServiceStatus": "ACCEPTED"},
    }
    assert request.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("revseg/")
    assert "developer-token" not in request.headers and "login-customer-id" not in request.headers
    assert emu.members(LIST) == {ANN_KEYS, BOB_KEYS}


def test_data_manager_remove_request_is_exact(emu: GoogleAdsEmulator) -> None:
    send(make(emu), ANN, BOB)
    assert send(
        make(emu), Operation("remove", "c1", {}, {"email": "ann@example.com"})
    ) == BatchResult({})
    [request] = emu.requests("audienceMembers:remove")
    assert request.body == {
        "destinations": [
            {
                "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": CID},
                "productDestinationId": LIST,
            }
        ],
        "audienceMembers": [
            {"userData": {"userIdentifiers": [{"emailAddress": h("ann@example.com")}]}}
        ],
        "validateOnly": False,
        "encoding": "HEX",
    }
    assert emu.members(LIST) == {BOB_KEYS}


def test_data_manager_through_a_manager_account() -> None:
    with GoogleAdsEmulator(manager_customer_id="9999999999") as emu:
        with pytest.raises(DeliveryError, match="permission denied") as refused:
            send(make(emu), ANN)
        assert not isinstance(refused.value, TransientDeliveryError)
        send(make(emu, login_customer_id="999-999-9999"), ANN)
        body = emu.requests("audienceMembers:ingest")[-1].body
        assert body["destinations"][0]["loginAccount"] == {
            "accountType": "GOOGLE_ADS",
            "accountId": "9999999999",
        }
        assert emu.members(LIST) == {ANN_KEYS}


def test_data_manager_splits_at_10000_members(emu: GoogleAdsEmulator) -> None:
    operations = adds(10_003)
    assert send(make(emu, timeout="30s"), *operations) == BatchResult({})
    sizes = [len(r.body["audienceMembers"]) for r in emu.requests("audienceMembers:ingest")]
    assert sizes == [10_000, 3]
    assert emu.identifiers(LIST) == {h(f"u{i}@example.com") for i in range(10_003)}


def test_data_manager_rejects_members_and_resends_the_rest(emu: GoogleAdsEmulator) -> None:
    emu.reject_identifier(h("bob.smith@gmail.com"))
    unusable = Operation("add", "c3", {}, {"email": "not-an-email", "phone": "555-0100"})
    result = send(make(emu), ANN, unusable, BOB, *adds(2))
    assert set(result.rejected) == {"c2", "c3"}
    assert result.rejected["c2"].startswith("Google rejected the member: INVALID_AUDIENCE_MEMBER")
    assert result.rejected["c3"].startswith(
        "no usable identifier for Google Customer Match (email:"
    )
    statuses = [r.status for r in emu.requests("audienceMembers:ingest")]
    assert statuses == [400, 200]  # all or nothing: sent again without the rejected member
    assert len(emu.requests()[-1].body["audienceMembers"]) == 3
    assert emu.members(LIST) == {ANN_KEYS} | {
        frozenset({f"email={h(f'u{i}@example.com')}"}) for i in range(2)
    }


def test_nothing_is_sent_for_members_without_identifiers(emu: GoogleAdsEmulator) -> None:
    result = send(
        make(emu), Operation("add", "c9", {}, {}), Operation("remove", "c8", {}, {"phone": "12"})
    )
    assert set(result.rejected) == {"c8", "c9"}
    assert result.rejected["c9"] == "no usable identifier for Google Customer Match (none given)"
    assert emu.requests() == []


# -- Google Ads API: OfflineUserDataJobService ---------------------------------------------
def test_jobs_requests_are_exact(emu: GoogleAdsEmulator) -> None:
    send(make(emu, ADS), ANN)
    remove = Operation("remove", "c1", {}, {"email": "ann@example.com", "phone": "+12125550101"})
    assert send(make(emu, ADS, login_customer_id="9999999999"), remove, BOB) == BatchResult({})
    calls = [(r.path.rsplit("/", 1)[-1], r.body) for r in emu.requests()[3:]]
    user_list = f"customers/{CID}/userLists/{LIST}"
    create_remove_job = {
        "job": {
            "type": "CUSTOMER_MATCH_USER_LIST",
            "customerMatchUserListMetadata": {"userList": user_list},
        },
        "validateOnly": False,
        "enableMatchRateRangePreview": False,
    }
    create_add_job = {
        "job": {
            "type": "CUSTOMER_MATCH_USER_LIST",
            "customerMatchUserListMetadata": {
                "userList": user_list,
                "consent": {"adUserData": "GRANTED", "adPersonalization": "GRANTED"},
            },
        },
        "validateOnly": False,
        "enableMatchRateRangePreview": False,
    }
    flags = {"enablePartialFailure": True, "enableWarnings": False, "validateOnly": False}
    ann_ids = [{"hashedEmail": h("ann@example.com")}, {"hashedPhoneNumber": h("+12125550101")}]
    bob_ids = [
        {"hashedEmail": h("bob.smith@gmail.com")},
        {
            "addressInfo": {
                "hashedFirstName": h("bob"),
                "hashedLastName": h("smith"),
                "countryCode": "US",
                "postalCode": "94105",
            }
        },
    ]
    assert calls == [
        ("offlineUserDataJobs:create", create_remove_job),
        ("1002:addOperations", flags | {"operations": [{"remove": {"userIdentifiers": ann_ids}}]}),
        ("1002:run", {"validateOnly": False}),
        ("offlineUserDataJobs:create", create_add_job),
        ("1003:addOperations", flags | {"operations": [{"create": {"userIdentifiers": bob_ids}}]}),
        ("1003:run", {"validateOnly": False}),
    ]
    last = emu.requests()[-1]
    assert last.path == f"/v26/customers/{CID}/offlineUserDataJobs/1003:run"
    assert last.headers["developer-token"] == DEVELOPER_TOKEN
    assert last.headers["login-customer-id"] == "9999999999"
    assert last.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert emu.members(LIST) == {BOB_KEYS}
    assert {j.status for j in emu.jobs.jobs.values()} == {"SUCCESS"}


def test_jobs_split_add_operations_at_100000_identifiers(emu: GoogleAdsEmulator) -> None:
    operations = adds(50_001, phone=True)  # 100,002 identifiers
    assert send(make(emu, ADS, timeout="30s"), *operations) == BatchResult({})
    requests = emu.requests(":addOperations")
    assert [len(r.body["operations"]) for r in requests] == [50_000, 1]
    assert {r.path for r in requests} == {requests[0].path}  # one job, filled twice, run once
    assert len(emu.requests(":run")) == 1
    assert len(emu.members(LIST)) == 50_001


def test_operations_cap_of_the_splitter() -> None:
    members = [_member(str(i), 3) for i in range(5)] + [_member("big", 25)]
    assert [len(c) for c in requests_of(members, limit=7)] == [2, 2, 1, 1]


def _member(name: str, emails: int) -> Any:
    from revseg.destinations.google_ads_identifiers import Member

    return Member(name, UserIds(emails=tuple(h(f"{name}{i}") for i in range(emails))))


def test_jobs_partial_failures_map_to_records(emu: GoogleAdsEmulator) -> None:
    emu.reject_identifier(h("u1@example.com"))
    emu.reject_identifier(h("u3@example.com"), "INVALID_COUNTRY_CODE")
    result = send(make(emu, ADS), *adds(5))
    assert result.rejected == {
        "u1": "Google Ads rejected the operation: offlineUserDataJobError.INVALID_SHA256_FORMAT "
        "(The emulator was told to reject this identifier.)",
        "u3": "Google Ads rejected the operation: offlineUserDataJobError.INVALID_COUNTRY_CODE "
        "(The emulator was told to reject this identifier.)",
    }
    assert emu.identifiers(LIST) == {h(f"u{i}@example.com") for i in (0, 2, 4)}


def test_jobs_run_retried_after_it_went_through(emu: GoogleAdsEmulator) -> None:
    # the first :run times out at the client but is applied; the retry hears JOB_ALREADY_STARTED
    emu.fail_next(status=None, delay=1.3, path=":run")
    result = send(make(emu, ADS, sleep=lambda _s: time.sleep(1.0)), ANN)
    assert result == BatchResult({})
    assert [r.status for r in emu.requests(":run")] == [200, 400]
    assert emu.members(LIST) == {ANN_KEYS}


def test_jobs_wait_for_another_job_on_the_list() -> None:
    with GoogleAdsEmulator(processing_seconds=600) as emu:
        send(make(emu, ADS), ANN)  # its job stays RUNNING until the test says otherwise

        def finish_running_jobs(_delay: float) -> None:
            emu.processing_seconds = 0.0
            for job in emu.jobs.jobs.values():
                job.ready_at = 0.0

        # :run answers CONCURRENT_MODIFICATION (transient) until the other job is done
        send(make(emu, ADS, sleep=finish_running_jobs), BOB)
        assert [r.status for r in emu.requests(":run")] == [200, 409, 200]
        assert emu.members(LIST) == {ANN_KEYS, BOB_KEYS}


# -- faults and errors ---------------------------------------------------------------------
@pytest.mark.parametrize("api", [DM, ADS])
def test_rate_limits_honour_google_retry_delay(emu: GoogleAdsEmulator, api: str) -> None:
    emu.fail_next(2, status=429, retry_delay="2.5s")
    sleeps: list[float] = []
    assert send(make(emu, api, sleep=sleeps.append), ANN) == BatchResult({})
    assert sleeps == [2.5, 2.5]
    assert emu.members(LIST) == {ANN_KEYS}


@pytest.mark.parametrize("api", [DM, ADS])
def test_server_errors_and_timeouts_converge(emu: GoogleAdsEmulator, api: str) -> None:
    emu.fail_next(status=503)
    emu.fail_next(status=None, delay=1.5)  # beyond the 1s timeout, applied later anyway
    emu.fail_next(status=500)
    result = send(make(emu, api, max_retries=4), ANN, BOB)
    assert result == BatchResult({})
    assert emu.members(LIST) == {ANN_KEYS, BOB_KEYS}


@pytest.mark.parametrize("api", [DM, ADS])
def test_retries_give_up_as_transient(emu: GoogleAdsEmulator, api: str) -> None:
    emu.fail_next(5, status=503)
    with pytest.raises(TransientDeliveryError, match="gave up after 3 attempts"):
        send(make(emu, api, max_retries=2), ANN)


@pytest.mark.parametrize("api", [DM, ADS])
def test_bad_access_token_is_terminal_and_redacted(emu: GoogleAdsEmulator, api: str) -> None:
    token = "ya29.wrong-token-0123456789"
    with pytest.raises(DeliveryError, match="check access_token") as failed:
        send(make(emu, api, access_token=token), ANN)
    assert not isinstance(failed.value, TransientDeliveryError)
    assert token not in str(failed.value)
    assert len(emu.requests()) == 1  # never retried


def test_bad_developer_token_is_terminal(emu: GoogleAdsEmulator) -> None:
    with pytest.raises(DeliveryError, match="check developer_token") as failed:
        send(make(emu, ADS, developer_token="wrong-developer-token"), ANN)
    assert "wrong-developer-token" not in str(failed.value)


def test_classification_of_google_error_bodies() -> None:
    def verdict(status: int, body: dict[str, Any]) -> Any:
        return classify(httpx.Response(status, json=body))

    daily = {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {
                    "@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
                    "errors": [
                        {"errorCode": {"quotaError": "RESOURCE_EXHAUSTED"}, "message": "daily"}
                    ],
                }
            ],
        }
    }
    assert verdict(429, daily).retry_after == 3600.0  # beyond a run's patience: stop now
    concurrent = {"error": {"code": 409, "status": "ABORTED", "details": []}}
    assert verdict(409, concurrent).outcome is Outcome.TRANSIENT
    unknown_field = {
        "error": {
            "code": 400,
            "status": "INVALID_ARGUMENT",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [
                        {"field": "audience_members[0]", "description": "Unknown name"}
                    ],
                }
            ],
        }
    }
    assert verdict(400, unknown_field).outcome is Outcome.TERMINAL  # revseg's bug, not a member's
    not_allowed = {
        "error": {
            "code": 403,
            "status": "PERMISSION_DENIED",
            "details": [
                {
                    "@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
                    "errors": [
                        {
                            "errorCode": {
                                "notAllowlistedError": "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE"
                            }
                        }
                    ],
                }
            ],
        }
    }
    assert "use api: data_manager" in verdict(403, not_allowed).reason
    assert verdict(502, {"oops": 1}) is None  # the core's status rules: transient
    assert classify(httpx.Response(429, text="slow down")).outcome is Outcome.TRANSIENT


# -- the emulator itself -------------------------------------------------------------------
def test_emulator_rejects_malformed_requests(emu: GoogleAdsEmulator) -> None:
    headers = {"authorization": f"Bearer {ACCESS_TOKEN}"}
    destination = {
        "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": CID},
        "productDestinationId": LIST,
    }
    base = {
        "destinations": [destination],
        "encoding": "HEX",
        "termsOfService": {"customerMatchTermsOfServiceStatus": "ACCEPTED"},
    }

    def post(body: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(
            f"{emu.data_manager_url}/audienceMembers:ingest", json=body, headers=headers
        )
        assert response.status_code == 400
        return response.json()["error"]

    typo = post(base | {"audienceMembers": [{"userData": {"userIdentifier": []}}]})
    assert "Unknown name" in typo["details"][0]["fieldViolations"][0]["description"]
    both = {"emailAddress": h("a"), "phoneNumber": h("b")}
    upper = {"emailAddress": h("a").upper()}
    many = [{"emailAddress": h(str(i))} for i in range(11)]
    error = post(
        base
        | {
            "audienceMembers": [
                {"userData": {"userIdentifiers": ids}} for ids in ([both], [upper], many)
            ]
        }
    )
    reasons = [v["reason"] for v in error["details"][1]["fieldViolations"]]
    assert reasons == ["INVALID_FORMAT", "INVALID_SHA256_FORMAT", "TOO_MANY_USER_IDENTIFIERS"]
    assert error["details"][1]["fieldViolations"][2]["field"].startswith(
        "audience_members.audience_members[2]"
    )
    too_many = post(
        base
        | {
            "audienceMembers": [{"userData": {"userIdentifiers": [{"emailAddress": h("a")}]}}]
            * 10_001
        }
    )
    assert too_many["details"][1]["fieldViolations"][0]["reason"] == "TOO_MANY_AUDIENCE_MEMBERS"
    unsigned = post(
        {k: v for k, v in base.items() if k != "termsOfService"}
        | {"audienceMembers": [{"userData": {"userIdentifiers": [{"emailAddress": h("a")}]}}]}
    )
    assert (
        unsigned["details"][1]["fieldViolations"][0]["reason"] == "TERMS_AND_CONDITIONS_NOT_SIGNED"
    )
    assert emu.members(LIST) == set()


def test_emulator_job_rules(emu: GoogleAdsEmulator) -> None:
    headers = {"authorization": f"Bearer {ACCESS_TOKEN}", "developer-token": DEVELOPER_TOKEN}
    root = f"{emu.google_ads_url}/customers/{CID}/offlineUserDataJobs"
    metadata = {
        "userList": f"customers/{CID}/userLists/{LIST}",
        "consent": {"adUserData": "GRANTED"},
    }
    job = httpx.post(
        f"{root}:create",
        headers=headers,
        json={
            "job": {"type": "CUSTOMER_MATCH_USER_LIST", "customerMatchUserListMetadata": metadata}
        },
    )
    name = job.json()["resourceName"]
    url = f"{emu.google_ads_url}/{name}"
    mixed = [
        {"create": {"userIdentifiers": [{"hashedEmail": h("a")}]}},
        {"remove": {"userIdentifiers": [{"hashedEmail": h("b")}]}},
    ]
    strict = httpx.post(f"{url}:addOperations", headers=headers, json={"operations": mixed})
    assert strict.status_code == 400  # without partial failure, one bad operation fails all
    partial = httpx.post(
        f"{url}:addOperations",
        headers=headers,
        json={"operations": mixed, "enable_partial_failure": True},
    )
    [error] = partial.json()["partialFailureError"]["details"][0]["errors"]
    assert error["errorCode"] == {"offlineUserDataJobError": "CONFLICTING_OPERATION"}
    assert error["location"]["fieldPathElements"][0] == {"fieldName": "operations", "index": 1}
    assert httpx.post(f"{url}:run", headers=headers, json={}).status_code == 200
    again = httpx.post(f"{url}:run", headers=headers, json={})
    assert again.json()["error"]["details"][0]["errors"][0]["errorCode"] == {
        "offlineUserDataJobError": "JOB_ALREADY_STARTED"
    }
    status = httpx.post(
        f"{emu.google_ads_url}/customers/{CID}/googleAds:search",
        headers=headers,
        json={
            "query": f"SELECT offline_user_data_job.status FROM offline_user_data_job WHERE offline_user_data_job.id = {name.rsplit('/', 1)[1]}"
        },
    )
    assert status.json()["results"][0]["offlineUserDataJob"]["status"] == "SUCCESS"
    assert emu.identifiers(LIST) == {h("a")}


def test_emulator_runs_as_a_process() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "revseg.sandbox.google_ads_emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        health = httpx.get(f"http://127.0.0.1:{port}/_health").json()
        assert health["ok"] and health["service"] == "revseg-sandbox-google-ads"
        assert (
            httpx.post(f"http://127.0.0.1:{port}/_faults", json={"status": 503}).status_code == 200
        )
        assert (
            httpx.get(f"http://127.0.0.1:{port}/_members", params={"user_list_id": LIST}).json()
            == []
        )
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
