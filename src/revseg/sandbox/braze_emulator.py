"""An emulator of Braze's ``POST /users/track``, for tests and the sandbox.

It checks requests as ``destinations/braze.md`` describes them: ``Authorization: Bearer
<REST key>`` (401 otherwise), ``Content-Type: application/json``, at most ``max_objects``
(75) objects across ``attributes`` + ``events`` + ``purchases`` (400 ``Max Input Length
Exceeded``); every object with an identifier (``external_id``, ``user_alias``,
``braze_id``, ``email`` or ``phone`` in E.164), string values of at most 255 characters,
valid email addresses, known subscription groups and states. Invalid objects are named in
``errors`` (``type``, ``input_array``, ``index``) inside a 201 while the others are
processed; when none is valid the request fails with the doc's fatal 400.

Users are kept with their attributes (``null`` removes one, ``{"inc": n}`` increments,
``{"add"|"remove": [...]}`` mutates an array) and subscription states; every attribute
written counts as a data point (``emu.data_points``), as Braze bills it. Every response
carries ``X-RateLimit-Limit/Remaining/Reset``; with ``rate_limit=(n, seconds)`` the
workspace allows ``n`` requests per window and answers 429 beyond that.

Written from the doc, independently of :mod:`revseg.destinations.braze`::

    with BrazeEmulator() as emu:
        ... sync with base_url=emu.url, api_key=emu.api_key ...
        assert emu.members("vips") == {"1", "2"}

As a process: ``python -m revseg.sandbox.braze_emulator --port N [--api-key K]``
(``GET /_users`` returns every user's attributes as JSON).
"""

from __future__ import annotations

import argparse
import hmac
import json
import math
import re
import threading
import time
from collections.abc import Sequence
from typing import Any

from revseg.sandbox.braze_users import IDENTIFIERS, UserStore
from revseg.sandbox.emulator import Emulator, Fault, Reply, Request, reply, serve_main

DEFAULT_GROUP = "5d0bc3fb-5d2b-4a2e-9c7c-6e0a3f1b2c4d"
FATAL = "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."
ARRAYS = ("attributes", "events", "purchases")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
E164 = re.compile(r"\+[1-9]\d{6,14}")


class BrazeError(Exception):
    """A fatal answer: ``{"message": ..., "errors": [...]}`` with an HTTP status."""

    def __init__(self, status: int, message: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status, self.errors = status, errors


class BrazeEmulator(Emulator):
    """Braze's ``/users/track`` over an in-memory workspace."""

    service = "braze"

    def __init__(
        self,
        *,
        port: int = 0,
        api_key: str = "braze-test-rest-key",
        subscription_groups: Sequence[str] = (DEFAULT_GROUP,),
        max_objects: int = 75,
        rate_limit: tuple[int, float] | None = None,
    ) -> None:
        super().__init__(port=port)
        self.api_key = api_key
        self.groups = set(subscription_groups)
        self.max_objects = max_objects
        self.rate_limit = rate_limit
        self.store = UserStore()
        self.bad: dict[str, str] = {}  # identifier value -> error type
        self.queued = False
        self._window = (0.0, 0)  # (window start, requests used)
        self._rate_lock = threading.Lock()

    @property
    def url(self) -> str:
        """The ``base_url`` a destination uses (the instance's REST endpoint)."""
        return self.root

    @property
    def group_id(self) -> str:
        return sorted(self.groups)[0]

    @property
    def data_points(self) -> int:
        with self.lock:
            return self.store.data_points

    # -- programming and inspecting ---------------------------------------------------
    def users(self) -> dict[str, dict[str, Any]]:
        """Every user's attributes, by external_id (``email:…``/``phone:…`` for the others)."""
        with self.lock:
            return self.store.snapshot()

    def members(self, attribute: str) -> set[str]:
        """The users whose boolean attribute ``attribute`` is true."""
        return {k for k, attrs in self.users().items() if attrs.get(attribute) is True}

    def subscribed(self, group_id: str | None = None) -> set[str]:
        """The users subscribed to a subscription group."""
        group = group_id or self.group_id
        with self.lock:
            return self.store.subscribed(group)

    def find(self, email: str) -> dict[str, Any]:
        """The attributes of the user with this email address ({} if none)."""
        for attrs in self.users().values():
            if str(attrs.get("email", "")).lower() == email.lower():
                return attrs
        return {}

    def reject_users(self, *identifiers: str, kind: str = "user is blocklisted") -> None:
        """Fail objects identified by these external_ids / emails with error ``kind``."""
        with self.lock:
            self.bad.update((i.lower(), kind) for i in identifiers)

    def fail_next(
        self, n: int = 1, *, status: int = 500, delay: float = 0.0, reset_in: float = 1.0
    ) -> None:
        """Answer ``status``; a 429 says when the window resets (Braze sends no Retry-After)."""
        headers: dict[str, str] = {}
        message = "Internal Server Error"
        if status == 429:
            message = "API rate limit exceeded"
            headers = {
                "X-RateLimit-Limit": "3000",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(math.ceil(time.time() + reset_in)),
            }
        self.inject(Fault(status, {"message": message}, headers, delay), n)

    def delay_next(self, seconds: float, n: int = 1) -> None:
        """Process the next ``n`` requests only after ``seconds`` (past a client's timeout)."""
        self.inject(Fault(None, delay=seconds), n)

    # -- the API ---------------------------------------------------------------------
    def handle(self, request: Request) -> Reply:
        headers, allowed = self._count()
        try:
            if not allowed:
                raise BrazeError(429, "API rate limit exceeded")
            status, document = self._route(request)
        except BrazeError as exc:
            status, document = exc.status, {"message": str(exc)}
            if exc.errors is not None:
                document["errors"] = exc.errors
        return reply(status, document, headers)

    def control(self, request: Request) -> Reply:
        if request.method == "GET" and request.path == "/_users":
            return reply(200, {"users": self.users()})
        return super().control(request)

    def _count(self) -> tuple[dict[str, str], bool]:
        limit, period = self.rate_limit or (3000, 3.0)
        now = time.time()
        start = math.floor(now / period) * period
        with self._rate_lock:
            window, used = self._window
            if window != start:
                window, used = start, 0
            allowed = used < limit
            used += 1 if allowed else 0
            self._window = (window, used)
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, limit - used)),
            "X-RateLimit-Reset": str(math.ceil(window + period)),
        }
        return headers, allowed

    def _route(self, request: Request) -> tuple[int, dict[str, Any]]:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or not hmac.compare_digest(key.encode(), self.api_key.encode()):
            raise BrazeError(401, "Unknown or missing REST API key")
        if request.path != "/users/track" or request.method != "POST":
            raise BrazeError(404, f"{request.method} {request.path} is not an endpoint")
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            raise BrazeError(400, "Content-Type must be application/json")
        try:
            body = json.loads(request.body or b"null")
        except ValueError:
            raise BrazeError(400, "Received invalid JSON in the request body") from None
        if not isinstance(body, dict) or any(
            not isinstance(body.get(name, []), list) for name in ARRAYS
        ):
            raise BrazeError(400, FATAL)
        total = sum(len(body.get(name, [])) for name in ARRAYS)
        if total > self.max_objects:
            raise BrazeError(400, "Max Input Length Exceeded")
        errors: list[dict[str, Any]] = []
        valid: dict[str, list[dict[str, Any]]] = {name: [] for name in ARRAYS}
        for name in ARRAYS:
            for index, item in enumerate(body.get(name, [])):
                problem = self._problem(name, item)
                if problem is None:
                    valid[name].append(item)
                else:
                    errors.append({"type": problem, "input_array": name, "index": index})
        if not any(valid.values()):
            raise BrazeError(400, FATAL, errors)
        with self.lock:
            for item in valid["attributes"]:
                self.store.track(item)
            self.store.events.extend(valid["events"])
        if self.queued:
            return 202, {"message": "queued"}
        document: dict[str, Any] = {"message": "success"}
        for name in ARRAYS:
            if name in body:
                document[f"{name}_processed"] = len(valid[name])
        if errors:
            document["errors"] = errors
        return 201, document

    def _problem(self, array: str, item: Any) -> str | None:
        """Why Braze would refuse one object, or None."""
        if not isinstance(item, dict):
            return f"'{array}' objects must be JSON objects"
        if not any(item.get(k) for k in IDENTIFIERS):
            return "'external_id' or 'braze_id' or 'user_alias' or 'email' or 'phone' is required"
        for name in ("external_id", "braze_id"):
            if name in item and not isinstance(item[name], str):
                return f"'{name}' must be a string"
        if array != "attributes":
            return None if item.get("name") or array == "purchases" else "'name' is required"
        email, phone = item.get("email"), item.get("phone")
        if email is not None and not (isinstance(email, str) and EMAIL.fullmatch(email)):
            return f"'{email}' is not a valid email address"
        identified = any(item.get(k) for k in ("external_id", "braze_id", "user_alias", "email"))
        if phone is not None and not identified and not E164.fullmatch(str(phone)):
            return "'phone' must be in E.164 format"
        for name, value in item.items():
            if isinstance(value, str) and len(value) > 255:
                return f"'{name}' is longer than 255 characters"
        for entry in item.get("subscription_groups") or []:
            if not isinstance(entry, dict) or entry.get("subscription_group_id") not in self.groups:
                return "'subscription_group_id' is not a valid subscription group"
            if entry.get("subscription_state") not in ("subscribed", "unsubscribed"):
                return "'subscription_state' must be 'subscribed' or 'unsubscribed'"
        with self.lock:
            for name in ("external_id", "email"):
                kind = self.bad.get(str(item.get(name, "")).lower())
                if kind:
                    return kind
        return None


def main(argv: Sequence[str] | None = None) -> None:
    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--api-key", default="braze-test-rest-key")
        parser.add_argument("--subscription-group", action="append", dest="groups")
        parser.add_argument("--max-objects", type=int, default=75)

    serve_main(
        lambda a: BrazeEmulator(
            port=a.port,
            api_key=a.api_key,
            subscription_groups=a.groups or (DEFAULT_GROUP,),
            max_objects=a.max_objects,
        ),
        "Emulate Braze's /users/track on 127.0.0.1.",
        argv,
        configure,
    )


if __name__ == "__main__":
    main()
