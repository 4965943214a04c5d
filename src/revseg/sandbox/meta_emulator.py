"""An emulator of Meta's customer-file Custom Audience edge, ``/{audience_id}/users``.

It checks requests as ``destinations/meta.md`` describes the API: an access token (Bearer
header or ``access_token`` parameter) and, when the app enforces it, ``appsecret_proof``;
``payload`` with a known schema, rows as long as the schema, hashed fields as 64 lowercase
hex digits, at most 10,000 rows; ``session`` rules (int ids, ``batch_seq`` from 1, nothing
after ``last_batch_flag``). Parameters may come form-encoded (JSON strings, as the SDK
posts), as a JSON body, or in the query string (as the SDK sends DELETE). It answers with
Graph's success and error shapes, keeps each audience as a set of rows (``frozenset`` of
``(FIELD, value)`` pairs, empty fields left out) and injects faults on request.

Written from the doc, independently of :mod:`revseg.destinations.meta`::

    with MetaEmulator() as emu:
        emu.throttle_next(code=17, regain_minutes=1)
        ... sync with base_url=emu.url, audience_id=emu.audience_id ...
        assert emu.values(emu.audience_id, "EMAIL") == {...}

As a process: ``python -m revseg.sandbox.meta_emulator --port N [--token T]``
(``GET /_audience/{id}`` returns an audience as JSON).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from revseg.sandbox import graph
from revseg.sandbox.emulator import Emulator, Fault, Reply, Request, reply, serve_main
from revseg.sandbox.graph import MATCH_KEYS, GraphError, error_body

Row = frozenset[tuple[str, str]]
VERSION = "v26.0"
_PATH = re.compile(r"/(v\d+\.\d+)/(\d+)/users")


@dataclass
class Session:
    method: str
    seqs: set[int] = field(default_factory=set)
    last_seq: int | None = None
    num_received: int = 0
    num_invalid_entries: int = 0


class MetaEmulator(Emulator):
    """Graph API ``/{audience_id}/users`` (POST adds, DELETE removes)."""

    service = "revseg-sandbox-meta"

    def __init__(
        self,
        *,
        access_token: str = "meta-test-token",
        app_secret: str | None = None,
        audiences: Sequence[str] = ("23851234567890123",),
        sample_limit: int = 10,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.access_token = access_token
        self.app_secret = app_secret
        self.sample_limit = sample_limit
        self.audiences: dict[str, set[Row]] = {a: set() for a in audiences}
        self.locked: set[str] = set()
        self.sessions: dict[tuple[str, int], Session] = {}
        #: values Meta is to count as invalid entries -> the reason it gives
        self.invalid_values: dict[str, str] = {}

    @property
    def url(self) -> str:
        """The ``base_url`` a destination uses (version path included)."""
        return f"{self.root}/{VERSION}"

    @property
    def audience_id(self) -> str:
        return next(iter(self.audiences))

    # -- programming and inspecting ---------------------------------------------------
    def audience(self, audience_id: str) -> set[Row]:
        with self.lock:
            return set(self.audiences[audience_id])

    def values(self, audience_id: str, key: str) -> set[str]:
        """Every value of one field (``EMAIL``, ``PHONE`` ...) held in an audience."""
        return {v for row in self.audience(audience_id) for k, v in row if k == key}

    def lock_audience(self, audience_id: str) -> None:
        """Flag an audience ``operation_status`` 471: edits fail with subcode 1713230."""
        self.locked.add(audience_id)

    def reject_values(self, *values: str, reason: str = "Invalid hashed value") -> None:
        """Count rows holding any of ``values`` as invalid entries (dropped, sampled)."""
        with self.lock:
            self.invalid_values.update(dict.fromkeys(values, reason))

    def fail_next(self, n: int = 1, *, status: int = 500, delay: float = 0.0) -> None:
        """Answer ``status`` (Graph's transient code 2 envelope) to the next ``n`` requests."""
        body = error_body(2, "Service temporarily unavailable", transient=True)
        self.inject(Fault(status, body, delay=delay), n)

    def throttle_next(
        self, n: int = 1, *, code: int = 17, regain_minutes: int = 0, status: int = 400
    ) -> None:
        """Throttle (code 17, 4 or 613) with the usage header Meta sends instead of Retry-After."""
        subcode, message = {
            17: (2446079, "User request limit reached"),
            4: (None, "Application request limit reached"),
            613: (
                1487742,
                "There have been too many calls from this ad-account. Wait a bit and try again.",
            ),
        }[code]
        usage = {
            "act_1": [
                {
                    "type": "custom_audience",
                    "call_count": 100,
                    "total_cputime": 30,
                    "total_time": 40,
                    "estimated_time_to_regain_access": regain_minutes,
                }
            ]
        }
        headers = {"x-business-use-case-usage": json.dumps(usage)}
        self.inject(Fault(status, error_body(code, message, subcode), headers), n)

    def delay_next(self, seconds: float, n: int = 1) -> None:
        """Process the next ``n`` requests only after ``seconds`` (past a client's timeout)."""
        self.inject(Fault(None, delay=seconds), n)

    # -- the API ---------------------------------------------------------------------
    def handle(self, request: Request) -> Reply:
        try:
            return reply(200, self._users(request))
        except GraphError as exc:
            return reply(exc.status, error_body(exc.code, str(exc), exc.subcode, exc.type))

    def _users(self, request: Request) -> dict[str, Any]:
        match = _PATH.fullmatch(request.path)
        if match is None or request.method not in ("POST", "DELETE"):
            raise GraphError(
                100, f"Unsupported {request.method.lower()} request.", 33, "GraphMethodException"
            )
        params = graph.params(request)
        self._authenticate(request, params)
        audience_id = match.group(2)
        if audience_id not in self.audiences:
            raise GraphError(
                100,
                f"Unsupported {request.method.lower()} request. Object with ID "
                f"'{audience_id}' does not exist",
                33,
                "GraphMethodException",
            )
        if audience_id in self.locked:
            raise GraphError(
                100,
                "Custom audience is being updated and cannot be edited (operation_status 471)",
                1713230,
            )
        schema, rows = graph.payload(params.get("payload"))
        with self.lock:
            session_id, session = self._session(audience_id, request.method, params.get("session"))
            invalid, samples, valid = self._check_rows(schema, rows)
            self._apply(audience_id, request.method, valid)
            if session is not None:
                session.num_received += len(rows)
                session.num_invalid_entries += invalid
        return {
            "audience_id": audience_id,
            "session_id": str(session_id),
            "num_received": len(rows),
            "num_invalid_entries": invalid,
            "invalid_entry_samples": samples,
        }

    def _authenticate(self, request: Request, params: dict[str, Any]) -> None:
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else params.get("access_token")
        if not token:
            raise GraphError(104, "An access token is required to request this resource.")
        if not hmac.compare_digest(str(token), self.access_token):
            raise GraphError(190, "Invalid OAuth access token - Cannot parse access token")
        if self.app_secret is not None:
            proof = params.get("appsecret_proof")
            if not proof:
                raise GraphError(
                    100,
                    "API calls from the server require an appsecret_proof argument",
                    type_="GraphMethodException",
                )
            expected = hmac.new(
                self.app_secret.encode(), self.access_token.encode(), hashlib.sha256
            ).hexdigest()
            if not hmac.compare_digest(str(proof), expected):
                raise GraphError(
                    100,
                    "Invalid appsecret_proof provided in the API argument",
                    type_="GraphMethodException",
                )

    def _session(self, audience_id: str, method: str, raw: Any) -> tuple[int, Session | None]:
        if raw is None:
            return secrets.randbelow(2**62) + 1, None
        value = graph.decode(raw, "session")
        value = value if isinstance(value, dict) else {}
        sid, seq, last = (
            value.get("session_id"),
            value.get("batch_seq"),
            value.get("last_batch_flag"),
        )
        total = value.get("estimated_num_total")
        if not (
            isinstance(sid, int)
            and graph.is_int(sid)
            and 0 < sid < 2**63
            and isinstance(seq, int)
            and graph.is_int(seq)
            and seq >= 1
            and isinstance(last, bool)
            and (total is None or (graph.is_int(total) and total >= 0))
        ):
            raise GraphError(
                100,
                "(#100) Invalid parameter session: session_id (int64), "
                "batch_seq (int >= 1) and last_batch_flag (bool) are required",
            )
        session = self.sessions.setdefault((audience_id, sid), Session(method))
        if session.method != method:
            raise GraphError(100, f"(#100) Session {sid} belongs to a {session.method} upload")
        if session.last_seq is not None and seq > session.last_seq and seq not in session.seqs:
            raise GraphError(100, f"(#100) Session {sid} already ended at batch {session.last_seq}")
        session.seqs.add(seq)
        if last:
            session.last_seq = seq if session.last_seq is None else max(seq, session.last_seq)
        return sid, session

    def _check_rows(
        self, schema: list[str], rows: list[list[str]]
    ) -> tuple[int, dict[str, str], list[Row]]:
        invalid, samples, valid = 0, dict[str, str](), list[Row]()
        for row in rows:
            bad = graph.row_problem(schema, row) or next(
                ((v, self.invalid_values[v]) for v in row if v in self.invalid_values), None
            )
            if bad is None:
                valid.append(frozenset((k, v) for k, v in zip(schema, row, strict=True) if v))
                continue
            invalid += 1
            if len(samples) < self.sample_limit:
                samples[bad[0]] = bad[1]
        return invalid, samples, valid

    def _apply(self, audience_id: str, method: str, rows: list[Row]) -> None:
        audience = self.audiences[audience_id]
        if method == "POST":
            audience.update(rows)
            return
        for gone in rows:
            keys = {(k, v) for k, v in gone if k in MATCH_KEYS}
            audience.difference_update({r for r in audience if r == gone or keys & r})

    def control(self, request: Request) -> Reply:
        audience_id = request.path.removeprefix("/_audience/")
        if request.method == "GET" and audience_id in self.audiences:
            return reply(200, [dict(row) for row in sorted(self.audience(audience_id), key=sorted)])
        return super().control(request)


def main(argv: Sequence[str] | None = None) -> None:
    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--token", default="meta-test-token", help="the valid access token")
        parser.add_argument("--audience", action="append", help="audience id (repeatable)")

    def make(args: argparse.Namespace) -> Emulator:
        return MetaEmulator(
            access_token=args.token,
            port=args.port,
            audiences=args.audience or ("23851234567890123",),
        )

    serve_main(make, (__doc__ or "").splitlines()[0], argv, configure)


if __name__ == "__main__":
    main()
