"""The Google Ads API path of ``google_ads``: OfflineUserDataJobService (``api:
offline_user_data_jobs``), for accounts still allowlisted for Customer Match on it.

Per batch: one job for the removes, then one for the adds (a job mixing ``create`` and
``remove`` fails with ``CONFLICTING_OPERATION``), each created, filled with
``addOperations`` requests of at most 100,000 identifiers (at most 20 per operation), and
run. A job is run within the same ``send``, so a batch is acknowledged only once Google has
every one of its operations: a crash before ``:run`` leaves a pending job Google discards,
and the batch is sent again by the next run. ``enablePartialFailure`` keeps valid
operations; the failed ones are mapped back to their records by operation index.

Retries are safe: re-adding an identifier is harmless, a retried ``:create`` leaves an
unused pending job, and a retried ``:run`` that had gone through answers
``JOB_ALREADY_STARTED``, which counts as success. Matching runs asynchronously at Google
(up to 48 hours); revseg does not wait for the job to finish.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from revseg.destinations.google_ads_errors import parse_error, partial_failures
from revseg.destinations.google_ads_identifiers import Member, UserIds
from revseg.destinations.http import HttpCore
from revseg.destinations.redact import redact_text
from revseg.errors import DeliveryError

#: identifiers per addOperations request (summed over its operations), and per operation.
MAX_REQUEST_IDENTIFIERS = 100_000
MAX_OPERATION_IDENTIFIERS = 20
CONSENT = {"adUserData": "GRANTED", "adPersonalization": "GRANTED"}
_JOB = re.compile(r"customers/\d+/offlineUserDataJobs/\d+")


def user_identifiers(ids: UserIds) -> list[dict[str, Any]]:
    """``UserData.userIdentifiers``: one oneof ``UserIdentifier`` per identifier."""
    found: list[dict[str, Any]] = [{"hashedEmail": e} for e in ids.emails]
    found += [{"hashedPhoneNumber": p} for p in ids.phones]
    if ids.address is not None:
        a = ids.address
        found.append(
            {
                "addressInfo": {
                    "hashedFirstName": a.first_name,
                    "hashedLastName": a.last_name,
                    "countryCode": a.country,
                    "postalCode": a.postal_code,
                }
            }
        )
    return found[:MAX_OPERATION_IDENTIFIERS]


def requests_of(
    members: Sequence[Member], limit: int = MAX_REQUEST_IDENTIFIERS
) -> Iterator[list[Member]]:
    """Consecutive runs of members whose identifiers sum to at most ``limit``."""
    current: list[Member] = []
    count = 0
    for member in members:
        size = min(member.ids.count(), MAX_OPERATION_IDENTIFIERS)
        if current and count + size > limit:
            yield current
            current, count = [], 0
        current.append(member)
        count += size
    if current:
        yield current


class OfflineJobs:
    """Sends one batch's adds and removes through offline user data jobs."""

    def __init__(
        self, http: HttpCore, customer_id: str, user_list_id: str, secrets: Sequence[str] = ()
    ) -> None:
        self.http = http
        self.secrets = tuple(secrets)
        self.customer_id = customer_id
        self.user_list = f"customers/{customer_id}/userLists/{user_list_id}"

    def send(self, *, adds: Sequence[Member], removes: Sequence[Member]) -> dict[str, str]:
        """Run a remove job, then an add job; return the rejected records' reasons."""
        rejected: dict[str, str] = {}
        if removes:
            rejected.update(self._job("remove", removes))
        if adds:
            rejected.update(self._job("create", adds))
        return rejected

    def _job(self, kind: str, members: Sequence[Member]) -> dict[str, str]:
        job = self._create(with_consent=kind == "create")
        rejected: dict[str, str] = {}
        accepted = 0
        for chunk in requests_of(members):
            body = {
                "enablePartialFailure": True,
                "enableWarnings": False,
                "validateOnly": False,
                "operations": [{kind: {"userIdentifiers": user_identifiers(m.ids)}} for m in chunk],
            }
            response = self._post(f"/{job}:addOperations", body)
            try:
                failed = partial_failures(response.json())
            except ValueError as exc:  # a body that is no JSON, or failures naming no operation
                raise DeliveryError(f"{job}:addOperations: {exc}") from None
            if any(i >= len(chunk) for i in failed):
                raise DeliveryError(
                    f"{job}:addOperations: a partial failure names an unknown operation"
                )
            rejected.update({chunk[i].id: reason for i, reason in failed.items()})
            accepted += len(chunk) - len(failed)
        if accepted:
            self._post(f"/{job}:run", {"validateOnly": False}, started_ok=True)
        return rejected

    def _create(self, *, with_consent: bool) -> str:
        metadata: dict[str, Any] = {"userList": self.user_list}
        if with_consent:  # consent is for create jobs; remove jobs need none
            metadata["consent"] = dict(CONSENT)
        body = {
            "job": {"type": "CUSTOMER_MATCH_USER_LIST", "customerMatchUserListMetadata": metadata},
            "validateOnly": False,
            "enableMatchRateRangePreview": False,
        }
        response = self._post(f"/customers/{self.customer_id}/offlineUserDataJobs:create", body)
        try:
            name = response.json().get("resourceName")
        except (ValueError, AttributeError):
            name = None
        if not isinstance(name, str) or not _JOB.fullmatch(name):
            raise DeliveryError("offlineUserDataJobs:create answered without a job resourceName")
        return name

    def _post(self, path: str, body: dict[str, Any], *, started_ok: bool = False) -> httpx.Response:
        """POST through the core; ``JOB_ALREADY_STARTED`` (handed back by the classifier) is
        success only for ``:run``, where it means a retried run had gone through."""
        response = self.http.request("POST", path, json=body)
        if response.is_success:
            return response
        error = parse_error(response)
        if (
            started_ok
            and error is not None
            and error.has("offlineUserDataJobError.JOB_ALREADY_STARTED")
        ):
            return response
        shown = error.describe() if error is not None else f"HTTP {response.status_code}"
        raise DeliveryError(redact_text(f"{path.lstrip('/')}: {shown}", self.secrets))
