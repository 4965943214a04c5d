"""Twilio's wire shapes for the emulator: error codes and messages, the message resource.

Codes the brief (``destinations/twilio.md``) does not list (21602-21604, 21609, 21701,
20001) follow Twilio's error dictionary as best known.
"""

from __future__ import annotations

import email.utils
import math
import re
import secrets
from datetime import UTC, datetime
from typing import Any

API = "/2010-04-01"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "f00dfeed" * 4
SERVICE_SID = "MG" + "fedcba9876543210" * 2
NUMBERS = ("+15005550006",)
E164 = re.compile(r"\+[1-9]\d{7,14}")
MAX_BODY = 1_600
#: Twilio's message for each error code (``{to}`` / ``{value}`` filled in per request).
MESSAGES: dict[int, str] = {
    20001: "Invalid parameter {value}",
    20003: "Authenticate",
    20404: "The requested resource {value} was not found",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    20503: "Service Unavailable",
    21211: "The 'To' number {to} is not a valid phone number.",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}.",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21606: "The From phone number {value} is not a valid, SMS-capable inbound phone number or short code for your account.",
    21608: "The number {to} is unverified. Trial accounts cannot send messages to unverified numbers.",
    21609: "Invalid StatusCallback url",
    21610: "Attempt to send to unsubscribed recipient",
    21612: "The 'To' phone number: {to}, is not currently reachable using the 'From' phone number via SMS.",
    21614: "'To' number {to} is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    21619: "A text message body or media urls must be specified.",
    21701: "The Messaging Service Sid {value} is invalid.",
}
_GSM = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = set("^{}\\[~]|€\f")


class TwilioError(Exception):
    def __init__(self, status: int, code: int, **fill: str) -> None:
        super().__init__(MESSAGES.get(code, "Error").format_map({"to": "", "value": "", **fill}))
        self.status, self.code = status, code


def error_body(status: int, code: int, message: str) -> dict[str, Any]:
    """Twilio's error document."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def segments(body: str) -> int:
    """SMS segments of ``body``: 160 GSM-7 characters (153 when split), else 70 UCS-2 (67)."""
    if all(ch in _GSM or ch in _GSM_EXTENDED for ch in body):
        units = sum(2 if ch in _GSM_EXTENDED else 1 for ch in body)
        return 1 if units <= 160 else math.ceil(units / 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)


def rfc2822(moment: datetime) -> str:
    return email.utils.format_datetime(moment)


def message_resource(account_sid: str, form: dict[str, Any]) -> dict[str, Any]:
    """The ``201`` answer to a validated form: ``api.v2010.account.message``, as created."""
    sid = "SM" + secrets.token_hex(16)
    now = rfc2822(datetime.now(UTC))
    base = f"{API}/Accounts/{account_sid}/Messages/{sid}"
    service = form.get("MessagingServiceSid") or None
    body = str(form.get("Body") or "")
    return {
        "sid": sid,
        "account_sid": account_sid,
        "messaging_service_sid": service,
        "api_version": "2010-04-01",
        "to": form["To"],
        "from": form.get("From") or None,
        "body": body,
        # with a Messaging Service and no From, the sender is chosen later: "accepted"
        "status": "accepted" if service and not form.get("From") else "queued",
        "direction": "outbound-api",
        "num_segments": str(segments(body)) if body else "0",
        "num_media": str(len(form.get("MediaUrl") or [])),
        "price": None,
        "price_unit": None,
        "error_code": None,
        "error_message": None,
        "date_created": now,
        "date_updated": now,
        "date_sent": None,
        "uri": f"{base}.json",
        "subresource_uris": {"media": f"{base}/Media.json"},
    }
