"""An emulator of Iterable's list and bulk-user endpoints, for tests and the sandbox.

It checks requests as ``destinations/iterable.md`` and Iterable's own Swagger document
(``schemas/iterable.json``) describe them: the ``Api-Key`` header; a JSON body matching
``SubscribeRequest`` / ``UnsubscribeRequest`` / ``BulkUpdateUsersRequest`` (``listId`` an
int64, ``subscribers`` an array ...); each subscriber with ``email`` or ``userId``; a known
static list. It is an email-based project: addresses are validated and compared lower case,
a profile's field types are fixed once set, ``bulkUpdate`` is held to 5 requests/second.
Answers use Iterable's shapes: ``UserBulkUpdateListResponse`` (``failCount`` and
``failedUpdates`` inside a 200) and ``{msg, code, params}`` errors.

Written from the doc, independently of :mod:`revseg.destinations.iterable`::

    with IterableEmulator() as emu:
        emu.fail_next(status=429, retry_after=1)
        ... sync with base_url=emu.url, list_id=emu.list_id, api_key=emu.api_key ...
        assert emu.members(emu.list_id) == {"ann@example.com"}

As a process: ``python -m revseg.sandbox.iterable_emulator --port N [--api-key K]``
(``GET /_list/{id}`` returns a list's members as JSON).
"""

from __future__ import annotations

import argparse
import hmac
import json
import re
import threading
import time
from collections.abc import Sequence
from typing import Any

from revseg.sandbox.emulator import Emulator, Fault, Reply, Request, reply, serve_main
from revseg.sandbox.openapi import load_spec, request_schema, validate

EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
ROUTES = {"/api/lists/subscribe", "/api/lists/unsubscribe", "/api/users/bulkUpdate"}
FAILED_KEYS = (
    "invalidEmails",
    "invalidUserIds",
    "notFoundEmails",
    "notFoundUserIds",
    "forgottenEmails",
    "forgottenUserIds",
    "conflictEmails",
    "conflictUserIds",
    "invalidDataEmails",
    "invalidDataUserIds",
)
STATUS_CODES = {
    400: "BadParams",
    401: "BadApiKey",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    429: "RateLimitExceeded",
    500: "GenericError",
    502: "GenericError",
    503: "GenericError",
}


class IterableError(Exception):
    def __init__(self, status: int, code: str, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code = status, code


def error_body(code: str, msg: str, endpoint: str = "") -> dict[str, Any]:
    return {"msg": msg, "code": code, "params": {"ip": "127.0.0.1", "endpoint": endpoint}}


def _json_type(value: Any) -> str:
    return {
        bool: "boolean",
        int: "number",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), "null")


class IterableEmulator(Emulator):
    """Iterable's ``/api/lists/{subscribe,unsubscribe}`` and ``/api/users/bulkUpdate``."""

    service = "iterable"

    def __init__(
        self,
        *,
        port: int = 0,
        api_key: str = "iterable-test-key",
        list_ids: Sequence[int] = (12345,),
        batch_limit: int | None = None,
        bulk_update_per_s: float | None = 5.0,
    ) -> None:
        super().__init__(port=port)
        self.api_key = api_key
        self.lists: dict[int, set[str]] = {int(i): set() for i in list_ids}
        self.users: dict[str, dict[str, Any]] = {}  # lower-case email -> dataFields
        self.field_types: dict[str, str] = {}
        self.batch_limit = batch_limit
        self.bad: dict[str, str] = {}  # email -> failedUpdates key
        self._spec = load_spec("iterable")
        self._bulk_rate = bulk_update_per_s
        self._bulk_tokens = bulk_update_per_s or 0.0
        self._bulk_at = time.monotonic()
        self._bulk_lock = threading.Lock()

    @property
    def url(self) -> str:
        """The ``base_url`` a destination uses (Iterable's root; paths start with /api)."""
        return self.root

    @property
    def list_id(self) -> int:
        return next(iter(self.lists))

    # -- programming and inspecting ---------------------------------------------------
    def members(self, list_id: int | None = None) -> set[str]:
        """The addresses on a static list (lower case)."""
        with self.lock:
            return set(self.lists[self.list_id if list_id is None else int(list_id)])

    def user(self, email: str) -> dict[str, Any]:
        with self.lock:
            return dict(self.users.get(email.lower(), {}))

    def reject_emails(self, *emails: str, kind: str = "invalidEmails") -> None:
        """Fail these addresses in every call, listed under ``failedUpdates.<kind>``."""
        if kind not in FAILED_KEYS:
            raise ValueError(f"kind must be one of {FAILED_KEYS}")
        with self.lock:
            self.bad.update((e.lower(), kind) for e in emails)

    def fail_next(
        self, n: int = 1, *, status: int = 500, delay: float = 0.0, retry_after: float | None = None
    ) -> None:
        """Answer ``status`` with Iterable's error body (429: ``RateLimitExceeded``)."""
        code = STATUS_CODES.get(status, "GenericError")
        msg = "Exceeded rate limit." if status == 429 else f"Emulated {code}"
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        self.inject(Fault(status, error_body(code, msg), headers, delay), n)

    def delay_next(self, seconds: float, n: int = 1) -> None:
        """Process the next ``n`` requests only after ``seconds`` (past a client's timeout)."""
        self.inject(Fault(None, delay=seconds), n)

    # -- the API ---------------------------------------------------------------------
    def handle(self, request: Request) -> Reply:
        try:
            return reply(200, self._route(request))
        except IterableError as exc:
            return reply(exc.status, error_body(exc.code, str(exc), request.path))

    def control(self, request: Request) -> Reply:
        match = re.fullmatch(r"/_list/(\d+)", request.path)
        if request.method == "GET" and match and int(match.group(1)) in self.lists:
            return reply(
                200,
                {
                    "listId": int(match.group(1)),
                    "members": sorted(self.members(int(match.group(1)))),
                },
            )
        return super().control(request)

    def _route(self, request: Request) -> dict[str, Any]:
        key = request.headers.get("api-key")
        if key is None:
            raise IterableError(401, "BadAuthorizationHeader", "No API key found on request")
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            raise IterableError(401, "BadApiKey", "Invalid API key")
        if request.path not in ROUTES:
            raise IterableError(404, "NotFound", f"No route for {request.method} {request.path}")
        if request.method != "POST":
            raise IterableError(404, "NotFound", f"{request.path} accepts POST only")
        body = self._body(request)
        if request.path == "/api/users/bulkUpdate":
            self._throttle()
            return self._apply(body["users"], None, unsubscribe=False)
        list_id = body["listId"]
        if list_id not in self.lists:
            raise IterableError(400, "BadParams", f"List {list_id} does not exist or is not static")
        people = body["subscribers"]
        if self.batch_limit is not None and len(people) > self.batch_limit:
            raise IterableError(400, "BatchTooLarge", f"Batch of {len(people)} exceeds the limit")
        return self._apply(people, list_id, unsubscribe=request.path.endswith("unsubscribe"))

    def _body(self, request: Request) -> dict[str, Any]:
        try:
            body = json.loads(request.body or b"null")
        except ValueError as exc:
            raise IterableError(400, "BadJsonBody", f"Invalid JSON body: {exc}") from None
        schema = request_schema(self._spec, request.path, "post")
        problems = validate(body, schema, self._spec)
        if problems:
            text = "; ".join(f"{where or 'body'}: {message}" for where, message in problems[:10])
            raise IterableError(400, "BadJsonBody", f"Invalid JSON body: {text}")
        people = body.get("subscribers", body.get("users", []))
        for index, person in enumerate(people):
            if not person.get("email") and not person.get("userId"):
                raise IterableError(400, "BadParams", f"Entry {index} needs an email or a userId")
        assert isinstance(body, dict)
        return body

    def _throttle(self) -> None:
        """5 requests/second per project: a bucket of 5 tokens refilled at 5/s."""
        if not self._bulk_rate:
            return
        with self._bulk_lock:
            now = time.monotonic()
            self._bulk_tokens = min(
                self._bulk_rate, self._bulk_tokens + (now - self._bulk_at) * self._bulk_rate
            )
            self._bulk_at = now
            if self._bulk_tokens < 1:
                raise IterableError(429, "RateLimitExceeded", "Exceeded rate limit.")
            self._bulk_tokens -= 1

    def _apply(
        self, people: list[dict[str, Any]], list_id: int | None, *, unsubscribe: bool
    ) -> dict[str, Any]:
        failed: dict[str, list[str]] = {k: [] for k in FAILED_KEYS}
        created: list[str] = []
        success = 0
        with self.lock:
            for person in people:
                email = person.get("email")
                if not email:  # an email-based project: an unknown userId is not found
                    failed["notFoundUserIds"].append(str(person["userId"]))
                    continue
                kind = self._problem(email, person.get("dataFields") or {})
                if kind is not None:
                    failed[kind].append(email)
                    continue
                key = email.lower()
                if unsubscribe and key not in self.users:
                    failed["notFoundEmails"].append(email)  # iterable.md: notFound* by unsubscribe
                    continue
                success += 1
                if unsubscribe:
                    if list_id is not None:
                        self.lists[list_id].discard(key)
                    continue
                fields = person.get("dataFields") or {}
                self.users.setdefault(key, {}).update(fields)
                for name, value in fields.items():
                    if value is not None and name not in self.field_types:
                        self.field_types[name] = _json_type(value)
                        created.append(name)
                if list_id is not None:
                    self.lists[list_id].add(key)
        fail_count = sum(len(v) for v in failed.values())
        return {
            "successCount": success,
            "failCount": fail_count,
            "invalidEmails": failed["invalidEmails"],
            "invalidUserIds": failed["invalidUserIds"],
            "failedUpdates": failed,
            "filteredOutFields": [],
            "createdFields": sorted(set(created)),
        }

    def _problem(self, email: str, fields: dict[str, Any]) -> str | None:
        if not EMAIL.fullmatch(email):
            return "invalidEmails"
        if email.lower() in self.bad:
            return self.bad[email.lower()]
        for name, value in fields.items():
            known = self.field_types.get(name)
            if value is not None and known is not None and known != _json_type(value):
                return "invalidDataEmails"
        return None


def main(argv: Sequence[str] | None = None) -> None:
    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--api-key", default="iterable-test-key")
        parser.add_argument("--list-id", type=int, action="append", dest="list_ids")

    serve_main(
        lambda a: IterableEmulator(port=a.port, api_key=a.api_key, list_ids=a.list_ids or (12345,)),
        "Emulate Iterable's list subscribe/unsubscribe API on 127.0.0.1.",
        argv,
        configure,
    )


if __name__ == "__main__":
    main()
