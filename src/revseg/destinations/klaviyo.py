"""The ``klaviyo`` destination: a Klaviyo list, kept through bulk imports and list relationships.

Per ``destinations/klaviyo.md`` (JSON:API; ``Authorization: Klaviyo-API-Key <key>``, a
``revision`` header on every call, ``application/vnd.api+json`` bodies):

- ``add`` and ``update``: ``POST /api/profile-bulk-import-jobs`` with the list in
  ``relationships.lists`` (an upsert of the profiles, by email, that also puts them on the
  list), at most 10,000 profiles and 5 MB per job. The batch is acknowledged only once the
  job is ``complete`` (:class:`~revseg.destinations.klaviyo_wire.ImportJobs`); rows the job
  refused are read from ``…/import-errors`` and rejected. A synchronous 400 pointing at
  ``/data/attributes/profiles/data/{i}`` rejects those profiles and imports the rest.
- ``remove``: list membership is keyed by Klaviyo profile id, so addresses are resolved
  with ``GET /api/profiles?filter=any(email,[…])`` (100 per call, the page size limit),
  then ``DELETE /api/lists/{id}/relationships/profiles`` takes at most 1,000 ids per call.
  An address Klaviyo does not know is not on the list: already removed. Removal ends list
  membership only; consent is left alone, as the doc requires for plain membership sync.

429 answers carry ``Retry-After``, honoured by the HTTP core; 503/504 are retried too.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, ClassVar

import httpx
from pydantic import field_validator

from revseg.destinations.api import HttpDestination
from revseg.destinations.base import (
    Batch,
    BatchResult,
    Capabilities,
    DeliverySettings,
    DestinationOptions,
)
from revseg.destinations.email_lists import (
    EmailListOptions,
    Recipient,
    chunks,
    email_capabilities,
    json_body,
    recipients,
    reject,
)
from revseg.destinations.encoding import dumps
from revseg.destinations.http import Outcome, Verdict
from revseg.destinations.klaviyo_wire import (
    JOBS,
    MEDIA,
    REVISION,
    ImportJob,
    ImportJobs,
    error_text,
    import_envelope,
    pages,
    profile,
    profile_index,
    relationship_document,
)
from revseg.destinations.options import Timeout
from revseg.errors import DeliveryError

log = logging.getLogger("revseg.destinations.klaviyo")

DEFAULT_BASE_URL = "https://a.klaviyo.com"
MAX_PROFILES = 10_000  # per import job
MAX_BODY = 5_000_000  # "≤ 5 MB payload" per import job
MAX_RELATIONSHIP_IDS = 1_000  # per list relationship call
MAX_LOOKUP = 100  # GET /api/profiles page[size] is 1..100


class KlaviyoOptions(EmailListOptions):
    """``options:`` of a klaviyo destination."""

    list_id: str
    base_url: str | None = DEFAULT_BASE_URL
    #: how long one batch waits for Klaviyo to process its import job.
    job_timeout: Timeout = timedelta(minutes=10)

    @field_validator("list_id")
    @classmethod
    def _list_id(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("list_id must not be empty")
        return value.strip()

    @field_validator("base_url")
    @classmethod
    def _host_root(cls, value: str | None) -> str | None:
        """The doc's base is ``https://a.klaviyo.com/api``; paths here start with /api."""
        return value.removesuffix("/api") if value else value


class KlaviyoDestination(HttpDestination):
    """Keeps a Klaviyo list equal to (mirror) or a superset of (upsert) a segment."""

    capabilities: ClassVar[Capabilities] = email_capabilities(MAX_PROFILES)
    Options: ClassVar[type[DestinationOptions]] = KlaviyoOptions

    def __init__(self, name: str, options: DestinationOptions, settings: DeliverySettings) -> None:
        if not isinstance(options, KlaviyoOptions):
            raise TypeError(f"expected KlaviyoOptions, got {type(options).__name__}")
        super().__init__(name, options, settings)
        self.klaviyo = options

    def timeout(self) -> float:
        return self.klaviyo.timeout.total_seconds()

    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Klaviyo-API-Key {self.klaviyo.api_key.get_secret_value()}",
            "revision": REVISION,
            "accept": MEDIA,
        }

    def make_jobs(self) -> ImportJobs:
        return ImportJobs(self.http, timeout=self.klaviyo.job_timeout.total_seconds())

    def send(self, batch: Batch) -> BatchResult:
        members, rejected = recipients(batch.operations, "Klaviyo")
        upserts = [m for m in members if m.op in ("add", "update")]
        removes = [m for m in members if m.op == "remove"]
        encoded = {id(m): dumps(profile(m)) for m in upserts}
        head, tail = import_envelope(self.klaviyo.list_id)
        for chunk in chunks(
            upserts,
            lambda m: encoded[id(m)],
            max_items=MAX_PROFILES,
            max_bytes=MAX_BODY,
            overhead=len(head) + len(tail),
        ):
            rejected.update(self._import(chunk, encoded))
        if removes:
            rejected.update(self._remove(removes))
        return BatchResult(rejected)

    # -- adds and updates ---------------------------------------------------------------
    def _import(self, chunk: list[Recipient], encoded: dict[int, bytes]) -> dict[str, str]:
        rejected: dict[str, str] = {}
        head, tail = import_envelope(self.klaviyo.list_id)
        while chunk:  # every 400 round drops at least one profile, so this ends
            body = head + b",".join(encoded[id(m)] for m in chunk) + tail
            response = self.http.request(
                "POST", JOBS, content=body, headers={"content-type": MEDIA}
            )
            document = json_body(response)
            if response.status_code == 400:
                bad = self._pointed(document, len(chunk))
                if not bad:
                    reasons = "; ".join(error_text(e) for e in document.get("errors") or [])
                    raise DeliveryError(f"Klaviyo refused the import: HTTP 400 {reasons[:300]}")
                for index, text in bad.items():
                    rejected.update(_reject(chunk[index], f"Klaviyo: {text}"))
                chunk = [m for i, m in enumerate(chunk) if i not in bad]
                continue
            data = document.get("data") if isinstance(document.get("data"), dict) else {}
            job = self.make_jobs().wait(str((data or {}).get("id") or ""))
            rejected.update(self._job_outcome(job, chunk))
            break
        return rejected

    @staticmethod
    def _pointed(document: dict[str, Any], count: int) -> dict[int, str]:
        """``{index: reason}`` of a 400's errors that point at one profile of the job."""
        found: dict[int, str] = {}
        for error in document.get("errors") or []:
            source = error.get("source") if isinstance(error, dict) else None
            index = profile_index((source or {}).get("pointer"))
            if index is not None and index < count:
                text = error_text(error)
                found[index] = f"{found[index]}; {text}" if index in found else text
        return found

    def _job_outcome(self, job: ImportJob, chunk: list[Recipient]) -> dict[str, str]:
        if job.status == "cancelled":
            raise DeliveryError(
                f"Klaviyo import job {job.id} was cancelled; the batch is sent again next run"
            )
        if job.failed_count <= 0:
            return {}
        by_key = {m.key: m for m in chunk}
        rejected: dict[str, str] = {}
        placed: set[str] = set()
        for error in self.make_jobs().errors(job.id):
            member = self._member_of(error, chunk, by_key)
            if member is None or member.key in placed:
                continue
            placed.add(member.key)
            rejected.update(_reject(member, f"Klaviyo import error: {error_text(error)}"))
        if len(placed) < job.failed_count:
            log.warning(
                "%s: Klaviyo job %s failed %d profile(s), but only %d error(s) name one of "
                "the batch; the rest cannot be reported per record",
                self.name,
                job.id,
                job.failed_count,
                len(placed),
            )
        return rejected

    @staticmethod
    def _member_of(
        error: dict[str, Any], chunk: list[Recipient], by_key: dict[str, Recipient]
    ) -> Recipient | None:
        """The profile an import error is about: by its ``original_payload`` address, else
        by the index its ``source.pointer`` names."""
        payload = error.get("original_payload")
        if isinstance(payload, dict):
            nested = payload.get("attributes")
            email = payload.get("email") or (
                nested.get("email") if isinstance(nested, dict) else None
            )
            if email and str(email).strip().lower() in by_key:
                return by_key[str(email).strip().lower()]
        source = error.get("source")
        index = profile_index(source.get("pointer") if isinstance(source, dict) else None)
        return chunk[index] if index is not None and index < len(chunk) else None

    # -- removes ------------------------------------------------------------------------
    def _profile_ids(self, members: list[Recipient]) -> list[str]:
        """The profile ids of the addresses Klaviyo knows (others are on no list)."""
        keys = sorted({m.key for m in members})
        found: set[str] = set()
        for start in range(0, len(keys), MAX_LOOKUP):
            emails = keys[start : start + MAX_LOOKUP]
            wanted = set(emails)
            params = {
                "filter": f"any(email,{dumps(emails).decode()})",
                "page[size]": str(MAX_LOOKUP),
                "fields[profile]": "email",
            }
            for item in pages(self.http, "/api/profiles", params):
                email = str((item.get("attributes") or {}).get("email") or "").lower()
                if item.get("id") and email in wanted:
                    found.add(str(item["id"]))
        return sorted(found)

    def _remove(self, members: list[Recipient]) -> dict[str, str]:
        """Take the members' profiles off the list; the calls are idempotent and all or
        nothing, so there is no per-record outcome to report."""
        ids = self._profile_ids(members)
        path = f"/api/lists/{self.klaviyo.list_id}/relationships/profiles"
        for start in range(0, len(ids), MAX_RELATIONSHIP_IDS):
            body = relationship_document(ids[start : start + MAX_RELATIONSHIP_IDS])
            self.http.request("DELETE", path, content=body, headers={"content-type": MEDIA})
        return {}

    def classify_response(self, response: httpx.Response) -> Verdict | None:
        if response.status_code == 400 and response.request.url.path.endswith(JOBS):
            return Verdict(Outcome.OK)  # profiles named by pointer: mapped to records
        return None


def _reject(member: Recipient, reason: str) -> dict[str, str]:
    """``reject`` with the member's phone number masked too (Klaviyo echoes bad values)."""
    phone = member.traits.get("phone_number")
    if phone is not None and str(phone).strip():
        reason = reason.replace(str(phone).strip(), "<phone>")
    return reject(member, reason)
