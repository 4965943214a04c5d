"""The webhook destination (SPEC 3.1): each batch is one signed POST of a JSON document.

Signing follows Standard Webhooks: ``webhook-id`` is ``{run_id}_{seq}`` and stays the same
on every retry of a batch (the receiver's idempotency key), ``webhook-timestamp`` is the
time of each attempt, and ``webhook-signature`` is ``v1,`` + base64 HMAC-SHA256 of
``"{id}.{timestamp}.{body}"`` keyed with the base64-decoded ``whsec_`` secret. The body is
encoded once per batch, so every attempt signs and sends exactly the same bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, ClassVar

import httpx
from pydantic import BeforeValidator, SecretStr, field_validator

from revseg.destinations.api import HttpDestination
from revseg.destinations.base import (
    Batch,
    BatchResult,
    Capabilities,
    DeliverySettings,
    DestinationOptions,
)
from revseg.destinations.encoding import dumps, format_instant, operation_fields
from revseg.durations import parse_duration
from revseg.errors import DeliveryError

EVENT_TYPE = "segment.membership.changed"
SECRET_PREFIX = "whsec_"
_SECRET_FORM = "secret must be 'whsec_' followed by a base64 key (the Standard Webhooks form)"


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ValueError (never echoing it) otherwise."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(_SECRET_FORM)
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(_SECRET_FORM) from None
    if not key:
        raise ValueError(_SECRET_FORM)
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one attempt."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def message_id(batch: Batch) -> str:
    """``{run_id}_{seq}``: stable across retries of the batch, unique within the run."""
    msg_id = f"{batch.run_id}_{batch.seq}"
    if "." in msg_id:  # Standard Webhooks: the id is part of the dot-separated signed content
        raise DeliveryError(f"webhook-id {msg_id!r} must not contain '.'")
    return msg_id


def encode_batch(batch: Batch) -> bytes:
    """The exact minified body of SPEC 3.1."""
    return dumps(
        {
            "type": EVENT_TYPE,
            "sync": batch.sync,
            "segment": batch.segment,
            "run_id": batch.run_id,
            "batch": batch.number,
            "as_of": format_instant(batch.as_of),
            "operations": [operation_fields(op) for op in batch.operations],
        }
    )


class WebhookOptions(DestinationOptions):
    """``options:`` of a webhook destination."""

    url: str
    secret: SecretStr | None = None
    timeout: Annotated[timedelta, BeforeValidator(parse_duration)] = timedelta(seconds=30)

    @field_validator("url")
    @classmethod
    def _absolute_http_url(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise ValueError("url must be an absolute http:// or https:// URL")
        return value

    @field_validator("secret")
    @classmethod
    def _standard_webhooks_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            decode_secret(value.get_secret_value())
        return value

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("timeout must be at least 1s")
        return value


class WebhookDestination(HttpDestination):
    """POSTs each batch to ``options.url``; a 2xx acknowledges the whole batch."""

    capabilities: ClassVar[Capabilities] = Capabilities(max_batch_size=10_000)
    Options: ClassVar[type[DestinationOptions]] = WebhookOptions

    def __init__(self, name: str, options: DestinationOptions, settings: DeliverySettings) -> None:
        if not isinstance(options, WebhookOptions):
            raise TypeError(f"expected WebhookOptions, got {type(options).__name__}")
        super().__init__(name, options, settings)
        self.webhook_options = options
        secret = options.secret
        self._key = decode_secret(secret.get_secret_value()) if secret is not None else None
        #: the clock of ``webhook-timestamp``; tests may inject one through settings.extra.
        self.clock: Callable[[], float] = settings.extra.get("clock", time.time)

    def timeout(self) -> float:
        return self.webhook_options.timeout.total_seconds()

    def send(self, batch: Batch) -> BatchResult:
        body = encode_batch(batch)
        msg_id = message_id(batch)

        def stamp(request: httpx.Request, attempt: int) -> None:
            timestamp = int(self.clock())
            request.headers["webhook-timestamp"] = str(timestamp)
            if self._key is not None:
                request.headers["webhook-signature"] = sign(self._key, msg_id, timestamp, body)

        headers = {"content-type": "application/json", "webhook-id": msg_id}
        self.http.request(
            "POST", self.webhook_options.url, content=body, headers=headers, prepare=stamp
        )
        return BatchResult()
