"""An emulator of Klaviyo's list and bulk profile import API (JSON:API), for tests and the
sandbox.

It checks requests as ``destinations/klaviyo.md`` and Klaviyo's OpenAPI document
(``schemas/klaviyo.json``) describe them: ``Authorization: Klaviyo-API-Key <key>`` (or
``Bearer <token>`` when an OAuth token is set); a ``revision: YYYY-MM-DD`` header on every
call; ``Content-Type: application/vnd.api+json`` bodies valid against the operation's
schema (``profile-bulk-import-job``, ``profile`` and ``list`` resource types ...); at most
10,000 profiles and 5 MB per import job, 1,000 profiles per list relationship call,
``page[size]`` 1..100; known lists and profile ids. Errors are JSON:API ``errors`` arrays.

Import jobs are applied ``job_delay`` seconds after they are accepted (:mod:`klaviyo_store`);
invalid rows (bad email or phone, or addresses made to fail with :meth:`reject_emails`)
become import errors. Responses other than 429 carry ``RateLimit-Limit/Remaining/Reset``;
with ``burst=n`` more than ``n`` requests in one second get 429 ``throttled`` with
``Retry-After``.

Written from the doc, independently of :mod:`revseg.destinations.klaviyo`::

    with KlaviyoEmulator() as emu:
        ... sync with base_url=emu.url, list_id=emu.list_id, api_key=emu.api_key ...
        assert emu.members(emu.list_id) == {"ann@example.com"}

As a process: ``python -m revseg.sandbox.klaviyo_emulator --port N [--api-key K]``
(``GET /_list/{id}`` returns a list's member addresses as JSON).
"""

from __future__ import annotations

import argparse
import hmac
import math
import re
import threading
import time
from collections.abc import Sequence
from typing import Any

from revseg.sandbox.emulator import Emulator, Fault, Reply, Request, serve_main
from revseg.sandbox.klaviyo_store import DEFAULT_LIST, IDENTIFIERS, ProfileStore
from revseg.sandbox.klaviyo_wire import (
    MEDIA,
    KlaviyoError,
    email_filter,
    error_document,
    json_document,
    jsonapi,
    page,
)
from revseg.sandbox.openapi import load_spec

MAX_PROFILES = 10_000
MAX_RELATIONSHIPS = 1_000
_REVISION = re.compile(r"\d{4}-\d{2}-\d{2}(\.pre)?")
_JOB = re.compile(r"/api/profile-bulk-import-jobs/([^/]+)")
_ERRORS = re.compile(r"/api/profile-bulk-import-jobs/([^/]+)/import-errors")
_RELATIONSHIP = re.compile(r"/api/lists/([^/]+)/relationships/profiles")


class KlaviyoEmulator(Emulator):
    """Klaviyo's profile bulk import jobs, profile lookup and list relationships."""

    service = "klaviyo"

    def __init__(
        self,
        *,
        port: int = 0,
        api_key: str = "pk_test_0123456789abcdef",
        oauth_token: str | None = None,
        list_ids: Sequence[str] = (DEFAULT_LIST,),
        job_delay: float = 0.1,
        burst: int | None = None,
    ) -> None:
        super().__init__(port=port)
        self.api_key = api_key
        self.oauth_token = oauth_token
        self.store = ProfileStore(list(list_ids), job_delay)
        self.burst = burst
        self._second = (0, 0)  # (second, requests in it)
        self._rate_lock = threading.Lock()
        self._spec = load_spec("klaviyo")

    @property
    def url(self) -> str:
        """The ``base_url`` a destination uses (Klaviyo's host; paths start with /api)."""
        return self.root

    @property
    def list_id(self) -> str:
        return next(iter(self.store.lists))

    # -- programming and inspecting ---------------------------------------------------
    def members(self, list_id: str | None = None) -> set[str]:
        """The addresses on a list (lower case), once every due job has been applied."""
        with self.lock:
            return self.store.members(list_id or self.list_id)

    def profile(self, email: str) -> dict[str, Any]:
        with self.lock:
            return self.store.profile(email)

    def reject_emails(self, *emails: str, detail: str = "This profile is suppressed.") -> None:
        """Make import jobs refuse these addresses (an import error each)."""
        with self.lock:
            self.store.poisoned.update((e.lower(), detail) for e in emails)

    def settle(self) -> None:
        with self.lock:
            self.store.settle(force=True)

    def fail_next(
        self, n: int = 1, *, status: int = 500, delay: float = 0.0, retry_after: int = 1
    ) -> None:
        """Answer ``status`` with Klaviyo's error body; a 429 carries ``Retry-After``."""
        detail = "A server error occurred."
        headers: dict[str, str] = {}
        if status == 429:
            detail = f"Request was throttled. Expected available in {retry_after} second."
            headers = {"Retry-After": str(retry_after)}
        document = error_document(status, detail)
        self.inject(Fault(status, document, {"content-type": MEDIA, **headers}, delay), n)

    def delay_next(self, seconds: float, n: int = 1) -> None:
        """Process the next ``n`` requests only after ``seconds`` (past a client's timeout)."""
        self.inject(Fault(None, delay=seconds), n)

    # -- the API ---------------------------------------------------------------------
    def handle(self, request: Request) -> Reply:
        throttled, headers = self._count()
        try:
            if throttled:
                detail = "Request was throttled. Expected available in 1 second."
                return jsonapi(429, error_document(429, detail), {"Retry-After": "1"})
            status, document = self._route(request)
        except KlaviyoError as exc:
            status, document = exc.status, error_document(exc.status, str(exc), exc.source)
        return jsonapi(status, document, headers)

    def control(self, request: Request) -> Reply:
        match = re.fullmatch(r"/_list/([^/]+)", request.path)
        if request.method == "GET" and match and match.group(1) in self.store.lists:
            members = sorted(self.members(match.group(1)))
            return jsonapi(200, {"id": match.group(1), "members": members})
        return super().control(request)

    def _count(self) -> tuple[bool, dict[str, str]]:
        """A fixed one-second burst window; steady-window headers as Klaviyo sends them."""
        second = int(time.time())
        with self._rate_lock:
            start, used = self._second
            used = used + 1 if start == second else 1
            self._second = (second, used)
        if self.burst is not None and used > self.burst:
            return True, {}
        limit = 150
        return False, {
            "RateLimit-Limit": str(limit),
            "RateLimit-Remaining": str(max(0, limit - used)),
            "RateLimit-Reset": str(max(1, math.ceil(60 - time.time() % 60))),
        }

    def _authenticate(self, request: Request) -> None:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        expected = {"Klaviyo-API-Key": self.api_key, "Bearer": self.oauth_token}.get(scheme)
        if not credential:
            raise KlaviyoError(401, "Authentication credentials were not provided.")
        if not expected or not hmac.compare_digest(credential.encode(), expected.encode()):
            raise KlaviyoError(401, "Incorrect authentication credentials.")
        revision = request.headers.get("revision")
        if revision is None:
            raise KlaviyoError(400, "The 'revision' header is required.", parameter="revision")
        if not _REVISION.fullmatch(revision):
            raise KlaviyoError(400, f"Invalid revision '{revision}'.", parameter="revision")

    def _route(self, request: Request) -> tuple[int, Any]:
        self._authenticate(request)
        method, path = request.method, request.path.rstrip("/")
        with self.lock:
            self.store.settle()
            if path == "/api/profile-bulk-import-jobs" and method == "POST":
                return self._import(request)
            if path == "/api/profiles" and method == "GET":
                return self._profiles(request)
            match = _ERRORS.fullmatch(path)
            if match and method == "GET":
                job = self._job(match.group(1))
                return self._page(request, job.errors, f"{path}/")
            match = _JOB.fullmatch(path)
            if match and method == "GET":
                job = self._job(match.group(1))
                return 200, {"data": self.store.view(job, self.root)}
            match = _RELATIONSHIP.fullmatch(path)
            if match and method in ("POST", "DELETE"):
                return self._relationship(request, match.group(1))
        raise KlaviyoError(404, f"{method} {request.path} is not an endpoint")

    def _job(self, job_id: str) -> Any:
        if job_id not in self.store.jobs:
            raise KlaviyoError(404, f"Bulk import job {job_id} was not found.", parameter="id")
        return self.store.jobs[job_id]

    def _body(self, request: Request, path: str) -> dict[str, Any]:
        return json_document(request, self._spec, path)

    def _import(self, request: Request) -> tuple[int, Any]:
        body = self._body(request, "/api/profile-bulk-import-jobs")
        data = body["data"]
        profiles = data["attributes"]["profiles"]["data"]
        if len(profiles) > MAX_PROFILES:
            raise KlaviyoError(
                400, "At most 10000 profiles per job.", "/data/attributes/profiles/data"
            )
        for index, profile in enumerate(profiles):
            if not any((profile.get("attributes") or {}).get(k) for k in IDENTIFIERS):
                pointer = f"/data/attributes/profiles/data/{index}/attributes"
                raise KlaviyoError(
                    400, "A profile needs an email, phone_number or external_id.", pointer
                )
        lists = [
            i["id"] for i in ((data.get("relationships") or {}).get("lists") or {}).get("data", [])
        ]
        for index, list_id in enumerate(lists):
            if list_id not in self.store.lists:
                pointer = f"/data/relationships/lists/data/{index}/id"
                raise KlaviyoError(404, f"List {list_id} does not exist.", pointer)
        job = self.store.submit(profiles, lists)
        return 202, {"data": self.store.view(job, self.root)}

    def _profiles(self, request: Request) -> tuple[int, Any]:
        emails = email_filter(request.param("filter"))
        found = self.store.search(emails)
        fields = request.param("fields[profile]")
        if fields:
            keep = set(fields.split(","))
            for item in found:
                item["attributes"] = {k: v for k, v in item["attributes"].items() if k in keep}
        return self._page(request, found, "/api/profiles")

    def _page(self, request: Request, items: list[dict[str, Any]], path: str) -> tuple[int, Any]:
        return 200, page(
            items, request.param("page[size]"), request.param("page[cursor]"), f"{self.root}{path}"
        )

    def _relationship(self, request: Request, list_id: str) -> tuple[int, Any]:
        path = "/api/lists/{id}/relationships/profiles"
        ids = [item["id"] for item in self._body(request, path)["data"]]
        if list_id not in self.store.lists:
            raise KlaviyoError(404, f"List {list_id} does not exist.", parameter="id")
        if len(ids) > MAX_RELATIONSHIPS:
            raise KlaviyoError(400, "At most 1000 profiles per request.", "/data")
        for index, profile_id in enumerate(ids):
            if profile_id not in self.store.profiles:
                raise KlaviyoError(
                    400, f"Profile {profile_id} does not exist.", f"/data/{index}/id"
                )
        members = self.store.lists[list_id]
        if request.method == "POST":
            members.update(ids)
        else:
            members.difference_update(ids)
        return 204, None


def main(argv: Sequence[str] | None = None) -> None:
    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--api-key", default="pk_test_0123456789abcdef")
        parser.add_argument("--list-id", action="append", dest="list_ids")
        parser.add_argument("--job-delay", type=float, default=0.1)

    serve_main(
        lambda a: KlaviyoEmulator(
            port=a.port,
            api_key=a.api_key,
            list_ids=a.list_ids or (DEFAULT_LIST,),
            job_delay=a.job_delay,
        ),
        "Emulate Klaviyo's list and bulk profile import API on 127.0.0.1.",
        argv,
        configure,
    )


if __name__ == "__main__":
    main()
