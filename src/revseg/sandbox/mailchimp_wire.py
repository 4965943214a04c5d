"""Mailchimp's wire shapes for :mod:`revseg.sandbox.mailchimp_emulator`: problem documents,
per-member errors, and the request checks Mailchimp words as ``Schema describes X, Y found
instead`` (Mailchimp publishes no machine-readable schema for batch subscribe, so the rules
here are the ones ``destinations/mailchimp.md`` states)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from revseg.sandbox.emulator import Reply

STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
MAX_MEMBERS = 500
TITLES = {
    400: "Invalid Resource",
    401: "API Key Invalid",
    403: "Forbidden",
    404: "Resource Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Problem(Exception):
    def __init__(
        self,
        status: int,
        detail: str,
        errors: list[dict[str, str]] | None = None,
        title: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.errors, self.title = status, errors, title


def problem(
    status: int, detail: str, errors: list[dict[str, str]] | None = None, title: str | None = None
) -> Reply:
    instance = str(uuid.uuid4())
    body: dict[str, Any] = {
        "type": "https://mailchimp.com/developer/marketing/docs/errors/",
        "title": title or TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if errors:
        body["errors"] = errors
    payload = json.dumps(body).encode()
    return status, {"content-type": "application/problem+json", "x-request-id": instance}, payload


def member_error(email: str, error: str, code: str) -> dict[str, Any]:
    return {
        "email_address": email,
        "error": error,
        "error_code": code,
        "field": "email_address",
        "field_message": error,
    }


def check_body(body: Any) -> list[dict[str, str]]:
    """Schema problems as Mailchimp words them: ``Schema describes X, Y found instead``."""

    def wrong(field: str, wants: str, value: Any) -> dict[str, str]:
        found = {
            dict: "object",
            list: "array",
            str: "string",
            bool: "boolean",
            int: "integer",
            float: "number",
            type(None): "null",
        }.get(type(value), "value")
        return {"field": field, "message": f"Schema describes {wants}, {found} found instead"}

    if not isinstance(body, dict):
        return [wrong("", "object", body)]
    members = body.get("members")
    if members is None:
        return [{"field": "members", "message": "This value should not be blank."}]
    if not isinstance(members, list):
        return [wrong("members", "array", members)]
    problems: list[dict[str, str]] = []
    if len(members) > MAX_MEMBERS:
        problems.append(
            {"field": "members", "message": f"Array must have at most {MAX_MEMBERS} items"}
        )
    for flag in ("update_existing", "sync_tags"):
        if flag in body and not isinstance(body[flag], bool):
            problems.append(wrong(flag, "boolean", body[flag]))
    for i, entry in enumerate(members):
        where = f"members.item:{i}"
        if not isinstance(entry, dict):
            problems.append(wrong(where, "object", entry))
            continue
        if not isinstance(entry.get("email_address"), str):
            problems.append(wrong(f"{where}.email_address", "string", entry.get("email_address")))
        if entry.get("status") not in STATUSES:
            problems.append(
                {
                    "field": f"{where}.status",
                    "message": f"Value is not one of enum values: {', '.join(STATUSES)}",
                }
            )
        for name in ("merge_fields", "interests", "location"):
            if name in entry and not isinstance(entry[name], dict):
                problems.append(wrong(f"{where}.{name}", "object", entry[name]))
    return problems
