"""An emulator of Mailchimp's batch subscribe / unsubscribe, ``POST /3.0/lists/{list_id}``.

It checks requests as ``destinations/mailchimp.md`` describes the API (Mailchimp publishes
no machine-readable schema for it): HTTP Basic auth with the API key as password (or
``Authorization: apikey <key>``), a JSON object with ``members`` (an array of at most 500
objects, each with a string ``email_address`` and a ``status`` among the five Mailchimp
knows; ``merge_fields`` an object), booleans ``update_existing`` and ``sync_tags``, and a
known audience. Errors are ``application/problem+json`` documents; per-member failures
(an address that looks fake, an existing member without ``update_existing``) come back in
the 200's ``errors``. Addresses are lower-cased, members keyed by ``subscriber_hash``.

Mailchimp limits simultaneous connections, not request rates: more than ``max_connections``
requests in flight at once get 429 (``latency`` holds every request open that long, so a
test can make them overlap; ``peak_connections`` records the most seen at once).

Written from the doc, independently of :mod:`revseg.destinations.mailchimp`::

    with MailchimpEmulator() as emu:
        ... sync with base_url=emu.url, list_id=emu.list_id, api_key=emu.api_key ...
        assert emu.members(emu.list_id) == {"ann@example.com"}

As a process: ``python -m revseg.sandbox.mailchimp_emulator --port N [--api-key K]``
(``GET /_list/{id}`` returns an audience's members and statuses as JSON).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

from revseg.sandbox.emulator import Emulator, Fault, Reply, Request, reply, serve_main
from revseg.sandbox.mailchimp_wire import TITLES, Problem, check_body, member_error, problem

EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
_PATH = re.compile(r"/3\.0/lists/([A-Za-z0-9]+)")


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.lower().encode(), usedforsecurity=False).hexdigest()


class MailchimpEmulator(Emulator):
    """Mailchimp's ``POST /3.0/lists/{list_id}`` over per-audience member records."""

    service = "mailchimp"

    def __init__(
        self,
        *,
        port: int = 0,
        api_key: str = "0123456789abcdef0123456789abcdef-us21",
        list_ids: Sequence[str] = ("a1b2c3d4e5",),
        max_connections: int = 10,
        latency: float = 0.0,
    ) -> None:
        super().__init__(port=port)
        self.api_key = api_key
        self.lists: dict[str, dict[str, dict[str, Any]]] = {i: {} for i in list_ids}
        self.max_connections = max_connections
        self.latency = latency
        self.in_flight = 0
        self.peak_connections = 0
        self.fake: set[str] = set()

    @property
    def url(self) -> str:
        """The ``base_url`` a destination uses: the API root with its version, ``/3.0``."""
        return f"{self.root}/3.0"

    @property
    def list_id(self) -> str:
        return next(iter(self.lists))

    # -- programming and inspecting ---------------------------------------------------
    def members(self, list_id: str | None = None) -> set[str]:
        """The subscribed addresses of an audience."""
        return {e for e, s in self.statuses(list_id).items() if s == "subscribed"}

    def statuses(self, list_id: str | None = None) -> dict[str, str]:
        with self.lock:
            audience = self.lists[list_id or self.list_id]
            return {m["email_address"]: m["status"] for m in audience.values()}

    def member(self, email: str, list_id: str | None = None) -> dict[str, Any]:
        with self.lock:
            return dict(self.lists[list_id or self.list_id].get(subscriber_hash(email), {}))

    def reject_emails(self, *emails: str) -> None:
        """Treat these addresses as fake (``ERROR_GENERIC`` in ``errors``)."""
        with self.lock:
            self.fake.update(e.lower() for e in emails)

    def fail_next(self, n: int = 1, *, status: int = 500, delay: float = 0.0) -> None:
        """Answer ``status`` with Mailchimp's problem document (429 has no Retry-After)."""
        title = TITLES.get(status, "Error")
        body = {
            "type": "https://mailchimp.com/developer/marketing/docs/errors/",
            "title": title,
            "status": status,
            "detail": f"Emulated {title}",
            "instance": str(uuid.uuid4()),
        }
        self.inject(Fault(status, body, {"content-type": "application/problem+json"}, delay), n)

    def delay_next(self, seconds: float, n: int = 1) -> None:
        """Process the next ``n`` requests only after ``seconds`` (past a client's timeout)."""
        self.inject(Fault(None, delay=seconds), n)

    # -- the API ---------------------------------------------------------------------
    def handle(self, request: Request) -> Reply:
        with self.lock:
            self.in_flight += 1
            self.peak_connections = max(self.peak_connections, self.in_flight)
            over = self.in_flight > self.max_connections
        try:
            if over:
                return problem(
                    429,
                    f"You have exceeded the limit of {self.max_connections} "
                    "simultaneous connections.",
                )
            if self.latency:
                self.stopping.wait(self.latency)
            return reply(200, self._route(request))
        except Problem as exc:
            return problem(exc.status, str(exc), exc.errors, exc.title)
        finally:
            with self.lock:
                self.in_flight -= 1

    def control(self, request: Request) -> Reply:
        match = re.fullmatch(r"/_list/([A-Za-z0-9]+)", request.path)
        if request.method == "GET" and match and match.group(1) in self.lists:
            return reply(200, {"id": match.group(1), "members": self.statuses(match.group(1))})
        return super().control(request)

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        key = ""
        if scheme.lower() == "basic":
            try:
                key = base64.b64decode(value, validate=True).decode().partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                key = ""
        elif scheme.lower() == "apikey":
            key = value.strip()
        if not key or not hmac.compare_digest(key.encode(), self.api_key.encode()):
            raise Problem(
                401,
                "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
            )

    def _route(self, request: Request) -> dict[str, Any]:
        self._authenticate(request)
        match = _PATH.fullmatch(request.path)
        if match is None:
            raise Problem(404, "The requested resource could not be found.")
        if request.method != "POST":
            raise Problem(405, "The requested method and resource are not compatible.")
        if match.group(1) not in self.lists:
            raise Problem(404, "The requested resource could not be found.")
        try:
            body = json.loads(request.body or b"null")
        except ValueError:
            raise Problem(
                400, "We encountered an unspecified JSON parsing error.", title="JSON Parse Error"
            ) from None
        errors = check_body(body)
        if errors:
            raise Problem(
                400,
                "The resource submitted could not be validated. For field-specific "
                "details, see the 'errors' array.",
                errors,
            )
        dedupe = request.param("skip_duplicate_check") == "true"
        return self._batch(match.group(1), body, dedupe)

    def _batch(self, list_id: str, body: dict[str, Any], dedupe: bool) -> dict[str, Any]:
        created: list[dict[str, Any]] = []
        updated: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        seen: set[str] = set()
        with self.lock:
            audience = self.lists[list_id]
            for entry in body["members"]:
                email = entry["email_address"].strip()
                key = subscriber_hash(email)
                if dedupe and key in seen:
                    continue
                seen.add(key)
                if not EMAIL.fullmatch(email) or email.lower() in self.fake:
                    errors.append(
                        member_error(
                            email,
                            f"{email} looks fake or invalid, please enter a real email address.",
                            "ERROR_GENERIC",
                        )
                    )
                    continue
                existing = audience.get(key)
                if existing is not None and not body.get("update_existing"):
                    errors.append(
                        member_error(
                            email,
                            f"{email} is already a list member. Use PUT "
                            "to insert or update list members.",
                            "ERROR_CONTACT_EXISTS",
                        )
                    )
                    continue
                record = existing or {
                    "id": key,
                    "email_address": email.lower(),
                    "list_id": list_id,
                    "unique_email_id": key[:10],
                    "merge_fields": {},
                    "timestamp_signup": time.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
                }
                record["status"] = entry["status"]
                record["merge_fields"] = {
                    **record["merge_fields"],
                    **(entry.get("merge_fields") or {}),
                }
                audience[key] = record
                (updated if existing is not None else created).append(dict(record))
        return {
            "new_members": created,
            "updated_members": updated,
            "errors": errors,
            "total_created": len(created),
            "total_updated": len(updated),
            "error_count": len(errors),
            "_links": [
                {
                    "rel": "self",
                    "href": f"/3.0/lists/{list_id}",
                    "method": "GET",
                    "targetSchema": "https://us1.api.mailchimp.com/schema/3.0/Definitions/Lists/Response.json",
                }
            ],
        }


def main(argv: Sequence[str] | None = None) -> None:
    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--api-key", default="0123456789abcdef0123456789abcdef-us21")
        parser.add_argument("--list-id", action="append", dest="list_ids")

    serve_main(
        lambda a: MailchimpEmulator(
            port=a.port, api_key=a.api_key, list_ids=a.list_ids or ("a1b2c3d4e5",)
        ),
        "Emulate Mailchimp's batch list-members API on 127.0.0.1.",
        argv,
        configure,
    )


if __name__ == "__main__":
    main()
