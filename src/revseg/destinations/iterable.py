"""The ``iterable`` destination: a static list, kept by subscribe / unsubscribe.

Per ``destinations/iterable.md``: ``add`` is ``POST /api/lists/subscribe`` (with the traits
as ``dataFields``), ``remove`` is ``POST /api/lists/unsubscribe`` with
``channelUnsubscribe: false`` (list membership only, never a global unsubscribe), and
``update`` is ``POST /api/users/bulkUpdate`` (the member is already on the list; only its
profile fields change). Authentication is the ``Api-Key`` header.

Iterable answers 200 even when records fail: ``failCount`` with the addresses in
``failedUpdates.*`` (or the deprecated top-level ``invalidEmails``), mapped back to their
records as rejections. No subscriber cap is published; a batch the API finds too large
(400 ``BatchTooLarge``) is halved and sent again. ``bulkUpdate`` is limited to 4 MB and
5 requests/second per project, kept by a token bucket shared by every destination of the
process that uses the same key.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
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
from revseg.destinations.http import EXTRA_SLEEP, Outcome, Verdict
from revseg.destinations.ratelimit import TokenBucket

log = logging.getLogger("revseg.destinations.iterable")

DEFAULT_BASE_URL = "https://api.iterable.com"
UNSUBSCRIBE = "/api/lists/unsubscribe"
#: no cap is published for subscribe/unsubscribe; Iterable's own bulk guidance is 1,000 users.
MAX_USERS = 1_000
MAX_BODY = 4_000_000  # bulkUpdate: "Max body 4 MB"; applied to every call, to be safe
BULK_UPDATE_PER_S = 5.0
#: ``dataFields`` keys that are identities in Iterable, not profile fields.
RESERVED_FIELDS = frozenset({"email", "userId"})
#: failedUpdates key -> the rejection reason for each address it lists.
FAILURES: dict[str, str] = {
    "invalidEmails": "Iterable rejected the email address as invalid",
    "notFoundEmails": "Iterable has no user with this email",
    "forgottenEmails": "the user was forgotten in Iterable (GDPR) and cannot be added",
    "conflictEmails": "Iterable found a conflicting user for this email",
    "invalidDataEmails": "Iterable rejected the user's data fields (a field's type cannot change)",
}

_limiters: dict[str, TokenBucket] = {}
_limiters_lock = threading.Lock()


def bulk_update_limiter(api_key: str) -> TokenBucket:
    """The process-wide 5/s bucket of one Iterable project (identified by its key's hash).

    Burst 1: requests are spaced evenly, so no one-second window ever sees more than five.
    """
    project = hashlib.sha256(api_key.encode()).hexdigest()
    with _limiters_lock:
        if project not in _limiters:
            _limiters[project] = TokenBucket(BULK_UPDATE_PER_S, burst=1.0)
        return _limiters[project]


class IterableOptions(EmailListOptions):
    """``options:`` of an iterable destination."""

    list_id: int
    base_url: str | None = DEFAULT_BASE_URL

    @field_validator("list_id", mode="before")
    @classmethod
    def _numeric(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().isdigit():
            return int(value.strip())
        if isinstance(value, bool) or (isinstance(value, int) and value <= 0):
            raise ValueError("list_id must be the static list's numeric id")
        return value

    @field_validator("base_url")
    @classmethod
    def _host_root(cls, value: str | None) -> str | None:
        """The doc's host is ``https://api.iterable.com``; the paths here start with /api."""
        return value.removesuffix("/api") if value else value


def data_fields(traits: Mapping[str, Any]) -> dict[str, Any]:
    """The segment's traits as profile fields (identity keys left out)."""
    return {k: v for k, v in traits.items() if k not in RESERVED_FIELDS}


class IterableDestination(HttpDestination):
    """Keeps an Iterable static list equal to (mirror) or a superset of (upsert) a segment."""

    capabilities: ClassVar[Capabilities] = email_capabilities(MAX_USERS)
    Options: ClassVar[type[DestinationOptions]] = IterableOptions

    def __init__(self, name: str, options: DestinationOptions, settings: DeliverySettings) -> None:
        if not isinstance(options, IterableOptions):
            raise TypeError(f"expected IterableOptions, got {type(options).__name__}")
        super().__init__(name, options, settings)
        self.iterable = options
        self._sleep: Callable[[float], None] = settings.extra.get(EXTRA_SLEEP) or time.sleep
        self._bulk = bulk_update_limiter(options.api_key.get_secret_value())

    def timeout(self) -> float:
        return self.iterable.timeout.total_seconds()

    def headers(self) -> dict[str, str]:
        return {"Api-Key": self.iterable.api_key.get_secret_value()}

    def send(self, batch: Batch) -> BatchResult:
        members, rejected = recipients(batch.operations, "Iterable")
        list_id = self.iterable.list_id
        adds = [m for m in members if m.op == "add"]
        updates = [m for m in members if m.op == "update"]
        removes = [m for m in members if m.op == "remove"]
        rejected.update(
            self._post(
                "/api/lists/subscribe",
                {"listId": list_id},
                "subscribers",
                adds,
                lambda m: {"email": m.email, "dataFields": data_fields(m.traits)},
            )
        )
        rejected.update(
            self._post(
                "/api/users/bulkUpdate",
                {"createNewFields": True},
                "users",
                updates,
                lambda m: {"email": m.email, "dataFields": data_fields(m.traits)},
            )
        )
        rejected.update(
            self._post(
                UNSUBSCRIBE,
                {"listId": list_id, "channelUnsubscribe": False},
                "subscribers",
                removes,
                lambda m: {"email": m.email},
            )
        )
        return BatchResult(rejected)

    def _post(
        self,
        path: str,
        envelope: dict[str, Any],
        key: str,
        members: list[Recipient],
        item: Callable[[Recipient], dict[str, Any]],
    ) -> dict[str, str]:
        rejected: dict[str, str] = {}
        encoded = {id(m): dumps(item(m)) for m in members}
        overhead = len(dumps({**envelope, key: []}))
        for chunk in chunks(
            members,
            lambda m: encoded[id(m)],
            max_items=MAX_USERS,
            max_bytes=MAX_BODY,
            overhead=overhead,
        ):
            rejected.update(self._post_chunk(path, envelope, key, chunk, encoded))
        return rejected

    def _post_chunk(
        self,
        path: str,
        envelope: dict[str, Any],
        key: str,
        chunk: list[Recipient],
        encoded: dict[int, bytes],
    ) -> dict[str, str]:
        """One call; a ``BatchTooLarge`` refusal is halved until it fits."""
        head = dumps(envelope)[:-1] + b',"' + key.encode() + b'":['
        body = head + b",".join(encoded[id(m)] for m in chunk) + b"]}"
        if path == "/api/users/bulkUpdate":
            wait = self._bulk.reserve()
            if wait > 0:
                self._sleep(wait)
        response = self.http.request(
            "POST", path, content=body, headers={"content-type": "application/json"}
        )
        document = json_body(response)
        if response.status_code == 400:  # BatchTooLarge: the classifier handed it back
            if len(chunk) == 1:
                return reject(
                    chunk[0], f"Iterable refused the record as too large: {document.get('msg', '')}"
                )
            half = len(chunk) // 2
            log.info("%s %s: BatchTooLarge for %d users; halving", self.name, path, len(chunk))
            return {
                **self._post_chunk(path, envelope, key, chunk[:half], encoded),
                **self._post_chunk(path, envelope, key, chunk[half:], encoded),
            }
        return self._failures(path, document, chunk)

    def _failures(
        self, path: str, document: Mapping[str, Any], chunk: list[Recipient]
    ) -> dict[str, str]:
        """Map ``failCount`` / ``failedUpdates`` of a 200 back to the chunk's records."""
        fail_count = document.get("failCount") or 0
        if not isinstance(fail_count, int) or fail_count <= 0:
            return {}
        by_key = {m.key: m for m in chunk}
        failed = (
            document.get("failedUpdates") if isinstance(document.get("failedUpdates"), dict) else {}
        )
        lists: dict[str, Any] = dict(failed or {})
        if not lists.get("invalidEmails") and document.get("invalidEmails"):
            lists["invalidEmails"] = document["invalidEmails"]  # deprecated top-level form
        rejected: dict[str, str] = {}
        placed: set[str] = set()
        for field, reason in FAILURES.items():
            for email in lists.get(field) or []:
                member = by_key.get(str(email).strip().lower())
                if member is None or member.key in placed:
                    continue
                placed.add(member.key)
                if path == UNSUBSCRIBE and field == "notFoundEmails":
                    continue  # no such user, so not on the list: the removal holds
                rejected.update(reject(member, f"{reason} (failedUpdates.{field})"))
        if len(placed) < fail_count:
            log.warning(
                "%s %s: failCount %d, but only %d failure(s) name an address of the "
                "request; the rest cannot be reported per record",
                self.name,
                path,
                fail_count,
                len(placed),
            )
        return rejected

    def classify_response(self, response: httpx.Response) -> Verdict | None:
        if response.status_code == 400 and json_body(response).get("code") == "BatchTooLarge":
            return Verdict(Outcome.OK)
        return None
