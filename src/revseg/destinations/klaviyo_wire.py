"""Klaviyo's JSON:API documents and its asynchronous bulk import jobs, for the klaviyo
destination.

A profile of a bulk import carries the address and the segment's traits: traits named like
Klaviyo's own profile fields (``first_name``, ``phone_number`` in E.164 ...) go to those
fields, any other to ``properties``. A NULL trait clears the field (``null``; for a custom property,
``meta.patch_properties.unset``), so the profile mirrors the warehouse.

An import job is accepted with ``202`` and processed later: :class:`ImportJobs` polls
``GET /api/profile-bulk-import-jobs/{id}`` until it is ``complete`` (or ``cancelled``), and
reads the rows it refused from ``…/import-errors``, page by page.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from revseg.destinations.email_lists import Recipient, json_body
from revseg.destinations.encoding import dumps
from revseg.destinations.http import HttpCore
from revseg.destinations.identifiers import normalize_e164
from revseg.errors import DeliveryError, TransientDeliveryError

#: the API revision every call names; the one of the vendored OpenAPI document.
REVISION = "2026-07-15"
MEDIA = "application/vnd.api+json"
JOBS = "/api/profile-bulk-import-jobs"
#: profile attributes of ``ProfileUpsertQueryResourceObject`` that take a trait's text.
PROFILE_FIELDS = frozenset(
    {
        "first_name",
        "last_name",
        "organization",
        "locale",
        "title",
        "image",
        "phone_number",
        "external_id",
    }
)
_PROFILE_POINTER = re.compile(r"/data/attributes/profiles/data/(\d+)(?:/|$)")

Sleep = Callable[[float], None]
Clock = Callable[[], float]


def profile(recipient: Recipient) -> dict[str, Any]:
    """One ``profile`` resource of an import job for ``recipient``."""
    attributes: dict[str, Any] = {"email": recipient.email}
    properties: dict[str, Any] = {}
    unset: list[str] = []
    for name, value in recipient.traits.items():
        if name == "email":
            continue  # the identifier, already set from the sync's identifiers
        if name == "phone_number" and value is not None:
            # E.164, as Klaviyo requires; a number without its country code goes as it is, for
            # Klaviyo to refuse (an import error, read as a rejection): guessing could name a stranger
            attributes[name] = normalize_e164(str(value)) or str(value)
        elif name in PROFILE_FIELDS:
            attributes[name] = None if value is None else str(value)
        elif value is None:
            unset.append(name)
        else:
            properties[name] = value
    if properties:
        attributes["properties"] = properties
    resource: dict[str, Any] = {"type": "profile", "attributes": attributes}
    if unset:
        resource["meta"] = {"patch_properties": {"unset": unset}}
    return resource


def import_envelope(list_id: str) -> tuple[bytes, bytes]:
    """The bytes before and after the comma-joined profiles of an import job document."""
    head = b'{"data":{"type":"profile-bulk-import-job","attributes":{"profiles":{"data":['
    lists = dumps({"lists": {"data": [{"type": "list", "id": list_id}]}})
    return head, b']}},"relationships":' + lists + b"}}"


def relationship_document(profile_ids: list[str]) -> bytes:
    """The body of ``POST|DELETE /api/lists/{id}/relationships/profiles``."""
    return dumps({"data": [{"type": "profile", "id": i} for i in profile_ids]})


def profile_index(pointer: object) -> int | None:
    """The profile an error's ``source.pointer`` names, by its index in the job document.

    >>> profile_index("/data/attributes/profiles/data/12/attributes/email")
    12
    >>> profile_index("/data/relationships/lists") is None
    True
    """
    match = _PROFILE_POINTER.match(str(pointer or ""))
    return int(match.group(1)) if match else None


def error_text(error: Mapping[str, Any]) -> str:
    """``title detail`` of one JSON:API error (or an import error's attributes).

    >>> error_text({"title": "Invalid input.", "detail": "Invalid email address"})
    'Invalid input. Invalid email address'
    """
    title = str(error.get("title") or error.get("code") or "error")
    detail = str(error.get("detail") or "")
    if not detail or detail == title:
        return title
    return f"{title} {detail}" if title.endswith(".") else f"{title}: {detail}"


def next_cursor(document: Mapping[str, Any]) -> str | None:
    """``page[cursor]`` of a collection's ``links.next``: the next page is asked for on
    the configured host, never by following a URL the response chose."""
    links = document.get("links")
    link = links.get("next") if isinstance(links, dict) else None
    if not link:
        return None
    values = parse_qs(urlsplit(str(link)).query).get("page[cursor]")
    return values[0] if values else None


def pages(http: HttpCore, path: str, params: dict[str, str]) -> Iterator[dict[str, Any]]:
    """Every resource of a cursor-paginated collection."""
    cursor: str | None = None
    while True:
        query = {**params, **({"page[cursor]": cursor} if cursor else {})}
        document = json_body(http.request("GET", path, params=query))
        for item in document.get("data") or []:
            if isinstance(item, dict):
                yield item
        cursor = next_cursor(document)
        if cursor is None:
            return


@dataclass(frozen=True)
class ImportJob:
    """A bulk import job as its last poll reported it."""

    id: str
    status: str  # queued | processing | complete | cancelled
    total_count: int = 0
    failed_count: int = 0


class ImportJobs:
    """Waits for import jobs: polls quickly at first (small jobs finish in a second or two),
    backing off to ``max_interval``; a job still running after ``timeout`` seconds ends
    the run's attempt (the upsert is idempotent: the next run imports the batch again)."""

    def __init__(
        self,
        http: HttpCore,
        *,
        timeout: float,
        sleep: Sleep = time.sleep,
        clock: Clock = time.monotonic,
        first_interval: float = 0.1,
        max_interval: float = 5.0,
    ) -> None:
        self.http = http
        self.timeout = timeout
        self._sleep = sleep
        self._clock = clock
        self.first_interval = first_interval
        self.max_interval = max_interval

    def wait(self, job_id: str) -> ImportJob:
        """The job once it is ``complete`` or ``cancelled``."""
        if not job_id:
            raise DeliveryError("Klaviyo accepted the import but returned no job id")
        deadline = self._clock() + self.timeout
        interval = self.first_interval
        while True:
            document = json_body(self.http.request("GET", f"{JOBS}/{job_id}"))
            data = document.get("data") if isinstance(document.get("data"), dict) else {}
            attributes = (data or {}).get("attributes") or {}
            status = str(attributes.get("status") or "")
            if status in ("complete", "cancelled"):
                return ImportJob(
                    job_id,
                    status,
                    int(attributes.get("total_count") or 0),
                    int(attributes.get("failed_count") or 0),
                )
            if self._clock() + interval > deadline:
                raise TransientDeliveryError(
                    f"Klaviyo import job {job_id} still {status or 'unknown'} after "
                    f"{self.timeout:.0f}s; the batch is imported again on the next run"
                )
            self._sleep(interval)
            interval = min(self.max_interval, interval * 2)

    def errors(self, job_id: str) -> list[dict[str, Any]]:
        """The ``attributes`` of every import error of a job (``code``, ``title``,
        ``detail``, ``source.pointer``, ``original_payload``)."""
        items = pages(self.http, f"{JOBS}/{job_id}/import-errors", {"page[size]": "100"})
        return [item.get("attributes") or {} for item in items]
