"""The ``meta`` destination: a customer-file Custom Audience, ``/{audience_id}/users``.

Each batch becomes at most two uploads of the multi-key ``payload`` (``destinations/meta.md``):
a ``DELETE`` of the removes, then a ``POST`` of the adds (removes first, so a hashed email
that leaves with one record and enters with another ends up in the audience). Every value
but ``EXTERN_ID``/``MADID`` is normalized and SHA-256 hashed here; the schema holds only
the fields some member of the upload has (unknown ones are ``""``).

Each upload is one ``session`` (``session_id`` derived from the run, the delivery and the
method, so a retry of the same request repeats the same ``batch_seq`` instead of opening a
new session) split into requests of at most 10,000 rows, ``last_batch_flag`` on the last.
The runner's batches are already capped at 10,000, so a session usually has one request.

Meta applies changes asynchronously, usually within 24 h (:data:`PROCESSING_LAG`): an
audience read right after a sync can lag it. Rows Meta finds invalid are dropped from an
otherwise accepted request (``num_invalid_entries``); those its ``invalid_entry_samples``
name are mapped back to their records as rejections, the rest can only be logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, ClassVar

import httpx
from pydantic import SecretStr, field_validator

from revseg.destinations import identifiers as ids
from revseg.destinations.api import HttpDestination
from revseg.destinations.audiences import AudienceOptions, numeric_id, unusable_reason
from revseg.destinations.base import (
    Batch,
    BatchResult,
    Capabilities,
    DeliverySettings,
    DestinationOptions,
)
from revseg.destinations.encoding import dumps
from revseg.destinations.http import Outcome, Verdict
from revseg.destinations.redact import redact_text

log = logging.getLogger("revseg.destinations.meta")

DEFAULT_BASE_URL = "https://graph.facebook.com/v26.0"
MAX_ROWS = 10_000
PROCESSING_LAG = timedelta(hours=24)
#: Graph error codes that mean "slow down" (user, application, ad-account request limits).
THROTTLING_CODES = frozenset({4, 17, 613})
#: Graph's generic temporary failures ("unknown error", "service temporarily unavailable").
TEMPORARY_CODES = frozenset({1, 2})
INVALID_TOKEN = 190
AUDIENCE_LOCKED = 1713230  # error_subcode: operation_status 471, membership edits refused

#: identifier kind -> (multi-key schema field, normalizer, hashed?), in schema order.
FIELDS: dict[str, tuple[str, Callable[[str], str | None], bool]] = {
    "external_id": ("EXTERN_ID", ids.normalize_external_id, False),
    "email": ("EMAIL", ids.normalize_email, True),
    "phone": ("PHONE", ids.normalize_phone, True),
    "gender": ("GEN", ids.normalize_gender, True),
    "birth_year": ("DOBY", ids.normalize_birth_year, True),
    "birth_month": ("DOBM", ids.normalize_birth_month, True),
    "birth_day": ("DOBD", ids.normalize_birth_day, True),
    "last_name": ("LN", ids.normalize_name, True),
    "first_name": ("FN", ids.normalize_name, True),
    "first_initial": ("FI", ids.normalize_first_initial, True),
    "city": ("CT", ids.normalize_city, True),
    "state": ("ST", ids.normalize_state, True),
    "zip": ("ZIP", ids.normalize_zip, True),
    "mobile_advertiser_id": ("MADID", ids.normalize_mobile_advertiser_id, False),
    "country": ("COUNTRY", ids.normalize_country, True),
}
SCHEMA_ORDER = tuple(key for key, _, _ in FIELDS.values())
#: fields that identify a person on their own; names only together (FN + LN).
MATCH_KEYS = frozenset({"EMAIL", "PHONE", "MADID", "EXTERN_ID"})
WANTS = "email, phone, mobile_advertiser_id, external_id, or first_name with last_name"

Row = dict[str, str]


def encode_identifiers(identifiers: Mapping[str, str]) -> tuple[Row, list[str]]:
    """The row of schema field -> value for one member, and the kinds that were unusable."""
    row: Row = {}
    bad: list[str] = []
    for kind, raw in identifiers.items():
        spec = FIELDS.get(kind)
        if spec is None:
            continue  # `validate` rejects kinds Meta does not know
        key, normalize, hashed = spec
        value = ids.hash_value(raw, normalize) if hashed else normalize(raw)
        if value is None:
            bad.append(kind)
        else:
            row[key] = value
    return row, bad


def matchable(row: Row) -> bool:
    """Whether Meta can match the row to a person."""
    return bool(MATCH_KEYS & row.keys()) or {"FN", "LN"} <= row.keys()


def session_id(batch: Batch, method: str) -> int:
    """A positive int64, the same on every retry of this delivery's ``method`` upload."""
    digest = hashlib.sha256(f"{batch.run_id}/{batch.seq}/{method}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1 or 1


def upload_bodies(rows: list[Row], session: int) -> list[dict[str, Any]]:
    """The JSON bodies of one upload: ``payload`` + ``session``, at most 10,000 rows each."""
    schema = [key for key in SCHEMA_ORDER if any(key in row for row in rows)]
    chunks = [rows[i : i + MAX_ROWS] for i in range(0, len(rows), MAX_ROWS)]
    return [
        {
            "payload": {"schema": schema, "data": [[r.get(k, "") for k in schema] for r in chunk]},
            "session": {
                "session_id": session,
                "batch_seq": seq,
                "last_batch_flag": seq == len(chunks),
                "estimated_num_total": len(rows),
            },
        }
        for seq, chunk in enumerate(chunks, 1)
    ]


def regain_seconds(headers: httpx.Headers) -> float | None:
    """Seconds until Meta lifts a throttle: the largest ``estimated_time_to_regain_access``
    (minutes) in ``X-Business-Use-Case-Usage``; None when absent or zero (then back off)."""
    try:
        usage = json.loads(headers.get("x-business-use-case-usage") or "{}")
        minutes = max(
            (
                float(e.get("estimated_time_to_regain_access") or 0)
                for entries in usage.values()
                for e in entries
                if isinstance(e, dict)
            ),
            default=0.0,
        )
    except (ValueError, TypeError, AttributeError):
        return None
    return minutes * 60 if minutes > 0 else None


class MetaOptions(AudienceOptions):
    """``options:`` of a meta destination."""

    audience_id: str
    base_url: str = DEFAULT_BASE_URL
    #: set when the app enforces ``appsecret_proof`` (HMAC-SHA256 of the token, keyed by it)
    app_secret: SecretStr | None = None

    @field_validator("audience_id", mode="before")
    @classmethod
    def _numeric(cls, value: object) -> str:
        return numeric_id(str(value) if isinstance(value, int) else value, "audience_id")  # type: ignore[arg-type]


class MetaDestination(HttpDestination):
    """Adds (POST) and removes (DELETE) hashed customer-file rows of one Custom Audience."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        processing_lag=PROCESSING_LAG,
        modes=frozenset({"mirror", "upsert"}),
        max_batch_size=MAX_ROWS,
        identifier_kinds=frozenset(FIELDS),
        hashed_identifiers=frozenset(k for k, (_, _, hashed) in FIELDS.items() if hashed),
        requires_identifier=True,
        # the API has no "update": changed traits mean nothing to an audience of hashes
        supports_update=False,
    )
    Options: ClassVar[type[DestinationOptions]] = MetaOptions

    def __init__(self, name: str, options: DestinationOptions, settings: DeliverySettings) -> None:
        if not isinstance(options, MetaOptions):
            raise TypeError(f"expected MetaOptions, got {type(options).__name__}")
        super().__init__(name, options, settings)
        self.meta = options

    def timeout(self) -> float:
        return self.meta.timeout.total_seconds()

    def headers(self) -> dict[str, str]:
        # a header, not the access_token parameter: tokens in URLs end up in proxy logs
        return {"authorization": f"Bearer {self.meta.access_token.get_secret_value()}"}

    def params(self) -> dict[str, str]:
        if self.meta.app_secret is None:
            return {}
        key = self.meta.app_secret.get_secret_value().encode()
        token = self.meta.access_token.get_secret_value().encode()
        return {"appsecret_proof": hmac.new(key, token, hashlib.sha256).hexdigest()}

    def send(self, batch: Batch) -> BatchResult:
        rejected: dict[str, str] = {}
        uploads: dict[str, list[tuple[str, Row]]] = {"DELETE": [], "POST": []}
        for op in batch.operations:
            row, bad = encode_identifiers(op.identifiers)
            if matchable(row):
                uploads["DELETE" if op.op == "remove" else "POST"].append((op.id, row))
            elif op.op != "remove":
                rejected[op.id] = unusable_reason("Meta", bad, WANTS)
            # a remove without a matchable row was never added (the add was rejected for
            # the same reason): there is nothing to remove, so it is acknowledged.
        for method, entries in uploads.items():
            if entries:
                rejected.update(self._upload(batch, method, entries))
        return BatchResult(rejected)

    def _upload(self, batch: Batch, method: str, entries: list[tuple[str, Row]]) -> dict[str, str]:
        rejected: dict[str, str] = {}
        bodies = upload_bodies([row for _, row in entries], session_id(batch, method))
        for number, body in enumerate(bodies):
            chunk = entries[number * MAX_ROWS : (number + 1) * MAX_ROWS]
            response = self.http.request(
                method,
                f"{self.meta.audience_id}/users",
                content=dumps(body),
                headers={"content-type": "application/json"},
                params=self.params(),
            )
            rejected.update(self._invalid_entries(response, chunk, body["payload"]["schema"]))
        return rejected

    def _invalid_entries(
        self, response: httpx.Response, chunk: list[tuple[str, Row]], schema: list[str]
    ) -> dict[str, str]:
        """Records named by ``invalid_entry_samples``, at most ``num_invalid_entries`` of them."""
        try:
            answer = response.json()
            invalid = int(answer.get("num_invalid_entries") or 0)
            samples = dict(answer.get("invalid_entry_samples") or {})
        except (ValueError, TypeError, AttributeError):
            log.warning(
                "%s: unreadable answer to an accepted upload; counted as applied", self.name
            )
            return {}
        rejected: dict[str, str] = {}
        for record_id, row in chunk:
            if len(rejected) >= invalid:
                break
            cells = [row.get(k, "") for k in schema]
            keys = {*row.values(), json.dumps(cells), ",".join(cells)}
            reason = next((str(samples[k]) for k in keys if k in samples), None)
            if reason is not None:
                rejected[record_id] = f"Meta counted the entry invalid: {reason}"
        if invalid > len(rejected):
            log.warning(
                "%s: Meta dropped %d invalid entries it did not name (of %d sent)",
                self.name,
                invalid - len(rejected),
                len(chunk),
            )
        return rejected

    def classify_response(self, response: httpx.Response) -> Verdict | None:
        """Graph's error envelope: throttling codes are transient even in a 400."""
        try:
            error = response.json().get("error")
            code, subcode = int(error.get("code")), error.get("error_subcode")
        except (ValueError, TypeError, AttributeError):
            return None
        message = redact_text(str(error.get("message", "")), self.secret_values())
        reason = f"HTTP {response.status_code}, Graph error {code}"
        reason += f"/{subcode}" if subcode else ""
        reason += f": {message} (fbtrace_id {error.get('fbtrace_id', '-')})"
        if code in THROTTLING_CODES:
            return Verdict(Outcome.TRANSIENT, reason, regain_seconds(response.headers))
        if code in TEMPORARY_CODES or error.get("is_transient") is True:
            return Verdict(Outcome.TRANSIENT, reason)
        if code == INVALID_TOKEN:
            return Verdict(Outcome.TERMINAL, f"{reason}; the access token is invalid or expired")
        if subcode == AUDIENCE_LOCKED:
            return Verdict(Outcome.TERMINAL, f"{reason}; the audience does not accept edits now")
        outcome = Outcome.TRANSIENT if response.status_code >= 500 else Outcome.TERMINAL
        return Verdict(outcome, reason)
