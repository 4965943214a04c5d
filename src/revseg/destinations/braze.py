"""The ``braze`` destination: segment membership written onto Braze user profiles.

Per ``destinations/braze.md``, Braze segments are computed from user data, not written, so
membership is expressed on each user through ``POST /users/track`` (``attributes`` objects,
``Authorization: Bearer <REST key>``):

- by default, a boolean custom attribute named after the segment (``attribute_name``
  overrides the name): ``true`` on enter, ``false`` on exit;
- with ``subscription_group_id``, the user's state in that subscription group instead
  (``subscription_groups: [{subscription_group_id, subscription_state}]`` inside the same
  object: ``subscribed`` on enter, ``unsubscribed`` on exit — a consent change, so only for
  groups that exist to mirror a segment).

Each object is keyed by one identifier (``identify_by``): ``external_id`` (default; an
``external_id`` identifier of the sync if mapped, else the entity id), ``email`` or
``phone`` (E.164). An add also writes the sync's other email/phone identifiers as the
user's ``email``/``phone`` attributes (never an email on a phone-keyed object: with both,
Braze identifies the user by the email). Records are grouped by user, so one user gets one
object per request: an add beats an update beats a remove.

Braze bills every attribute write as a data point, so only changes are sent:

- add: membership on, plus the member's non-null traits and identifiers;
- remove: membership off only, with ``_update_existing_only`` (a removal never creates a
  profile for a user Braze does not have);
- update: the traits only. The runner sends an update only when a synced trait changed,
  but it does not pass the previous values, so *every* trait of the update is written
  (a null trait removes the attribute), not just the changed ones.

A request carries at most 75 objects (the sync's ``batch_size`` lowers that: workspaces on
MAU-based plans take at most 50); a ``400 Max Input Length Exceeded`` halves the request.
Per-object errors (``errors[].input_array/index``, inside a 2xx or a fatal 400) reject the
records behind the object; after a fatal 400 the rest is sent again. The request window of
``X-RateLimit-Remaining/Reset`` is honoured before a 429 happens, and a 429 waits for the
reset. Attribute writes are last-write-wins, so a batch re-sent after a crash is harmless.

No trigger mode: braze.md documents ``/users/track`` and subscription groups only, not the
campaign/Canvas trigger endpoints; membership events are not sent either (Braze does not
de-duplicate events, and a re-sent batch would fire Canvases twice).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import httpx
from pydantic import field_validator

from revseg.destinations.api import HttpDestination
from revseg.destinations.base import (
    Batch,
    BatchResult,
    Capabilities,
    DeliverySettings,
    DestinationOptions,
    Operation,
)
from revseg.destinations.braze_wire import (
    MAX_OBJECTS,
    RequestWindow,
    User,
    mask_pii,
    object_errors,
    traits_as_attributes,
)
from revseg.destinations.email_lists import EmailListOptions, json_body
from revseg.destinations.encoding import dumps
from revseg.destinations.http import EXTRA_SLEEP, Outcome, Verdict
from revseg.destinations.identifiers import normalize_e164
from revseg.errors import DeliveryError

log = logging.getLogger("revseg.destinations.braze")

TRACK = "/users/track"
IdentifyBy = Literal["external_id", "email", "phone"]
_PRECEDENCE = {"add": 0, "update": 1, "remove": 2}


class BrazeOptions(EmailListOptions):
    """``options:`` of a braze destination."""

    #: the workspace's REST endpoint, e.g. ``https://rest.iad-01.braze.com`` (no default:
    #: each Braze instance has its own host).
    base_url: str
    subscription_group_id: str | None = None
    attribute_name: str | None = None
    identify_by: IdentifyBy = "external_id"

    @field_validator("subscription_group_id", "attribute_name")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value.strip() if value is not None else None


class BrazeDestination(HttpDestination):
    """Keeps a per-segment membership flag (or subscription state) on Braze users."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        modes=frozenset({"mirror", "upsert"}),
        max_batch_size=MAX_OBJECTS,
        identifier_kinds=frozenset({"external_id", "email", "phone"}),
        hashed_identifiers=frozenset(),
        requires_identifier=False,  # the entity id is the external_id when none is mapped
        supports_update=True,
    )
    Options: ClassVar[type[DestinationOptions]] = BrazeOptions

    def __init__(self, name: str, options: DestinationOptions, settings: DeliverySettings) -> None:
        if not isinstance(options, BrazeOptions):
            raise TypeError(f"expected BrazeOptions, got {type(options).__name__}")
        super().__init__(name, options, settings)
        self.braze = options
        sleep: Callable[[float], None] = settings.extra.get(EXTRA_SLEEP) or time.sleep
        self.window = RequestWindow(sleep=sleep)

    def timeout(self) -> float:
        return self.braze.timeout.total_seconds()

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.braze.api_key.get_secret_value()}"}

    def send(self, batch: Batch) -> BatchResult:
        users, rejected = self.users(batch.operations)
        attribute = self.braze.attribute_name or batch.segment
        pairs = [(user, self.user_object(user, attribute)) for user in users]
        pairs = [(u, o) for u, o in pairs if len(o) > 1]  # an update with nothing to write
        size = max(1, min(MAX_OBJECTS, self.settings.batch_size or MAX_OBJECTS))
        for start in range(0, len(pairs), size):
            rejected.update(self._track(pairs[start : start + size]))
        return BatchResult(rejected)

    # -- users and their objects --------------------------------------------------------
    def users(self, operations: Sequence[Operation]) -> tuple[list[User], dict[str, str]]:
        """Group a batch by Braze user; an add beats an update beats a remove, so a member
        whose email changed (remove old + add new, same external_id) ends up a member."""
        by_key: dict[tuple[str, str], User] = {}
        rejected: dict[str, str] = {}
        for op in operations:
            identity, reason = self.identity(op)
            if identity is None:
                rejected[op.id] = reason
                continue
            user = User(self.braze.identify_by, identity, op.op, op, [op.id])
            user.pii.update(
                str(v)
                for k in ("email", "phone")
                for v in (op.identifiers.get(k), op.traits.get(k))
                if v
            )
            found = by_key.setdefault(user.key, user)
            if found is user:
                continue
            found.ids.append(op.id)
            found.pii |= user.pii
            if _PRECEDENCE.get(op.op, 9) < _PRECEDENCE.get(found.op, 9):
                found.op, found.operation, found.value = op.op, op, identity
        return list(by_key.values()), rejected

    def identity(self, op: Operation) -> tuple[str | None, str]:
        """``(value the object is keyed by, "")``, or ``(None, why there is none)``."""
        kind = self.braze.identify_by
        raw = (op.identifiers.get(kind) or "").strip()
        if kind == "external_id":
            return raw or op.id, ""
        if kind == "phone" and raw:
            phone = normalize_e164(raw)
            if phone is None:
                return None, "the phone number is not E.164 ('+', country code, number)"
            return phone, ""
        if raw:
            return raw, ""
        if op.op == "remove":
            return None, f"no {kind} was recorded for this member when it was added"
        return None, (
            f"no {kind}: this destination identifies Braze users by {kind} "
            f"(map it in the sync's identifiers, e.g. {kind}: {kind})"
        )

    def user_object(self, user: User, attribute: str) -> dict[str, Any]:
        """The ``attributes`` entry for one user: only what this operation changes."""
        op = user.operation
        obj: dict[str, Any] = {user.kind: user.value}
        membership: dict[str, Any]
        if self.braze.subscription_group_id is not None:
            state = "unsubscribed" if user.op == "remove" else "subscribed"
            group = {"subscription_group_id": self.braze.subscription_group_id}
            membership = {"subscription_groups": [{**group, "subscription_state": state}]}
        else:
            membership = {attribute: user.op != "remove"}
        if user.op == "remove":
            return {**obj, "_update_existing_only": True, **membership}
        # an email in a phone-keyed object would become its identifier (the doc: with both,
        # email identifies the user), so a phone-keyed object never carries one
        drop = {user.kind, attribute, *(["email"] if user.kind == "phone" else [])}
        obj.update(traits_as_attributes(op.traits, drop=drop, keep_null=user.op == "update"))
        if user.op == "add":
            for kind in ("email", "phone"):
                raw = (op.identifiers.get(kind) or "").strip()
                if kind not in drop and raw:
                    obj[kind] = (normalize_e164(raw) or raw) if kind == "phone" else raw
            obj.update(membership)
        return obj

    # -- requests -----------------------------------------------------------------------
    def _track(self, pairs: list[tuple[User, dict[str, Any]]]) -> dict[str, str]:
        """Post one request's objects; a fatal 400 drops the objects it names and retries."""
        rejected: dict[str, str] = {}
        while pairs:
            self.window.wait()
            body = dumps({"attributes": [obj for _, obj in pairs]})
            response = self.http.request(
                "POST", TRACK, content=body, headers={"content-type": "application/json"}
            )
            document = json_body(response)
            placed, unplaced = object_errors(document, len(pairs))
            for index, text in placed.items():
                rejected.update(self._reject(pairs[index][0], text))
            if response.status_code != 400:
                if unplaced:
                    log.warning("%s: Braze errors not tied to an object: %s", self.name, unplaced)
                return rejected
            message = str(document.get("message") or response.text[:300])
            if placed:
                pairs = [p for i, p in enumerate(pairs) if i not in placed]
                continue
            if len(pairs) > 1 and "max input length" in message.lower():
                half = len(pairs) // 2
                log.info("%s: %s for %d objects; halving", self.name, message, len(pairs))
                return {**rejected, **self._track(pairs[:half]), **self._track(pairs[half:])}
            raise DeliveryError(f"Braze refused {TRACK}: HTTP 400 {message}")
        return rejected

    def _reject(self, user: User, text: str) -> dict[str, str]:
        reason = mask_pii(f"Braze: {text}", user.pii)
        return {record_id: reason for record_id in user.ids}

    def classify_response(self, response: httpx.Response) -> Verdict | None:
        verdict = self.window.classify(response)
        if verdict is not None:
            return verdict
        if response.status_code == 400 and response.request.url.path.endswith(TRACK):
            return Verdict(Outcome.OK)  # bad objects are named by index: mapped to records
        return None
