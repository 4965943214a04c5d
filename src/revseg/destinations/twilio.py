"""The ``twilio`` destination: one SMS per entity, in trigger mode, through Programmable Messaging.

Per ``destinations/twilio.md``: every operation is one ``POST
/Accounts/{AccountSid}/Messages.json``, form-encoded (``To`` in E.164, ``Body`` = the rendered
template, ``MessagingServiceSid`` or ``From``, optional ``StatusCallback``), with HTTP basic
auth ``AccountSid:AuthToken``. Twilio answers ``201`` with the message resource.

Message create has no idempotency key, so sends go through the core's non-idempotent
request: a send is retried only when it provably never reached Twilio (a connect error, a
429); a timeout, a 5xx or a connection dropped after the request went out raises
:class:`~revseg.destinations.http.PossiblyDeliveredError` and the message is never resent.
Such a message counts as sent (the runner recorded it as triggered before sending), and the
sync stops sending for this run: Twilio is misbehaving, and every further send would risk
another message in limbo. Messages not yet attempted come back as rejections ("not sent"),
which later runs retry.

A synchronous Twilio error about one message (``21610`` unsubscribed, ``21211``/``21614``
invalid number, ...) is a rejection of that record, its code in the reason; reasons never
carry the phone number. Authentication and account errors (401, 403, 404) fail the batch,
unless a message of the batch already went out: then the batch cannot fail as a whole
(the runner would send the delivered messages again), and the unsent rest is rejected.
"""

from __future__ import annotations

import base64
import logging
import re
from dataclasses import replace
from datetime import timedelta
from enum import Enum
from typing import Any, ClassVar
from urllib.parse import urlencode

import httpx
from pydantic import Field, SecretStr, field_validator, model_validator

from revseg.destinations.api import HttpDestination
from revseg.destinations.base import (
    Batch,
    BatchResult,
    Capabilities,
    DeliverySettings,
    DestinationOptions,
    Operation,
)
from revseg.destinations.email_lists import json_body
from revseg.destinations.http import Outcome, PossiblyDeliveredError, Verdict
from revseg.destinations.options import Timeout
from revseg.errors import DeliveryError

log = logging.getLogger("revseg.destinations.twilio")

API_VERSION = "/2010-04-01"
DEFAULT_BASE_URL = f"https://api.twilio.com{API_VERSION}"
MAX_BODY = 1_600  # characters; longer bodies get error 21617
#: Messages per second when the destination sets no ``rate_limit``. Twilio queues messages
#: sent faster than a sender's throughput (1 MPS per US long code, more for toll-free,
#: short codes and pooled Messaging Services) for up to ``ValidityPeriod``, and answers 429
#: past the account's API concurrency; 10/s stays clear of both for a sequential sender.
DEFAULT_RATE_PER_S = 10.0
#: The unit of at-most-once bookkeeping: a crash can lose the unsent rest of one batch.
MAX_BATCH = 20
FORM = "application/x-www-form-urlencoded"

#: Twilio error codes that concern one message: the record is rejected with this meaning.
RECORD_ERRORS: dict[int, str] = {
    21211: "invalid 'To' phone number",
    21408: "no permission to send to this region (geo permissions)",
    21606: "the 'From' number cannot send SMS to this recipient",
    21608: "trial account: the recipient's number is not verified",
    21610: "the recipient unsubscribed (replied STOP) from this sender",
    21612: "the recipient cannot be reached from this sender",
    21614: "the 'To' number is not a valid mobile number",
    21617: "the message body exceeds 1,600 characters",
}
_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
_SEPARATORS = re.compile(r"[\s().\-/]")
_PHONE_LIKE = re.compile(r"\+?\d[\d\s().-]{5,}\d")


class Sent(Enum):
    """What became of one message."""

    ACCEPTED = "accepted"  # 201: Twilio queued it
    POSSIBLY = "possibly"  # it may have reached Twilio: counted as sent, never resent
    REJECTED = "rejected"  # Twilio refused this message (an error code about it)
    FAILED = "failed"  # it never reached Twilio; the sync halts for this run


class TwilioOptions(DestinationOptions):
    """``options:`` of a twilio destination; exactly one of ``messaging_service_sid``/``from``."""

    account_sid: str
    auth_token: SecretStr
    messaging_service_sid: str | None = None
    from_: str | None = Field(default=None, alias="from")
    base_url: str = DEFAULT_BASE_URL
    status_callback: str | None = None
    timeout: Timeout = timedelta(seconds=30)

    @field_validator("account_sid")
    @classmethod
    def _account(cls, value: str) -> str:
        if not _SID.fullmatch(value.strip()):
            raise ValueError("account_sid must be 'AC' followed by 32 hex digits")
        return value.strip()

    @field_validator("messaging_service_sid")
    @classmethod
    def _service(cls, value: str | None) -> str | None:
        if value is not None and not _SERVICE_SID.fullmatch(value.strip()):
            raise ValueError("messaging_service_sid must be 'MG' followed by 32 hex digits")
        return None if value is None else value.strip()

    @field_validator("from_")
    @classmethod
    def _sender(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("from must be a Twilio number (E.164), short code or sender ID")
        return None if value is None else value.strip()

    @field_validator("base_url", "status_callback")
    @classmethod
    def _absolute_http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            url: httpx.URL | None = httpx.URL(value)
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise ValueError("must be an absolute http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("base_url")
    @classmethod
    def _versioned(cls, value: str) -> str:
        """The doc's URLs are ``https://api.twilio.com/2010-04-01/Accounts/...``: a root given
        as the bare host gets the API version the paths here are relative to."""
        return value if value.endswith(API_VERSION) else f"{value}{API_VERSION}"

    @field_validator("auth_token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("auth_token must not be empty")
        return value

    @model_validator(mode="after")
    def _one_sender(self) -> TwilioOptions:
        if (self.messaging_service_sid is None) == (self.from_ is None):
            raise ValueError("set exactly one of messaging_service_sid or from")
        return self


def e164(raw: str | None) -> str | None:
    """``+`` and 8-15 digits, formatting removed; a number without its country code gives None.

    A national number (``(415) 555-2671``) is refused rather than guessed at: prefixing a
    country code could text a stranger. ``00`` is read as the international prefix.

    >>> e164(" +1 (415) 555-2671 ")
    '+14155552671'
    >>> e164("0044 20 7946 0958")
    '+442079460958'
    >>> e164("415-555-2671") is None
    True
    """
    if raw is None:
        return None
    text = _SEPARATORS.sub("", raw.strip())
    if text.startswith("00"):
        text = "+" + text[2:]
    if not re.fullmatch(r"\+[1-9]\d{7,14}", text):
        return None
    return text


def mask_phones(text: str) -> str:
    """``text`` with anything that looks like a phone number replaced (Twilio echoes ``To``)."""
    return _PHONE_LIKE.sub("<phone>", text)


class TwilioDestination(HttpDestination):
    """Sends one SMS per triggered entity, at most once."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        modes=frozenset({"trigger"}),
        max_batch_size=MAX_BATCH,
        identifier_kinds=frozenset({"phone"}),
        hashed_identifiers=frozenset(),
        requires_identifier=True,
        supports_update=False,
    )
    Options: ClassVar[type[DestinationOptions]] = TwilioOptions

    def __init__(self, name: str, options: DestinationOptions, settings: DeliverySettings) -> None:
        if not isinstance(options, TwilioOptions):
            raise TypeError(f"expected TwilioOptions, got {type(options).__name__}")
        if settings.rate_limit_per_s is None:
            settings = replace(settings, rate_limit_per_s=DEFAULT_RATE_PER_S)
        super().__init__(name, options, settings)
        self.twilio = options
        #: why this sync stopped sending for the run (set by the first batch-level failure)
        self.halted: str | None = None

    # -- HttpDestination hooks ---------------------------------------------------------
    def timeout(self) -> float:
        return self.twilio.timeout.total_seconds()

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Basic {self._credentials()}", "Accept": "application/json"}

    def secret_values(self) -> list[str]:
        return [*super().secret_values(), self._credentials()]

    def _credentials(self) -> str:
        pair = f"{self.twilio.account_sid}:{self.twilio.auth_token.get_secret_value()}"
        return base64.b64encode(pair.encode()).decode()

    def classify_response(self, response: httpx.Response) -> Verdict | None:
        """A 400 carrying a Twilio error code is about one message: hand it back."""
        if response.status_code == 400 and isinstance(json_body(response).get("code"), int):
            return Verdict(Outcome.OK)
        return None

    # -- sending ---------------------------------------------------------------------
    def send(self, batch: Batch) -> BatchResult:
        rejected: dict[str, str] = {}
        unsent: set[str] = set()  # not attempted, or refused before reaching Twilio
        for op in batch.operations:
            if self.halted is not None:
                rejected[op.id] = f"not sent: {self.halted}"
                unsent.add(op.id)
                continue
            problem = self._check(op)
            if problem is not None:
                rejected[op.id] = problem
                continue
            status, reason = self._send_one(op)
            if status in (Sent.REJECTED, Sent.FAILED):
                rejected[op.id] = reason
            if status is Sent.FAILED:
                unsent.add(op.id)
        if self.halted is not None and len(unsent) == len(batch.operations):
            raise DeliveryError(self.halted)  # nothing of the batch reached Twilio: it failed whole
        return BatchResult(rejected)

    def _check(self, op: Operation) -> str | None:
        """Why ``op`` cannot be sent at all, or None."""
        if op.op != "trigger":
            return f"twilio sends trigger messages only, not '{op.op}' operations"
        if not op.identifiers.get("phone", "").strip():
            return "no phone number: map one in the sync's identifiers (phone: <trait>)"
        if e164(op.identifiers["phone"]) is None:
            return "the phone number is not in E.164 form ('+', country code, number)"
        body = op.message or ""
        if not body.strip():
            return "the rendered message is empty"
        if len(body) > MAX_BODY:
            return (
                f"the message has {len(body)} characters; Twilio accepts at most {MAX_BODY} (21617)"
            )
        return None

    def _form(self, op: Operation) -> dict[str, str]:
        form = {"To": e164(op.identifiers["phone"]) or "", "Body": op.message or ""}
        if self.twilio.messaging_service_sid is not None:
            form["MessagingServiceSid"] = self.twilio.messaging_service_sid
        else:
            form["From"] = self.twilio.from_ or ""
        if self.twilio.status_callback is not None:
            form["StatusCallback"] = self.twilio.status_callback
        return form

    def _send_one(self, op: Operation) -> tuple[Sent, str]:
        """Send one message; its outcome and, unless it was accepted, why."""
        path = f"/Accounts/{self.twilio.account_sid}/Messages.json"
        content = urlencode(self._form(op)).encode()
        try:
            response = self.http.request(
                "POST", path, content=content, headers={"content-type": FORM}, idempotent=False
            )
        except PossiblyDeliveredError as exc:
            reason = mask_phones(str(exc))
            self.halted = (
                f"the answer to the message for '{op.id}' was lost ({reason}); that message is "
                "not resent, and this sync sends no more messages in this run"
            )
            log.warning("%s: %s", self.name, self.halted)
            return Sent.POSSIBLY, reason
        except DeliveryError as exc:  # never reached Twilio: terminal, or retries exhausted
            self.halted = mask_phones(str(exc))
            return Sent.FAILED, f"not sent: {self.halted}"
        if response.status_code == 400:
            return Sent.REJECTED, self._rejection(json_body(response))
        return Sent.ACCEPTED, ""

    def _rejection(self, error: dict[str, Any]) -> str:
        code = error.get("code")
        meaning = RECORD_ERRORS.get(code) if isinstance(code, int) else None
        text = meaning or mask_phones(str(error.get("message") or "rejected"))
        more = error.get("more_info") or f"https://www.twilio.com/docs/errors/{code}"
        return f"Twilio error {code}: {text} ({more})"
