"""The ``sendgrid`` destination: a Marketing Campaigns list, kept through contact jobs.

Per ``destinations/sendgrid.md``:

- ``add`` and ``update``: ``PUT /v3/marketing/contacts`` with ``list_ids: [list_id]``, at
  most 30,000 contacts and 6 MB per request, mapped traits as contact fields. The request is
  validated all or nothing: a 400 naming ``contacts[i].…`` rejects those records and the rest
  is sent again (the doc's "one invalid email rejects the whole request"). The 202's job is
  then polled (:mod:`revseg.destinations.sendgrid_jobs`); a job that ``failed`` rejects its
  records, one that ``errored`` (some contacts failed; the details sit behind
  ``errors_url``, whose format is not documented) is checked by looking its addresses up
  and rejecting those that did not reach the list.
- ``remove``: contact ids are resolved with ``POST /v3/marketing/contacts/search/emails``
  (at most 100 addresses per call; 404 when none is known), then ``DELETE
  /v3/marketing/lists/{id}/contacts?contact_ids=…``; contacts stay, only membership ends.
  An address SendGrid does not know, or whose contact is not on the list, is already gone.

Rate limits are SendGrid's ``X-RateLimit-*`` headers, honoured on every endpoint.
"""

from __future__ import annotations

import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
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
    reject_all,
)
from revseg.destinations.encoding import dumps
from revseg.destinations.http import EXTRA_SLEEP, HttpCore, Outcome, Verdict
from revseg.destinations.options import Timeout
from revseg.destinations.sendgrid_jobs import Job, JobWaiter, RateLimits
from revseg.errors import DeliveryError

log = logging.getLogger("revseg.destinations.sendgrid")

DEFAULT_BASE_URL = "https://api.sendgrid.com"
MAX_CONTACTS = 30_000
MAX_BODY = 6_000_000  # "30,000 contacts or 6 MB per request, whichever is lower"
MAX_SEARCH = 100  # search/emails: at most 100 addresses
MAX_DELETE_IDS = 100  # keeps the contact_ids query string well under URL limits
#: contact fields of the request schema that take a trait's value directly.
RESERVED_FIELDS = frozenset(
    {
        "first_name",
        "last_name",
        "address_line_1",
        "address_line_2",
        "city",
        "state_province_region",
        "postal_code",
        "country",
        "external_id",
        "anonymous_id",
        "phone_number_id",
    }
)
DEFAULT_FIELDS = {"first_name": "first_name", "last_name": "last_name"}
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_CONTACT_FIELD = re.compile(r"contacts\[(\d+)\]")


class SendgridOptions(EmailListOptions):
    """``options:`` of a sendgrid destination."""

    list_id: str
    base_url: str | None = DEFAULT_BASE_URL
    #: segment trait -> contact field: a reserved field (``first_name``) or a custom field
    #: id from ``GET /v3/marketing/field_definitions`` (``e1_T``); default: first/last name.
    fields: dict[str, str] | None = None
    #: how long one batch waits for SendGrid to process its job before the run gives up.
    job_timeout: Timeout = timedelta(minutes=10)

    @field_validator("list_id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        if not _UUID.fullmatch(value.strip()):
            raise ValueError("list_id must be the list's UUID (see GET /v3/marketing/lists)")
        return value.strip()

    @field_validator("base_url")
    @classmethod
    def _host_root(cls, value: str | None) -> str | None:
        """The doc's host is ``https://api.sendgrid.com`` and the paths start with ``/v3``;
        a root given with its version path (SPEC 3: "version path included") is the same API."""
        return value.removesuffix("/v3") if value else value


def contact(recipient: Recipient, mapping: Mapping[str, str] | None) -> dict[str, Any]:
    """One entry of ``contacts``; a NULL trait clears a reserved field (``""``)."""
    if mapping is None:
        mapping = {t: f for t, f in DEFAULT_FIELDS.items() if t in recipient.traits}
    entry: dict[str, Any] = {"email": recipient.email}
    custom: dict[str, Any] = {}
    for trait, target in mapping.items():
        if trait not in recipient.traits:
            continue
        value = recipient.traits[trait]
        if target in RESERVED_FIELDS:
            entry[target] = "" if value is None else str(value)
        elif value is not None:
            custom[target] = value
    if custom:
        entry["custom_fields"] = custom
    return entry


def contact_errors(document: Mapping[str, Any]) -> dict[int, str]:
    """``{index: message}`` from a 400's ``errors[].field`` of the form ``contacts[i]…``."""
    found: dict[int, str] = {}
    for error in document.get("errors") or []:
        if not isinstance(error, dict):
            continue
        match = _CONTACT_FIELD.match(str(error.get("field") or ""))
        if match:
            index = int(match.group(1))
            message = str(error.get("message") or "invalid")
            found[index] = f"{found[index]}; {message}" if index in found else message
    return found


class SendgridDestination(HttpDestination):
    """Keeps a SendGrid list equal to (mirror) or a superset of (upsert) a segment."""

    capabilities: ClassVar[Capabilities] = email_capabilities(MAX_CONTACTS)
    Options: ClassVar[type[DestinationOptions]] = SendgridOptions

    def __init__(self, name: str, options: DestinationOptions, settings: DeliverySettings) -> None:
        if not isinstance(options, SendgridOptions):
            raise TypeError(f"expected SendgridOptions, got {type(options).__name__}")
        super().__init__(name, options, settings)
        self.sendgrid = options
        sleep: Callable[[float], None] = settings.extra.get(EXTRA_SLEEP) or time.sleep
        self.limits = RateLimits(sleep=sleep)

    def timeout(self) -> float:
        return self.sendgrid.timeout.total_seconds()

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.sendgrid.api_key.get_secret_value()}"}

    def make_jobs(self, http: HttpCore) -> JobWaiter:
        return JobWaiter(http, self.limits, timeout=self.sendgrid.job_timeout.total_seconds())

    def send(self, batch: Batch) -> BatchResult:
        members, rejected = recipients(batch.operations, "SendGrid")
        upserts = [m for m in members if m.op in ("add", "update")]
        removes = [m for m in members if m.op == "remove"]
        encoded = {id(m): dumps(contact(m, self.sendgrid.fields)) for m in upserts}
        overhead = len(dumps({"list_ids": [self.sendgrid.list_id], "contacts": []}))
        for chunk in chunks(
            upserts,
            lambda m: encoded[id(m)],
            max_items=MAX_CONTACTS,
            max_bytes=MAX_BODY,
            overhead=overhead,
        ):
            rejected.update(self._upsert(chunk, encoded))
        if removes:
            rejected.update(self._remove(removes))
        return BatchResult(rejected)

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        self.limits.wait(method, url)
        return self.http.request(method, url, **kwargs)

    def _upsert(self, chunk: list[Recipient], encoded: dict[int, bytes]) -> dict[str, str]:
        rejected: dict[str, str] = {}
        head = b'{"list_ids":' + dumps([self.sendgrid.list_id]) + b',"contacts":['
        while chunk:  # every 400 round drops at least one contact, so this ends
            body = head + b",".join(encoded[id(m)] for m in chunk) + b"]}"
            response = self._request(
                "PUT",
                "/v3/marketing/contacts",
                content=body,
                headers={"content-type": "application/json"},
            )
            if response.status_code == 400:
                bad = contact_errors(json_body(response))
                if not bad or any(i >= len(chunk) for i in bad):
                    raise DeliveryError(
                        f"SendGrid refused the upsert: HTTP 400 {response.text[:300]}"
                    )
                for index, message in bad.items():
                    rejected.update(reject(chunk[index], f"SendGrid: {message}"))
                chunk = [m for i, m in enumerate(chunk) if i not in bad]
                continue
            job = self.make_jobs(self.http).wait(str(json_body(response).get("job_id", "")))
            rejected.update(self._job_outcome(job, chunk))
            break
        return rejected

    def _job_outcome(self, job: Job, chunk: list[Recipient]) -> dict[str, str]:
        if job.status == "completed":
            return {}
        if job.status == "failed":
            return reject_all(chunk, f"SendGrid import job {job.id} failed (see its errors_url)")
        # errored: some contacts failed; those not on the list now are the ones
        on_list = {
            key for key, (_, lists) in self._lookup(chunk).items() if self.sendgrid.list_id in lists
        }
        missing = [m for m in chunk if m.key not in on_list]
        log.warning(
            "%s: SendGrid job %s errored (%d errors); %d contact(s) not on the list",
            self.name,
            job.id,
            job.errored_count,
            len(missing),
        )
        return reject_all(
            missing,
            f"SendGrid import job {job.id} finished with errors and did not "
            "add this contact (see the job's errors_url)",
        )

    def _lookup(self, members: list[Recipient]) -> dict[str, tuple[str, list[str]]]:
        """``{lowercase email: (contact id, list ids)}`` of the addresses SendGrid knows."""
        found: dict[str, tuple[str, list[str]]] = {}
        # search/emails takes addresses of at most 100 characters; a longer one cannot be
        # looked up, so it is treated as unknown (a remove of it is a no-op)
        searchable = [m for m in members if len(m.email) <= 100]
        for start in range(0, len(searchable), MAX_SEARCH):
            emails = [m.email for m in searchable[start : start + MAX_SEARCH]]
            response = self._request(
                "POST",
                "/v3/marketing/contacts/search/emails",
                content=dumps({"emails": emails}),
                headers={"content-type": "application/json"},
            )
            if response.status_code == 404:  # none of them is a contact
                continue
            result = json_body(response).get("result")
            for email, entry in (result or {}).items():
                person = entry.get("contact") if isinstance(entry, dict) else None
                if isinstance(person, dict) and person.get("id"):
                    lists = [str(x) for x in person.get("list_ids") or []]
                    found[str(email).strip().lower()] = (str(person["id"]), lists)
        return found

    def _remove(self, members: list[Recipient]) -> dict[str, str]:
        by_id: dict[str, list[Recipient]] = defaultdict(list)
        for key, (contact_id, lists) in self._lookup(members).items():
            if self.sendgrid.list_id in lists:
                by_id[contact_id].extend(m for m in members if m.key == key)
        ids = sorted(by_id)
        rejected: dict[str, str] = {}
        for start in range(0, len(ids), MAX_DELETE_IDS):
            part = ids[start : start + MAX_DELETE_IDS]
            response = self._request(
                "DELETE",
                f"/v3/marketing/lists/{self.sendgrid.list_id}/contacts",
                params={"contact_ids": ",".join(part)},
            )
            job = self.make_jobs(self.http).wait(
                str(json_body(response).get("job_id", "")), untracked_ok=True
            )
            if job.status in ("failed", "errored"):
                gone = {
                    key
                    for key, (_, lists) in self._lookup([m for i in part for m in by_id[i]]).items()
                    if self.sendgrid.list_id not in lists
                }
                still = [m for i in part for m in by_id[i] if m.key not in gone]
                rejected.update(
                    reject_all(
                        still, f"SendGrid job {job.id} did not remove this contact from the list"
                    )
                )
        return rejected

    def classify_response(self, response: httpx.Response) -> Verdict | None:
        verdict = self.limits.classify(response)
        if verdict is not None:
            return verdict
        path = response.request.url.path
        if response.status_code == 404 and (
            "/contacts/imports/" in path or path.endswith("/contacts/search/emails")
        ):
            return Verdict(Outcome.OK)  # "no such job" / "none of these is a contact"
        if response.status_code == 400 and path.endswith("/v3/marketing/contacts"):
            return Verdict(Outcome.OK)  # per-contact validation errors: mapped to records
        return None
