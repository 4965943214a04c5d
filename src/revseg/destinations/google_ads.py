"""The ``google_ads`` destination: Customer Match lists, through Google's Data Manager API
(the default, and the only path Google opens to new Customer Match integrations since
2026-04) or the older Google Ads API OfflineUserDataJobService (``api: offline_user_data_jobs``).

Each batch is split into removes and adds (an ``update`` re-adds: list membership has no
traits to update). Every member's identifiers are normalized and hashed as Google specifies
(:mod:`revseg.destinations.google_ads_identifiers`); a member left with no usable identifier
comes back as a per-record rejection naming why, and is never sent.

The two wire formats live in :mod:`revseg.destinations.google_ads_data_manager` and
:mod:`revseg.destinations.google_ads_jobs`; retries, backoff and the error classification in
the HTTP core, with the hook of :mod:`revseg.destinations.google_ads_errors`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import ClassVar, Literal

import httpx
from pydantic import SecretStr, field_validator, model_validator

from revseg.destinations.api import HttpDestination
from revseg.destinations.base import (
    Batch,
    BatchResult,
    Capabilities,
    DeliverySettings,
    DestinationOptions,
)
from revseg.destinations.google_ads_data_manager import MAX_MEMBERS, DataManager
from revseg.destinations.google_ads_errors import classify
from revseg.destinations.google_ads_identifiers import (
    HASHED_KINDS,
    KINDS,
    Member,
    hash_identifiers,
)
from revseg.destinations.google_ads_jobs import OfflineJobs
from revseg.destinations.http import Verdict
from revseg.destinations.options import HttpOptions
from revseg.destinations.redact import redact_text

Api = Literal["data_manager", "offline_user_data_jobs"]
#: the API roots as Google documents them, version included; endpoint paths are appended.
BASE_URLS: dict[str, str] = {
    "data_manager": "https://datamanager.googleapis.com/v1",
    "offline_user_data_jobs": "https://googleads.googleapis.com/v26",
}
_CUSTOMER_ID = re.compile(r"\d{10}")


def _customer_id(value: str) -> str:
    digits = value.strip().replace("-", "")
    if not _CUSTOMER_ID.fullmatch(digits):
        raise ValueError(
            "must be a Google Ads customer ID: 10 digits, dashes allowed (123-456-7890)"
        )
    return digits


class GoogleAdsOptions(HttpOptions):
    """``options:`` of a google_ads destination (SPEC 3)."""

    customer_id: str
    user_list_id: str
    access_token: SecretStr
    #: required by the Google Ads API only; the Data Manager API takes no developer token.
    developer_token: SecretStr | None = None
    login_customer_id: str | None = None
    api: Api = "data_manager"

    @field_validator("customer_id", "login_customer_id")
    @classmethod
    def _ten_digits(cls, value: str | None) -> str | None:
        return None if value is None else _customer_id(str(value))

    @field_validator("user_list_id", mode="before")
    @classmethod
    def _list_id(cls, value: object) -> str:
        text = str(value).strip()
        if not text.isascii() or not text.isdigit():
            raise ValueError("must be the numeric ID of a Customer Match user list")
        return text

    @model_validator(mode="after")
    def _developer_token_for_ads_api(self) -> GoogleAdsOptions:
        if self.api == "offline_user_data_jobs" and self.developer_token is None:
            raise ValueError("api: offline_user_data_jobs needs developer_token")
        return self


class GoogleAdsDestination(HttpDestination):
    """Adds and removes Customer Match list members; never trigger messages."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        processing_lag=timedelta(hours=48),
        modes=frozenset({"mirror", "upsert"}),
        max_batch_size=MAX_MEMBERS,
        identifier_kinds=KINDS,
        hashed_identifiers=HASHED_KINDS,
        requires_identifier=True,
        supports_update=False,  # a list holds identifiers, no traits
    )
    #: what Google documents beyond the wire format, for docs and ``revseg validate`` output.
    constraints: ClassVar[tuple[str, ...]] = (
        "Google matches uploaded identifiers asynchronously: a change can take up to 48 hours "
        "to show in the list's size (Google Ads Help 7474263).",
        "A Customer Match list serves only once enough members matched (Google documents a "
        "minimum per network); small segments may never serve.",
        "Memberships expire after the list's membership_life_span (at most 540 days); a "
        "member who never changes is not re-sent, so keep the list's life span long.",
        "revseg asserts consent (adUserData, adPersonalization granted) and acceptance of the "
        "Customer Match terms with every upload; only sync segments whose users consented.",
        "Google Ads API path: one job at a time per list (CONCURRENT_MODIFICATION otherwise, "
        "retried); new Customer Match adopters are not allowlisted since 2026-04-01.",
    )
    Options: ClassVar[type[DestinationOptions]] = GoogleAdsOptions

    def __init__(self, name: str, options: DestinationOptions, settings: DeliverySettings) -> None:
        if not isinstance(options, GoogleAdsOptions):
            raise TypeError(f"expected GoogleAdsOptions, got {type(options).__name__}")
        super().__init__(name, options, settings)
        self.gads = options

    # -- HttpDestination hooks -----------------------------------------------------------
    def base_url(self) -> str:
        return self.gads.base_url or BASE_URLS[self.gads.api]

    def timeout(self) -> float:
        return self.gads.timeout.total_seconds()

    def headers(self) -> dict[str, str]:
        headers = {
            "authorization": f"Bearer {self.gads.access_token.get_secret_value()}",
            "content-type": "application/json",
        }
        if self.gads.api == "offline_user_data_jobs":
            assert self.gads.developer_token is not None  # checked by the options
            headers["developer-token"] = self.gads.developer_token.get_secret_value()
            if self.gads.login_customer_id:
                headers["login-customer-id"] = self.gads.login_customer_id
        return headers

    def classify_response(self, response: httpx.Response) -> Verdict | None:
        verdict = classify(response)
        if verdict is not None and verdict.reason:
            return Verdict(
                verdict.outcome,
                redact_text(verdict.reason, self.secret_values()),
                verdict.retry_after,
            )
        return verdict

    # -- sending ---------------------------------------------------------------------------
    def send(self, batch: Batch) -> BatchResult:
        adds: list[Member] = []
        removes: list[Member] = []
        rejected: dict[str, str] = {}
        for op in batch.operations:
            if op.op == "trigger":
                rejected[op.id] = "google_ads keeps lists; it cannot send trigger messages"
                continue
            ids = hash_identifiers(op.identifiers)
            if ids.empty:
                rejected[op.id] = ids.rejection()
                continue
            (removes if op.op == "remove" else adds).append(Member(op.id, ids))
        if self.gads.api == "offline_user_data_jobs":
            jobs = OfflineJobs(
                self.http, self.gads.customer_id, self.gads.user_list_id, self.secret_values()
            )
            rejected.update(jobs.send(adds=adds, removes=removes))
        else:
            manager = DataManager(
                self.http,
                self.gads.customer_id,
                self.gads.user_list_id,
                self.gads.login_customer_id,
                self.secret_values(),
            )
            rejected.update(manager.send(adds=adds, removes=removes))
        return BatchResult(rejected)
