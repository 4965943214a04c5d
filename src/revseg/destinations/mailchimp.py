"""The ``mailchimp`` destination: an audience (list) kept by batch subscribe / unsubscribe.

Per ``destinations/mailchimp.md``: every batch is ``POST /3.0/lists/{list_id}`` with at most
500 ``members`` and ``update_existing: true`` (an idempotent upsert of status and fields, so a
re-sent batch after a crash is harmless). ``add`` and ``update`` send ``status: subscribed``
with the mapped merge fields; ``remove`` sends ``status: unsubscribed``, which the doc names
as membership removal in the reverse-ETL sense: the contact, its history and its consent
record stay in the audience, only its subscription ends (archiving would drop the history).

Authentication is HTTP Basic with the API key as password; the API host comes from the
key's data-center suffix (``…-us21`` -> ``https://us21.api.mailchimp.com/3.0``) unless
``base_url`` is given. Mailchimp limits *simultaneous connections* (10 per account; the
11th gets 429) rather than a request rate, so every request of the process to one account
holds one of ``max_connections`` slots (default 4, at most 10) until its body is read.
Per-member failures come back inside the 200 as ``errors`` and become rejections.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, ClassVar

import httpx
from pydantic import Field, field_validator, model_validator

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
from revseg.destinations.http import EXTRA_TRANSPORT, HttpCore, Outcome, Verdict
from revseg.destinations.options import Timeout

log = logging.getLogger("revseg.destinations.mailchimp")

MAX_MEMBERS = 500
MAX_CONNECTIONS = 10
#: Mailchimp's default audience fields, used when ``merge_fields`` is not given.
DEFAULT_MERGE_FIELDS = {"first_name": "FNAME", "last_name": "LNAME"}


def datacenter(api_key: str) -> str | None:
    """``us21`` from ``…-us21``; None when the key carries no data-center suffix.

    >>> datacenter("0123abcd-us21")
    'us21'
    """
    _, dash, dc = api_key.strip().rpartition("-")
    return dc if dash and dc.isalnum() and dc else None


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: MD5 of the lowercase address, hex."""
    return hashlib.md5(email.lower().encode(), usedforsecurity=False).hexdigest()


class MailchimpOptions(EmailListOptions):
    """``options:`` of a mailchimp destination."""

    list_id: str
    #: segment trait -> audience merge tag (``FNAME``); default: first_name/last_name.
    merge_fields: dict[str, str] | None = None
    #: simultaneous requests this process makes to the account (Mailchimp allows 10).
    max_connections: int = Field(default=4, ge=1, le=MAX_CONNECTIONS)
    timeout: Timeout = timedelta(seconds=120)  # Mailchimp itself gives up after 120 s

    @field_validator("list_id")
    @classmethod
    def _list_id(cls, value: str) -> str:
        value = value.strip()
        if not value.isalnum():
            raise ValueError(
                "list_id must be the audience id (letters and digits, e.g. a1b2c3d4e5)"
            )
        return value

    @field_validator("merge_fields")
    @classmethod
    def _tags(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for tag in (value or {}).values():
            if not tag or not tag.replace("_", "").isalnum() or tag.upper() != tag or len(tag) > 10:
                raise ValueError(f"merge tag {tag!r} must be upper case letters/digits, at most 10")
        return value

    @model_validator(mode="after")
    def _host(self) -> MailchimpOptions:
        if self.base_url is None and datacenter(self.api_key.get_secret_value()) is None:
            raise ValueError(
                "api_key must end with its data-center suffix (e.g. -us21), "
                "or set base_url to https://<dc>.api.mailchimp.com/3.0"
            )
        return self

    def api_root(self) -> str:
        if self.base_url:
            return self.base_url
        return f"https://{datacenter(self.api_key.get_secret_value())}.api.mailchimp.com/3.0"


_slots: dict[str, threading.BoundedSemaphore] = {}
_slots_lock = threading.Lock()


def connection_slots(api_key: str, size: int) -> threading.BoundedSemaphore:
    """The process-wide connection slots of one Mailchimp account (keyed by its key's hash).

    The first destination of an account sizes them; Mailchimp counts per account, so two
    destinations of one account must share the budget rather than have one each.
    """
    account = hashlib.sha256(api_key.encode()).hexdigest()
    with _slots_lock:
        if account not in _slots:
            _slots[account] = threading.BoundedSemaphore(size)
        return _slots[account]


class ConnectionLimit(httpx.BaseTransport):
    """A transport that holds a slot for each request until its body is fully read."""

    def __init__(self, inner: httpx.BaseTransport, slots: threading.BoundedSemaphore) -> None:
        self.inner = inner
        self.slots = slots

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self.slots:
            response = self.inner.handle_request(request)
            try:
                content = response.read()
            finally:
                response.close()
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=content,
            extensions=response.extensions,
        )

    def close(self) -> None:
        self.inner.close()


class MailchimpDestination(HttpDestination):
    """Keeps a Mailchimp audience's subscribed members equal to (mirror) a segment."""

    capabilities: ClassVar[Capabilities] = email_capabilities(MAX_MEMBERS)
    Options: ClassVar[type[DestinationOptions]] = MailchimpOptions

    def __init__(self, name: str, options: DestinationOptions, settings: DeliverySettings) -> None:
        if not isinstance(options, MailchimpOptions):
            raise TypeError(f"expected MailchimpOptions, got {type(options).__name__}")
        super().__init__(name, options, settings)
        self.mailchimp = options

    def make_http(self) -> HttpCore:
        key = self.mailchimp.api_key.get_secret_value()
        inner = self.settings.extra.get(EXTRA_TRANSPORT) or httpx.HTTPTransport()
        transport = ConnectionLimit(inner, connection_slots(key, self.mailchimp.max_connections))
        settings = DeliverySettings(
            batch_size=self.settings.batch_size,
            rate_limit_per_s=self.settings.rate_limit_per_s,
            max_retries=self.settings.max_retries,
            extra={**self.settings.extra, EXTRA_TRANSPORT: transport},
        )
        return HttpCore.from_settings(
            settings,
            name=self.name,
            base_url=self.base_url(),
            timeout=self.timeout(),
            headers=self.headers(),
            secrets=self.secret_values(),
            classify=self.classify_response,
        )

    def base_url(self) -> str:
        return self.mailchimp.api_root()

    def timeout(self) -> float:
        return self.mailchimp.timeout.total_seconds()

    def _basic(self) -> str:
        key = self.mailchimp.api_key.get_secret_value()
        return base64.b64encode(f"revseg:{key}".encode()).decode("ascii")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Basic {self._basic()}"}

    def secret_values(self) -> list[str]:
        return [*super().secret_values(), self._basic()]

    def member(self, recipient: Recipient) -> dict[str, Any]:
        """One entry of ``members``: the address, its status and (for members) merge fields."""
        if recipient.op == "remove":
            return {"email_address": recipient.email, "status": "unsubscribed"}
        entry: dict[str, Any] = {"email_address": recipient.email, "status": "subscribed"}
        fields = merge_values(recipient.traits, self.mailchimp.merge_fields)
        if fields:
            entry["merge_fields"] = fields
        return entry

    def send(self, batch: Batch) -> BatchResult:
        members, rejected = recipients(batch.operations, "Mailchimp")
        encoded = {id(m): dumps(self.member(m)) for m in members}
        for chunk in chunks(
            members, lambda m: encoded[id(m)], max_items=MAX_MEMBERS, max_bytes=10_000_000
        ):
            body = (
                b'{"members":['
                + b",".join(encoded[id(m)] for m in chunk)
                + b'],"update_existing":true}'
            )
            response = self.http.request(
                "POST",
                f"lists/{self.mailchimp.list_id}",
                content=body,
                headers={"content-type": "application/json"},
            )
            rejected.update(self._errors(json_body(response), chunk))
        return BatchResult(rejected)

    def _errors(self, document: Mapping[str, Any], chunk: list[Recipient]) -> dict[str, str]:
        """``errors[]`` of a 200, mapped to the records of their ``email_address``."""
        by_key = {m.key: m for m in chunk}
        rejected: dict[str, str] = {}
        unplaced = 0
        for error in document.get("errors") or []:
            if not isinstance(error, dict):
                continue
            member = by_key.get(str(error.get("email_address", "")).strip().lower())
            if member is None:
                unplaced += 1
                continue
            code = error.get("error_code")
            text = str(error.get("error") or error.get("field_message") or "rejected by Mailchimp")
            rejected.update(reject(member, f"{text} ({code})" if code else text))
        if unplaced:
            log.warning(
                "%s: %d Mailchimp error(s) name no address of the request; they cannot "
                "be reported per record",
                self.name,
                unplaced,
            )
        return rejected

    def classify_response(self, response: httpx.Response) -> Verdict | None:
        # "At very high volume throttling can also appear as a bare 403": a 403 without
        # Mailchimp's problem document is treated as the throttle it is, not as a refusal.
        if response.status_code == 403 and "title" not in json_body(response):
            return Verdict(
                Outcome.TRANSIENT, "HTTP 403 without a problem body (Mailchimp throttling)"
            )
        return None


def merge_values(traits: Mapping[str, Any], mapping: Mapping[str, str] | None) -> dict[str, Any]:
    """Merge fields from traits; NULL becomes ``""``, which clears the field in Mailchimp."""
    if mapping is None:
        mapping = {t: tag for t, tag in DEFAULT_MERGE_FIELDS.items() if t in traits}
    return {
        tag: ("" if traits.get(trait) is None else traits[trait])
        for trait, tag in mapping.items()
        if trait in traits
    }
