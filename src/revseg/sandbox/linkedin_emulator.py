"""An emulator of LinkedIn's DMP segment users endpoint, ``/rest/dmpSegments/{id}/users``.

It checks requests as ``destinations/linkedin.md`` describes the API: ``Authorization:
Bearer``, an active ``LinkedIn-Version`` (426 ``NONEXISTENT_VERSION`` otherwise),
``X-Restli-Protocol-Version: 2.0.0``, a JSON body; with ``X-RestLi-Method: BATCH_CREATE``
an ``{"elements": [...]}`` body of at most 5,000 elements, each validated on its own (an
``action``, ``userIds`` whose ``SHA256_EMAIL`` values are 64 lowercase hex digits, or first
and last name when there is no id; unknown fields refused, as Rest.li does), answered with
one status per element in order. It keeps each segment as a set of members (``frozenset``
of ``(idType or hint field, value)`` pairs) and injects faults on request.

Written from the doc, independently of :mod:`revseg.destinations.linkedin`::

    with LinkedInEmulator() as emu:
        emu.fail_next(status=429)
        ... sync with base_url=emu.url, segment_id=emu.segment_id ...
        assert emu.hashed_emails(emu.segment_id) == {...}

As a process: ``python -m revseg.sandbox.linkedin_emulator --port N [--token T]``
(``GET /_segment/{id}`` returns a segment's members as JSON).
"""

from __future__ import annotations

import argparse
import hmac
import json
import re
from collections.abc import Sequence
from typing import Any

from revseg.sandbox.emulator import Emulator, Fault, Reply, Request, reply, serve_main

Member = frozenset[tuple[str, str]]
MAX_ELEMENTS = 5_000
ID_FORMATS = {
    "SHA256_EMAIL": re.compile(r"[0-9a-f]{64}"),
    "SHA512_EMAIL": re.compile(r"[0-9a-f]{128}"),
    "GOOGLE_AID": re.compile(
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    ),
}
HINTS = ("firstName", "lastName", "title", "company", "country")
_PATH = re.compile(r"/rest/dmpSegments/(\d+)/users")


class RequestError(Exception):
    """A request-level error: ``{"message", "serviceErrorCode", "status"}``."""

    def __init__(
        self, status: int, message: str, code: str | None = None, service_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.service_code = status, code, service_code

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": str(self), "status": self.status}
        if self.service_code is not None:
            body["serviceErrorCode"] = self.service_code
        if self.code is not None:
            body["code"] = self.code
        return body


class LinkedInEmulator(Emulator):
    """DMP segment users: ``BATCH_CREATE`` (and single-element) ADD/REMOVE."""

    service = "revseg-sandbox-linkedin"

    def __init__(
        self,
        *,
        access_token: str = "linkedin-test-token",
        segments: Sequence[str] = ("10001",),
        oldest_version: str = "202505",
        newest_version: str = "202612",
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.access_token = access_token
        self.versions = (oldest_version, newest_version)
        self.segments: dict[str, set[Member]] = {s: set() for s in segments}
        #: userId values whose elements fail: value -> (element status, message)
        self.rejected_ids: dict[str, tuple[int, str]] = {}

    @property
    def url(self) -> str:
        """The ``base_url`` a destination uses."""
        return f"{self.root}/rest"

    @property
    def segment_id(self) -> str:
        return next(iter(self.segments))

    # -- programming and inspecting ---------------------------------------------------
    def members(self, segment_id: str) -> set[Member]:
        with self.lock:
            return set(self.segments[segment_id])

    def hashed_emails(self, segment_id: str) -> set[str]:
        return {v for m in self.members(segment_id) for k, v in m if k == "SHA256_EMAIL"}

    def reject_ids(self, *values: str, status: int = 400, message: str = "Invalid user id") -> None:
        """Fail (per element) every element carrying one of these ``idValue``s."""
        with self.lock:
            self.rejected_ids.update(dict.fromkeys(values, (status, message)))

    def fail_next(self, n: int = 1, *, status: int = 500, delay: float = 0.0) -> None:
        """Answer ``status`` (429: throttled, no Retry-After, as LinkedIn does) ``n`` times."""
        message = "Too Many Requests" if status == 429 else "Internal Server Error"
        self.inject(Fault(status, {"message": message, "status": status}, delay=delay), n)

    def delay_next(self, seconds: float, n: int = 1) -> None:
        """Process the next ``n`` requests only after ``seconds`` (past a client's timeout)."""
        self.inject(Fault(None, delay=seconds), n)

    # -- the API ---------------------------------------------------------------------
    def handle(self, request: Request) -> Reply:
        try:
            return self._users(request)
        except RequestError as exc:
            return reply(exc.status, exc.body())

    def _users(self, request: Request) -> Reply:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer ") or not header[7:].strip():
            raise RequestError(401, "Empty oauth2_access_token", service_code=401)
        if not hmac.compare_digest(header[7:].strip(), self.access_token):
            raise RequestError(401, "Invalid access token", service_code=65600)
        version = request.headers.get("linkedin-version", "")
        if not (
            re.fullmatch(r"\d{6}", version) and self.versions[0] <= version <= self.versions[1]
        ):
            raise RequestError(
                426,
                f"Requested version {version or '(none)'} is not active",
                code="NONEXISTENT_VERSION",
            )
        if request.headers.get("x-restli-protocol-version") != "2.0.0":
            raise RequestError(400, "X-Restli-Protocol-Version 2.0.0 is required")
        match = _PATH.fullmatch(request.path)
        if match is None or match.group(1) not in self.segments:
            raise RequestError(404, f"Not found: {request.path}", service_code=404)
        if request.method != "POST":
            raise RequestError(405, f"Method {request.method} not allowed")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise RequestError(415, "Content-Type must be application/json")
        try:
            body = json.loads(request.body)
        except ValueError:
            raise RequestError(400, "Malformed JSON body") from None
        segment = match.group(1)
        if request.headers.get("x-restli-method", "").upper() == "BATCH_CREATE":
            elements = body.get("elements") if isinstance(body, dict) else None
            if not isinstance(elements, list) or not elements:
                raise RequestError(400, "elements must be a non-empty array")
            if len(elements) > MAX_ELEMENTS:
                raise RequestError(400, f"Too many elements: at most {MAX_ELEMENTS} per batch")
            with self.lock:
                results = [self._element(segment, e) for e in elements]
            return reply(200, {"elements": results})
        with self.lock:
            result = self._element(segment, body)
        if result["status"] != 201:
            raise RequestError(result["status"], result["error"]["message"])
        return 201, {}, b""

    def _element(self, segment: str, item: Any) -> dict[str, Any]:
        """Apply one element; its Rest.li batch result."""
        problem = _problem(item)
        if problem is None:
            for user_id in item["userIds"]:
                if user_id["idValue"] in self.rejected_ids:
                    status, problem = self.rejected_ids[user_id["idValue"]]
                    return {"status": status, "error": {"message": problem, "status": status}}
        if problem is not None:
            return {"status": 400, "error": {"message": problem, "status": 400}}
        ids = {(u["idType"], u["idValue"]) for u in item["userIds"]}
        member = frozenset(ids | {(k, item[k]) for k in HINTS if k in item})
        members = self.segments[segment]
        if item["action"] == "ADD":
            members.add(member)
        else:
            # ids match a person; without ids only the very same names and hints do
            members.difference_update(
                {m for m in members if (ids & m) or (not ids and m == member)}
            )
        return {"status": 201}

    def control(self, request: Request) -> Reply:
        segment = request.path.removeprefix("/_segment/")
        if request.method == "GET" and segment in self.segments:
            return reply(200, [dict(m) for m in sorted(self.members(segment), key=sorted)])
        return super().control(request)


def _problem(item: Any) -> str | None:
    """Why one element is invalid, or None."""
    if not isinstance(item, dict):
        return "element must be an object"
    unknown = set(item) - {"action", "userIds", *HINTS}
    if unknown:
        return f"Unrecognized field(s): {', '.join(sorted(unknown))}"
    if item.get("action") not in ("ADD", "REMOVE"):
        return "action must be ADD or REMOVE"
    user_ids = item.get("userIds")
    if not isinstance(user_ids, list):
        return "userIds must be an array"
    for user_id in user_ids:
        if not isinstance(user_id, dict) or set(user_id) != {"idType", "idValue"}:
            return "each userId must be {idType, idValue}"
        pattern = ID_FORMATS.get(user_id["idType"])
        if pattern is None:
            return f"Unsupported idType {user_id['idType']!r}"
        if not isinstance(user_id["idValue"], str) or not pattern.fullmatch(user_id["idValue"]):
            return f"Invalid idValue for {user_id['idType']}"
    if any(not isinstance(item[k], str) for k in HINTS if k in item):
        return "firstName, lastName, title, company and country must be strings"
    if not user_ids and not (item.get("firstName") and item.get("lastName")):
        return "firstName and lastName are required when no userIds are given"
    return None


def main(argv: Sequence[str] | None = None) -> None:
    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--token", default="linkedin-test-token", help="the valid token")
        parser.add_argument("--segment", action="append", help="segment id (repeatable)")

    def make(args: argparse.Namespace) -> Emulator:
        return LinkedInEmulator(
            access_token=args.token, port=args.port, segments=args.segment or ("10001",)
        )

    serve_main(make, (__doc__ or "").splitlines()[0], argv, configure)


if __name__ == "__main__":
    main()
