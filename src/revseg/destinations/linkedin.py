"""The ``linkedin`` destination: users of a DMP segment (Matched Audiences).

Each batch is one ``BATCH_CREATE`` of ``/dmpSegments/{segment_id}/users`` per 5,000
elements (``destinations/linkedin.md``), removes first and adds after, so an email that
leaves with one record and enters with another ends up in the segment. A member is sent
as ``userIds`` (the SHA-256 of the normalized email, a Google advertising id) plus the
clear-text hints LinkedIn matches on (``firstName``, ``lastName``, ``title``,
``company``, ``country``); without a user id, first and last name are required.

LinkedIn answers one status per element, in order; a failed element becomes a rejection
of its record. Adds and removes are idempotent by design (re-adding answers ``201``), so a
retried request is harmless. A segment serves ads only once it has matched at least
:data:`MIN_AUDIENCE_SIZE` members, and matching is asynchronous (``BUILDING`` -> ``READY``).
Without a configured ``rate_limit``, requests stay under the documented 600 per member per
minute.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

import httpx
from pydantic import field_validator

from revseg.destinations import identifiers as ids
from revseg.destinations.api import HttpDestination
from revseg.destinations.audiences import AudienceOptions, numeric_id, unusable_reason
from revseg.destinations.base import (
    Batch,
    BatchResult,
    Capabilities,
    DeliverySettings,
    DestinationOptions,
)
from revseg.destinations.encoding import dumps
from revseg.destinations.hashing import hash_column
from revseg.destinations.http import Verdict, classify_status
from revseg.destinations.redact import redact_text
from revseg.errors import DeliveryError

DEFAULT_BASE_URL = "https://api.linkedin.com/rest"
#: ``LinkedIn-Version``; versions are sunset about 12 months after release (then HTTP 426).
DEFAULT_VERSION = "202604"
PROTOCOL_VERSION = "2.0.0"
MAX_ELEMENTS = 5_000
MIN_AUDIENCE_SIZE = 300
REQUESTS_PER_MINUTE = 600

#: identifier kind -> element field of the clear-text matching hints.
HINTS = {
    "first_name": "firstName",
    "last_name": "lastName",
    "title": "title",
    "company": "company",
    "country": "country",
}
WANTS = "email, google_aid, or first_name with last_name"
_UNHASHED = object()


def element(action: str, identifiers: Mapping[str, str],
            email_digest: str | None | object = _UNHASHED) -> tuple[dict[str, Any] | None, list[str]]:
    """The batch element of one member (None if LinkedIn cannot match it), and unusable kinds.
    ``email_digest``: the email's digest (None: unusable) when the batch hashed its emails
    as a column (:func:`revseg.destinations.hashing.hash_column`)."""
    user_ids: list[dict[str, str]] = []
    bad: list[str] = []
    if "email" in identifiers:
        digest = ids.hash_value(identifiers["email"], ids.normalize_email) if email_digest is _UNHASHED \
            else email_digest
        if digest is None:
            bad.append("email")
        else:
            user_ids.append({"idType": "SHA256_EMAIL", "idValue": digest})
    if "google_aid" in identifiers:
        aid = ids.normalize_mobile_advertiser_id(identifiers["google_aid"])
        if aid is None:
            bad.append("google_aid")
        else:
            user_ids.append({"idType": "GOOGLE_AID", "idValue": aid})
    hints = {
        field: " ".join(identifiers[kind].split())
        for kind, field in HINTS.items()
        if identifiers.get(kind, "").strip()
    }
    if not user_ids and not ("firstName" in hints and "lastName" in hints):
        return None, bad
    if action == "REMOVE" and user_ids:
        hints = {}  # removes match on the ids; names matter only when they are the key
    return {"action": action, "userIds": user_ids, **hints}, bad


class LinkedInOptions(AudienceOptions):
    """``options:`` of a linkedin destination."""

    segment_id: str
    base_url: str = DEFAULT_BASE_URL
    #: the ``LinkedIn-Version`` header, ``YYYYMM``
    api_version: str = DEFAULT_VERSION

    @field_validator("segment_id", mode="before")
    @classmethod
    def _numeric(cls, value: object) -> str:
        return numeric_id(str(value) if isinstance(value, int) else value, "segment_id")  # type: ignore[arg-type]

    @field_validator("api_version", mode="before")
    @classmethod
    def _yyyymm(cls, value: object) -> str:
        text = str(value).strip()
        if not re.fullmatch(r"20\d\d(0[1-9]|1[0-2])", text):
            raise ValueError("api_version must be a LinkedIn-Version like 202604 (YYYYMM)")
        return text


class LinkedInDestination(HttpDestination):
    """Streams ADD/REMOVE elements to one DMP segment."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        modes=frozenset({"mirror", "upsert"}),
        max_batch_size=MAX_ELEMENTS,
        identifier_kinds=frozenset({"email", "google_aid", *HINTS}),
        hashed_identifiers=frozenset({"email"}),
        requires_identifier=True,
        supports_update=False,  # a segment holds people; there is nothing to update
        min_audience_size=MIN_AUDIENCE_SIZE,
    )
    Options: ClassVar[type[DestinationOptions]] = LinkedInOptions

    def __init__(self, name: str, options: DestinationOptions, settings: DeliverySettings) -> None:
        if not isinstance(options, LinkedInOptions):
            raise TypeError(f"expected LinkedInOptions, got {type(options).__name__}")
        if settings.rate_limit_per_s is None:  # stay under the documented per-member limit
            settings = replace(settings, rate_limit_per_s=REQUESTS_PER_MINUTE / 60)
        super().__init__(name, options, settings)
        self.linkedin = options

    def timeout(self) -> float:
        return self.linkedin.timeout.total_seconds()

    def headers(self) -> dict[str, str]:
        return {
            "authorization": f"Bearer {self.linkedin.access_token.get_secret_value()}",
            "linkedin-version": self.linkedin.api_version,
            "x-restli-protocol-version": PROTOCOL_VERSION,
        }

    def send(self, batch: Batch) -> BatchResult:
        rejected: dict[str, str] = {}
        entries: list[tuple[str, dict[str, Any]]] = []
        operations = sorted(batch.operations, key=lambda o: o.op != "remove")
        emails = hash_column([op.identifiers.get("email") for op in operations], ids.normalize_email)
        for op, email in zip(operations, emails, strict=True):
            item, bad = element("REMOVE" if op.op == "remove" else "ADD", op.identifiers, email)
            if item is not None:
                entries.append((op.id, item))
            elif op.op != "remove":
                rejected[op.id] = unusable_reason("LinkedIn", bad, WANTS)
            # an unmatchable remove was never added (its add was rejected): acknowledged
        for start in range(0, len(entries), MAX_ELEMENTS):
            rejected.update(self._post(entries[start : start + MAX_ELEMENTS]))
        return BatchResult(rejected)

    def _post(self, chunk: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
        body = dumps({"elements": [item for _, item in chunk]})
        headers = {"content-type": "application/json", "x-restli-method": "BATCH_CREATE"}
        path = f"dmpSegments/{self.linkedin.segment_id}/users"
        response = self.http.request("POST", path, content=body, headers=headers)
        try:
            results = response.json()["elements"]
            if not isinstance(results, list):
                raise TypeError("elements is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            raise DeliveryError(
                f"LinkedIn answered HTTP {response.status_code} with an "
                f"unreadable batch result ({exc})"
            ) from None
        if len(results) != len(chunk):
            raise DeliveryError(
                f"LinkedIn answered {len(results)} results for {len(chunk)} "
                "elements; cannot tell which were applied"
            )
        rejected: dict[str, str] = {}
        for (record_id, _), result in zip(chunk, results, strict=True):
            status = result.get("status") if isinstance(result, dict) else None
            if not (isinstance(status, int) and 200 <= status < 300):
                error = result.get("error") if isinstance(result, dict) else None
                message = error.get("message") if isinstance(error, dict) else None
                rejected[record_id] = redact_text(
                    f"LinkedIn element status {status}: {message or 'no message'}",
                    self.secret_values(),
                )
        return rejected

    def classify_response(self, response: httpx.Response) -> Verdict | None:
        """Reasons from LinkedIn's ``{"message", "serviceErrorCode", "status"}`` errors."""
        if response.is_success:
            return None
        try:
            body = response.json()
            message = str(body.get("message") or "")
            code = body.get("serviceErrorCode") or body.get("code")
        except (ValueError, AttributeError):
            return None
        reason = redact_text(
            f"HTTP {response.status_code}: {message} ({code or 'no code'})", self.secret_values()
        )
        hint = {
            401: "the access token is invalid or expired",
            403: "the token lacks rw_dmp_segments or the member has a VIEWER role",
            404: "unknown segment, or one created less than 5 s ago",
            426: f"LinkedIn-Version {self.linkedin.api_version} is missing or sunset; "
            "set options.api_version",
        }.get(response.status_code)
        return Verdict(
            classify_status(response.status_code), f"{reason}; {hint}" if hint else reason
        )
