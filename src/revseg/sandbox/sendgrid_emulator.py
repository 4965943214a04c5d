"""An emulator of SendGrid's Marketing Campaigns contacts and lists API (v3).

It checks requests as ``destinations/sendgrid.md`` and SendGrid's OpenAPI document
(``schemas/sendgrid.json``) describe them: ``Authorization: Bearer <key>``; bodies against
the operation's schema (``contacts`` 1..30,000 ``ContactRequest`` objects, ``list_ids``
UUIDs, field lengths; ``nullable`` folded), at most 6 MB; every contact with an identifier
and a valid email (all or nothing: one bad contact fails the request with 400 naming
``contacts[i].email``); known lists and contact ids.

Upserts and list removals are jobs: the 202 carries a ``job_id``, the change is applied
``job_delay`` seconds later (lazily, in order, before any later request is answered), and
``GET /v3/marketing/contacts/imports/{id}`` reports ``pending`` until then. Every response
carries ``X-RateLimit-Limit/Remaining/Reset``; with ``rate_limit=(n, seconds)`` each endpoint
allows ``n`` requests per window and answers 429 ``too many requests`` beyond that.

Written from the doc, independently of :mod:`revseg.destinations.sendgrid`::

    with SendgridEmulator() as emu:
        ... sync with base_url=emu.url, list_id=emu.list_id, api_key=emu.api_key ...
        assert emu.members(emu.list_id) == {"ann@example.com"}

As a process: ``python -m revseg.sandbox.sendgrid_emulator --port N [--api-key K]``
(``GET /_list/{id}`` returns a list's member addresses as JSON).
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

from revseg.sandbox.emulator import Emulator, Fault, Reply, Request, reply, serve_main
from revseg.sandbox.openapi import load_spec, request_schema, validate
from revseg.sandbox.sendgrid_store import DEFAULT_LIST, ContactStore, SendgridError

MAX_BODY = 6_000_000
MAX_SEARCH = 100
_IMPORT = re.compile(r"/v3/marketing/contacts/imports/([^/]+)")
_LIST_CONTACTS = re.compile(r"/v3/marketing/lists/([^/]+)/contacts")
_ID = re.compile(r"/[0-9a-fA-F-]{16,}(?=/|$)")


class SendgridEmulator(Emulator):
    """SendGrid's contact upsert, import status, email search and list removal."""

    service = "sendgrid"

    def __init__(
        self,
        *,
        port: int = 0,
        api_key: str = "SG.test-key",
        list_ids: Sequence[str] = (DEFAULT_LIST,),
        job_delay: float = 0.1,
        rate_limit: tuple[int, float] | None = None,
    ) -> None:
        super().__init__(port=port)
        self.api_key = api_key
        self.store = ContactStore(list_ids, job_delay)
        self.rate_limit = rate_limit
        self._windows: dict[str, tuple[float, int]] = {}  # endpoint -> (window start, used)
        self._rate_lock = threading.Lock()
        self._spec = load_spec("sendgrid")

    @property
    def url(self) -> str:
        """The ``base_url`` a destination uses (SendGrid's root; paths start with /v3)."""
        return self.root

    @property
    def list_id(self) -> str:
        return next(iter(self.store.lists))

    # -- programming and inspecting ---------------------------------------------------
    def members(self, list_id: str | None = None) -> set[str]:
        """The addresses on a list, once every job due by now has been applied."""
        with self.lock:
            return self.store.members(list_id or self.list_id)

    def contact(self, email: str) -> dict[str, Any]:
        with self.lock:
            return self.store.contact(email)

    def fail_in_jobs(self, *emails: str) -> None:
        """Make upsert jobs error on these addresses (the job ends ``errored``/``failed``)."""
        with self.lock:
            self.store.poisoned.update(e.lower() for e in emails)

    def settle(self) -> None:
        """Apply every pending job now, whatever its delay."""
        with self.lock:
            self.store.settle(force=True)

    def fail_next(
        self, n: int = 1, *, status: int = 500, delay: float = 0.0, reset_in: float = 1.0
    ) -> None:
        """Answer ``status`` with SendGrid's error body; 429 also says when the limit resets."""
        message = "too many requests" if status == 429 else "internal server error"
        headers: dict[str, str] = {}
        if status == 429:
            headers = {
                "X-RateLimit-Limit": "1",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(math.ceil(time.time() + reset_in)),
            }
        self.inject(
            Fault(status, {"errors": [{"field": None, "message": message}]}, headers, delay), n
        )

    def delay_next(self, seconds: float, n: int = 1) -> None:
        """Process the next ``n`` requests only after ``seconds`` (past a client's timeout)."""
        self.inject(Fault(None, delay=seconds), n)

    # -- the API ---------------------------------------------------------------------
    def handle(self, request: Request) -> Reply:
        limit_headers, allowed = self._count(request)
        try:
            if not allowed:
                raise SendgridError(429, "too many requests")
            status, document = self._route(request)
        except SendgridError as exc:
            status, document = exc.status, {"errors": exc.errors}
        return reply(status, document, limit_headers)

    def control(self, request: Request) -> Reply:
        match = re.fullmatch(r"/_list/([^/]+)", request.path)
        if request.method == "GET" and match and match.group(1) in self.store.lists:
            return reply(
                200, {"id": match.group(1), "members": sorted(self.members(match.group(1)))}
            )
        match = re.fullmatch(r"/_errors/([^/]+)", request.path)
        if request.method == "GET" and match:
            with self.lock:
                rows = self.store.job_errors(match.group(1))
            csv = "email,error\n" + "".join(f"{e},{m}\n" for e, m in rows)
            return 200, {"content-type": "text/csv"}, csv.encode()
        return super().control(request)

    def _count(self, request: Request) -> tuple[dict[str, str], bool]:
        """Fixed windows per endpoint, reported in the ``X-RateLimit-*`` headers."""
        limit, period = self.rate_limit or (600, 60.0)
        key = f"{request.method} {_ID.sub('/{id}', request.path)}"
        now = time.time()
        start = math.floor(now / period) * period
        with self._rate_lock:
            window, used = self._windows.get(key, (start, 0))
            if window != start:
                window, used = start, 0
            allowed = used < limit
            used += 1 if allowed else 0
            self._windows[key] = (window, used)
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, limit - used)),
            "X-RateLimit-Reset": str(math.ceil(window + period)),
        }
        return headers, allowed

    def _route(self, request: Request) -> tuple[int, Any]:
        auth = request.headers.get("authorization", "")
        scheme, _, key = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            key.strip().encode(), self.api_key.encode()
        ):
            raise SendgridError(401, "authorization required")
        method, path = request.method, request.path
        with self.lock:
            self.store.settle()
            if (method, path) == ("PUT", "/v3/marketing/contacts"):
                body = self._body(request, "/v3/marketing/contacts", "put")
                job_id = self.store.upsert(body["contacts"], body.get("list_ids") or [])
                return 202, {"job_id": job_id}
            if (method, path) == ("POST", "/v3/marketing/contacts/search/emails"):
                body = self._body(request, "/v3/marketing/contacts/search/emails", "post")
                if len(body["emails"]) > MAX_SEARCH:
                    raise SendgridError(
                        400, f"at most {MAX_SEARCH} emails may be searched", "emails"
                    )
                result = self.store.search(body["emails"])
                if not any("contact" in entry for entry in result.values()):
                    raise SendgridError(404, "No contacts found")
                return 200, {"result": result}
            match = _IMPORT.fullmatch(path)
            if method == "GET" and match:
                job = self.store.job(match.group(1), self.root)
                if job is None:
                    raise SendgridError(404, "job not found", "id")
                return 200, job
            match = _LIST_CONTACTS.fullmatch(path)
            if method == "DELETE" and match:
                ids = [i for i in (request.param("contact_ids") or "").split(",") if i]
                if not ids:
                    raise SendgridError(400, "contact_ids is required", "contact_ids")
                job_id = self.store.remove(match.group(1), ids)
                return 202, {"job_id": job_id}
        raise SendgridError(404, f"{method} {path} is not a known endpoint")

    def _body(self, request: Request, path: str, method: str) -> dict[str, Any]:
        if len(request.body) > MAX_BODY:
            raise SendgridError(413, "request body exceeds the 6 MB limit")
        try:
            body = json.loads(request.body or b"null")
        except ValueError:
            raise SendgridError(400, "invalid JSON body") from None
        problems = validate(body, request_schema(self._spec, path, method), self._spec)
        if problems:
            raise SendgridError(
                400,
                "",
                errors=[
                    {"field": where or None, "message": message} for where, message in problems
                ],
            )
        assert isinstance(body, dict)
        return body


def main(argv: Sequence[str] | None = None) -> None:
    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--api-key", default="SG.test-key")
        parser.add_argument("--list-id", action="append", dest="list_ids")
        parser.add_argument("--job-delay", type=float, default=0.1)

    serve_main(
        lambda a: SendgridEmulator(
            port=a.port,
            api_key=a.api_key,
            job_delay=a.job_delay,
            list_ids=a.list_ids or (DEFAULT_LIST,),
        ),
        "Emulate SendGrid's Marketing Campaigns contacts API on 127.0.0.1.",
        argv,
        configure,
    )


if __name__ == "__main__":
    main()
