"""The emulated Google Ads API OfflineUserDataJobService, with its job lifecycle.

``:create`` makes a PENDING job; ``:addOperations`` stages operations on a PENDING job
(with ``enablePartialFailure`` valid ones are kept and the failed ones are reported in
``partialFailureError`` located at ``operations[i]``; without it any failure fails the whole
request); ``:run`` moves it to RUNNING and, after ``processing_seconds``, SUCCESS with its
operations applied in order. A second ``:run`` or a later ``:addOperations`` answers
``JOB_ALREADY_STARTED``; running a job while another job on the same list is RUNNING
answers ``CONCURRENT_MODIFICATION`` (409 ``ABORTED``); a job mixing ``create`` and ``remove``
fails them with ``CONFLICTING_OPERATION``; ``removeAll`` must come first.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from revseg.sandbox import google_ads_wire as wire
from revseg.sandbox.google_ads_emulator_ops import (
    MAX_REQUEST_IDENTIFIERS,
    check_operation,
    job_error,
)

if TYPE_CHECKING:
    from revseg.sandbox.google_ads_emulator import GoogleAdsEmulator
    from revseg.sandbox.google_ads_emulator_http import Reply

JOB_TYPES = ("CUSTOMER_MATCH_USER_LIST", "CUSTOMER_MATCH_WITH_ATTRIBUTES")
CONSENT_VALUES = {"UNSPECIFIED", "UNKNOWN", "GRANTED", "DENIED"}
_CUSTOMER = re.compile(r"\d{10}")
_JOB_PATH = re.compile(r"offlineUserDataJobs/(\d+):(addOperations|run)")


@dataclass
class Job:
    name: str
    customer_id: str
    user_list_id: str
    consent: dict[str, str]
    status: str = "PENDING"
    operations: list[tuple[str, frozenset[str]]] = field(default_factory=list)
    ready_at: float | None = None


class JobService:
    """The jobs of one emulator; every method runs under the emulator's lock."""

    def __init__(self, emu: GoogleAdsEmulator) -> None:
        self.emu = emu
        self.jobs: dict[str, Job] = {}
        self._next_id = 1000
        self.version = "v26"

    def handle(
        self, version: str, customer: str, rest: str, headers: dict[str, str], raw: dict[str, Any]
    ) -> Reply:
        with self.emu.lock:
            self.version = version
            self.settle()
            refused = self._auth(customer, headers)
            if refused is not None:
                return refused
            if rest == "offlineUserDataJobs:create":
                return self._checked(raw, wire.CREATE_JOB, lambda body: self.create(customer, body))
            if rest == "googleAds:search":
                return self._checked(raw, wire.SEARCH, lambda body: self.search(customer, body))
            match = _JOB_PATH.fullmatch(rest)
            job = self.jobs.get(f"customers/{customer}/{rest.partition(':')[0]}") if match else None
            if match is None or job is None:
                return self.fail(
                    400,
                    [
                        wire.ads_error(
                            "mutateError", "RESOURCE_NOT_FOUND", "Resource was not found."
                        )
                    ],
                )
            if match.group(2) == "run":
                return self._checked(raw, wire.RUN_JOB, lambda body: self.run(job, body))
            return self._checked(
                raw, wire.ADD_OPERATIONS, lambda body: self.add_operations(job, body)
            )

    def fail(self, code: int, errors: list[dict[str, Any]]) -> Reply:
        request_id = wire.new_request_id()
        body = wire.envelope(code, [wire.ads_failure(self.version, errors, request_id)])
        return code, {"request-id": request_id}, body

    def _ok(self, body: dict[str, Any]) -> Reply:
        return 200, {"request-id": wire.new_request_id()}, body

    def _checked(self, raw: dict[str, Any], schema: Any, then: Any) -> Reply:
        body = wire.camelize(raw)
        problems = wire.schema_problems(body, schema)
        if problems:
            return 400, {}, wire.envelope(400, [wire.bad_request(problems)])
        reply: Reply = then(body)
        return reply

    def _auth(self, customer: str, headers: dict[str, str]) -> Reply | None:
        auth = headers.get("authorization", "")
        if auth != f"Bearer {self.emu.access_token}":
            value = "OAUTH_TOKEN_INVALID" if auth else "AUTHENTICATION_ERROR"
            return self.fail(
                401,
                [
                    wire.ads_error(
                        "authenticationError", value, "Authentication of the request failed."
                    )
                ],
            )
        if headers.get("developer-token") != self.emu.developer_token:
            return self.fail(
                401,
                [
                    wire.ads_error(
                        "authenticationError",
                        "DEVELOPER_TOKEN_INVALID",
                        "The developer token is not valid.",
                    )
                ],
            )
        if not _CUSTOMER.fullmatch(customer):
            return self.fail(
                400,
                [
                    wire.ads_error(
                        "authenticationError",
                        "CLIENT_CUSTOMER_ID_INVALID",
                        "Client customer ID is not a number.",
                    )
                ],
            )
        manager = self.emu.manager_customer_id
        if manager is not None and headers.get("login-customer-id") != manager:
            text = (
                "User doesn't have permission to access customer. Note: If you're accessing a client "
                "customer, the manager's customer id must be set in the 'login-customer-id' header."
            )
            return self.fail(
                403, [wire.ads_error("authorizationError", "USER_PERMISSION_DENIED", text)]
            )
        return None

    # -- the service ---------------------------------------------------------------------
    def create(self, customer: str, body: dict[str, Any]) -> Reply:
        job = body.get("job") or {}
        if job.get("type") not in JOB_TYPES:
            value = "REQUIRED" if "type" not in job else "INVALID_VALUE"
            return self.fail(
                400,
                [wire.ads_error("fieldError", value, "job.type", [("job", None), ("type", None)])],
            )
        metadata = job.get("customerMatchUserListMetadata") or {}
        match = re.fullmatch(
            rf"customers/{customer}/userLists/(\d+)", str(metadata.get("userList", ""))
        )
        if match is None or match.group(1) == "0":
            return self.fail(
                400,
                [
                    wire.ads_error(
                        "offlineUserDataJobError",
                        "INVALID_USER_LIST_ID",
                        "The user list ID provided for the job is invalid.",
                    )
                ],
            )
        consent = metadata.get("consent") or {}
        if any(v not in CONSENT_VALUES for v in consent.values()):
            return self.fail(400, [wire.ads_error("fieldError", "INVALID_VALUE", "consent")])
        if body.get("validateOnly"):
            return self._ok({})
        self._next_id += 1
        name = f"customers/{customer}/offlineUserDataJobs/{self._next_id}"
        self.jobs[name] = Job(name, customer, match.group(1), dict(consent))
        return self._ok({"resourceName": name})

    def add_operations(self, job: Job, body: dict[str, Any]) -> Reply:
        if job.status != "PENDING":
            return self.fail(
                400, [job_error("JOB_ALREADY_STARTED", "The job has already started.")]
            )
        operations = body.get("operations") or []
        if not operations:
            return self.fail(
                400,
                [
                    wire.ads_error(
                        "fieldError", "REQUIRED_NONEMPTY_LIST", "operations", [("operations", None)]
                    )
                ],
            )
        total = sum(
            len((op.get("create") or op.get("remove") or {}).get("userIdentifiers") or [])
            for op in operations
        )
        if total > MAX_REQUEST_IDENTIFIERS:
            text = "Maximum number of user identifiers allowed per request is 100,000 and per operation is 20."
            return self.fail(400, [job_error("TOO_MANY_USER_IDENTIFIERS", text)])
        if any("create" in op for op in operations) and job.consent.get("adUserData") != "GRANTED":
            return self.fail(
                400,
                [
                    job_error(
                        "CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS",
                        "Customer has not accepted the customer data terms.",
                    )
                ],
            )
        errors: list[dict[str, Any]] = []
        staged: list[tuple[str, frozenset[str]]] = []
        job_kind = next((k for k, _ in job.operations if k != "removeAll"), None)
        for i, op in enumerate(operations):
            kind, found, keys = check_operation(
                i, op, job_kind, bool(job.operations or staged), self.emu.poisoned
            )
            if found:
                errors += found
                continue
            job_kind = job_kind or (kind if kind != "removeAll" else None)
            staged.append((kind, keys))
        if errors and not body.get("enablePartialFailure"):
            return self.fail(400, errors)
        if not body.get("validateOnly"):
            job.operations += staged
        if not errors:
            return self._ok({})
        request_id = wire.new_request_id()
        status = {
            "code": 3,
            "message": f"Multiple errors in 'details'. First error: {errors[0]['message']}",
            "details": [wire.ads_failure(self.version, errors, request_id)],
        }
        return 200, {"request-id": request_id}, {"partialFailureError": status}

    def run(self, job: Job, body: dict[str, Any]) -> Reply:
        if job.status != "PENDING":
            return self.fail(
                400, [job_error("JOB_ALREADY_STARTED", "The job has already started.")]
            )
        if any(
            j.status == "RUNNING" and j.user_list_id == job.user_list_id for j in self.jobs.values()
        ):
            text = "Multiple requests were attempting to modify the same resource at once."
            return self.fail(
                409, [wire.ads_error("databaseError", "CONCURRENT_MODIFICATION", text)]
            )
        if not body.get("validateOnly"):
            job.status = "RUNNING"
            job.ready_at = time.monotonic() + self.emu.processing_seconds
            self.settle()
        metadata = {
            "@type": f"type.googleapis.com/google.ads.googleads.{self.version}.resources.OfflineUserDataJobMetadata"
        }
        operation = {
            "name": f"customers/{job.customer_id}/operations/{uuid.uuid4().hex[:16]}",
            "metadata": metadata,
            "done": job.status == "SUCCESS",
        }
        return self._ok(operation)

    def settle(self) -> None:
        """Finish RUNNING jobs whose processing time has passed, applying their operations."""
        now = time.monotonic()
        for job in self.jobs.values():
            if job.status == "RUNNING" and job.ready_at is not None and job.ready_at <= now:
                audience = self.emu.audience(job.user_list_id)
                for kind, keys in job.operations:
                    if kind == "removeAll":
                        audience.clear()
                    elif kind == "create":
                        audience.add(keys)
                    else:
                        audience.remove(keys)
                job.status = "SUCCESS"

    def search(self, customer: str, body: dict[str, Any]) -> Reply:
        """GAQL over ``offline_user_data_job`` only, filtered by ``offline_user_data_job.id``."""
        match = re.search(r"offline_user_data_job\.id\s*=\s*(\d+)", str(body.get("query", "")))
        rows = [
            {
                "offlineUserDataJob": {
                    "resourceName": j.name,
                    "id": j.name.rsplit("/", 1)[1],
                    "type": "CUSTOMER_MATCH_USER_LIST",
                    "status": j.status,
                }
            }
            for j in self.jobs.values()
            if j.customer_id == customer
            and (match is None or j.name.endswith(f"/{match.group(1)}"))
        ]
        return self._ok({"results": rows, "fieldMask": "offlineUserDataJob.status"})
