"""What the email-list destinations (Iterable, Mailchimp, SendGrid) share.

These APIs key a list member by its email address, taken raw (never hashed), so a batch is
first turned into :class:`Recipient` s: one per address, whatever number of records carry
it. Two customers sharing an address would otherwise make one request subscribe and
unsubscribe the same person; the member wins (an add or update beats a remove), and every
record of the address gets the outcome of that one request.

A record without an email cannot be put on a list. The runner already skips members whose
identifier traits are empty; what reaches a destination without a usable address (only
whitespace, or a remove whose add recorded no email) comes back as a rejection with a clear
reason, never silently dropped (SPEC 3). Reasons never echo the address itself: they land
in the state tables and in ``--json``, where PII does not belong (:func:`mask`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from pydantic import SecretStr, field_validator

from revseg.destinations.base import Capabilities, Operation
from revseg.destinations.options import HttpOptions, not_blank

T = TypeVar("T")
MASK = "<email>"


def email_capabilities(max_batch_size: int) -> Capabilities:
    """Capabilities of a list API keyed by raw email: mirror and upsert, no triggers."""
    return Capabilities(
        modes=frozenset({"mirror", "upsert"}),
        max_batch_size=max_batch_size,
        identifier_kinds=frozenset({"email"}),
        hashed_identifiers=frozenset(),
        requires_identifier=True,
        supports_update=True,
    )


class EmailListOptions(HttpOptions):
    """Options every email-list destination takes; subclasses add ``list_id`` and defaults."""

    api_key: SecretStr

    @field_validator("api_key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        return not_blank(value, "api_key")


@dataclass
class Recipient:
    """One address of a batch: the operation sent for it and every record it stands for."""

    email: str  # trimmed, case kept (as the warehouse holds it)
    op: str  # add | update | remove
    traits: Mapping[str, Any]
    ids: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The address as the APIs compare it: lower case."""
        return self.email.lower()


_PRECEDENCE = {"add": 0, "update": 1, "remove": 2}


def recipients(operations: Sequence[Operation], api: str) -> tuple[list[Recipient], dict[str, str]]:
    """Group a batch by address; records without one come back as rejections."""
    by_key: dict[str, Recipient] = {}
    rejected: dict[str, str] = {}
    for op in operations:
        email = (op.identifiers.get("email") or "").strip()
        if not email:
            rejected[op.id] = no_email_reason(api, op.op)
            continue
        found = by_key.get(email.lower())
        if found is None:
            by_key[email.lower()] = Recipient(email, op.op, op.traits, [op.id])
            continue
        found.ids.append(op.id)
        if _PRECEDENCE.get(op.op, 9) < _PRECEDENCE.get(found.op, 9):
            found.op, found.traits, found.email = op.op, op.traits, email
    return list(by_key.values()), rejected


def no_email_reason(api: str, op: str) -> str:
    if op == "remove":
        return f"no email was recorded for this member when it was added, so {api} cannot remove it"
    return (
        f"no email address: {api} list members are identified by email "
        "(map it in the sync's identifiers, e.g. email: email)"
    )


def reject(recipient: Recipient, reason: str) -> dict[str, str]:
    """The rejection of every record behind ``recipient``, its address masked in the reason."""
    text = mask(reason, recipient.email)
    return {record_id: text for record_id in recipient.ids}


def reject_all(items: Sequence[Recipient], reason: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        out.update(reject(item, reason))
    return out


def mask(reason: str, email: str) -> str:
    """``reason`` without ``email`` (any case): APIs echo the address in their messages."""
    if not email:
        return reason
    return re.sub(re.escape(email), MASK, reason, flags=re.IGNORECASE)


def chunks(
    items: Sequence[T],
    encode: Callable[[T], bytes],
    *,
    max_items: int,
    max_bytes: int,
    overhead: int = 256,
) -> Iterator[list[T]]:
    """Consecutive runs of ``items`` with at most ``max_items`` each and an encoded body
    (items joined by commas, plus ``overhead`` for the envelope) of at most ``max_bytes``.

    An item too large on its own still gets a chunk of its own: the API will refuse it and
    say why, which is a better rejection reason than one made up here.

    >>> [len(c) for c in chunks(list(range(10)), lambda i: b"x" * 10, max_items=4, max_bytes=300)]
    [4, 4, 2]
    >>> [len(c) for c in chunks(list(range(10)), lambda i: b"x" * 10, max_items=99, max_bytes=290)]
    [3, 3, 3, 1]
    """
    current: list[T] = []
    size = overhead
    for item in items:
        cost = len(encode(item)) + 1
        if current and (len(current) >= max_items or size + cost > max_bytes):
            yield current
            current, size = [], overhead
        current.append(item)
        size += cost
    if current:
        yield current


def json_body(response: httpx.Response) -> dict[str, Any]:
    """A response's JSON object, or ``{}`` for an empty or non-object body."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
