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

All that needs no network (hashing each identifier kind as a column, building the rows,
serializing the bodies) is :meth:`MetaDestination.encode`, which the runner calls for the
next batch while one is in flight; ``send`` only posts the bodies and reads the answers.

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
from collections.abc import Callable
from dataclasses import dataclass, replace
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
from revseg.destinations.columns import OperationColumns
from revseg.destinations.encoding import dumps
from revseg.destinations.hashing import hash_column
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

#: schema field -> one cell per operation of the batch (None: the member has none)
Columns = dict[str, list["str | None"]]


def encode_columns(operations: OperationColumns) -> Columns:
    """The batch's identifiers as schema columns, normalized and hashed a column at a time
    (:func:`revseg.destinations.hashing.hash_column`)."""
    columns: Columns = {}
    for kind, (key, normalize, hashed) in FIELDS.items():
        values = operations.identifiers.get(kind)
        if values is None:
            continue  # `validate` rejects kinds Meta does not know
        if hashed:
            columns[key] = hash_column(values, normalize)
        else:
            columns[key] = [None if v is None else normalize(v) for v in values]
    return columns


def matchable_rows(columns: Columns, size: int) -> list[bool]:
    """Whether Meta can match each row to a person: a match key, or both names."""
    matchable = [False] * size
    for key in MATCH_KEYS & columns.keys():
        matchable = [m or v is not None for m, v in zip(matchable, columns[key], strict=True)]
    if "FN" in columns and "LN" in columns:
        names = zip(matchable, columns["FN"], columns["LN"], strict=True)
        matchable = [m or (f is not None and last is not None) for m, f, last in names]
    return matchable


def session_id(batch: Batch, method: str) -> int:
    """A positive int64, the same on every retry of this delivery's ``method`` upload."""
    digest = hashlib.sha256(f"{batch.run_id}/{batch.seq}/{method}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1 or 1


def upload_rows(columns: Columns, rows: list[int]) -> tuple[list[str], list[tuple[str, ...]]]:
    """The schema (fields some of these rows have, in Meta's order) and their cells."""
    schema = [
        key
        for key in SCHEMA_ORDER
        if key in columns and any(columns[key][i] is not None for i in rows)
    ]
    cells = [[columns[key][i] or "" for i in rows] for key in schema]
    return schema, list(zip(*cells, strict=True))


def upload_bodies(
    schema: list[str], data: list[tuple[str, ...]], session: int
) -> list[dict[str, Any]]:
    """The JSON bodies of one upload: ``payload`` + ``session``, at most 10,000 rows each."""
    chunks = [data[i : i + MAX_ROWS] for i in range(0, len(data), MAX_ROWS)]
    return [
        {
            "payload": {"schema": schema, "data": chunk},
            "session": {
                "session_id": session,
                "batch_seq": seq,
                "last_batch_flag": seq == len(chunks),
                "estimated_num_total": len(data),
            },
        }
        for seq, chunk in enumerate(chunks, 1)
    ]


@dataclass(frozen=True)
class Upload:
    """One request: its method, its serialized body, and the record and row of each entry
    (to map the entries Meta counts invalid back to records)."""

    method: str
    body: bytes
    record_ids: list[str]
    data: list[tuple[str, ...]]


@dataclass(frozen=True)
class Uploads:
    """A batch ready to send: its requests, removes first, and the records no row could be
    built for (id -> reason)."""

    requests: list[Upload]
    rejected: dict[str, str]


def encode_uploads(batch: Batch) -> Uploads:
    """The batch's requests, identifiers hashed and bodies serialized: all the work of a
    batch that needs no network."""
    operations = OperationColumns.of(batch.operations)
    columns = encode_columns(operations)
    rejected: dict[str, str] = {}
    uploads: dict[str, list[int]] = {"DELETE": [], "POST": []}
    matchable = matchable_rows(columns, len(operations))
    for i, (op, ok) in enumerate(zip(operations.op, matchable, strict=True)):
        if ok:
            uploads["DELETE" if op == "remove" else "POST"].append(i)
        elif op != "remove":
            rejected[operations.id[i]] = unusable_reason("Meta", unusable_kinds(operations, columns, i), WANTS)
        # a remove without a matchable row was never added (the add was rejected for
        # the same reason): there is nothing to remove, so it is acknowledged.
    requests: list[Upload] = []
    for method, rows in uploads.items():
        if not rows:
            continue
        schema, data = upload_rows(columns, rows)
        record_ids = [operations.id[i] for i in rows]
        for number, body in enumerate(upload_bodies(schema, data, session_id(batch, method))):
            window = slice(number * MAX_ROWS, (number + 1) * MAX_ROWS)
            requests.append(Upload(method, dumps(body), record_ids[window], data[window]))
    return Uploads(requests, rejected)


def unusable_kinds(operations: OperationColumns, columns: Columns, i: int) -> list[str]:
    """The kinds operation ``i`` has a value of that did not normalize."""
    return [
        kind
        for kind, (key, _, _) in FIELDS.items()
        if (values := operations.identifiers.get(kind)) is not None
        and values[i] is not None
        and columns[key][i] is None
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

    def encode(self, batch: Batch) -> Batch:
        """The batch's requests built (hashed, serialized) while the previous one is in flight."""
        return replace(batch, encoded=encode_uploads(batch))

    def send(self, batch: Batch) -> BatchResult:
        uploads = batch.encoded if isinstance(batch.encoded, Uploads) else encode_uploads(batch)
        rejected = dict(uploads.rejected)
        for upload in uploads.requests:
            response = self.http.request(
                upload.method,
                f"{self.meta.audience_id}/users",
                content=upload.body,
                headers={"content-type": "application/json"},
                params=self.params(),
            )
            rejected.update(self._invalid_entries(response, upload.record_ids, upload.data))
        return BatchResult(rejected)

    def _invalid_entries(
        self, response: httpx.Response, record_ids: list[str], data: list[tuple[str, ...]]
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
        for record_id, cells in zip(record_ids, data, strict=True):
            if len(rejected) >= invalid:
                break
            keys = {*(c for c in cells if c), json.dumps(list(cells)), ",".join(cells)}
            reason = next((str(samples[k]) for k in keys if k in samples), None)
            if reason is not None:
                rejected[record_id] = f"Meta counted the entry invalid: {reason}"
        if invalid > len(rejected):
            log.warning(
                "%s: Meta dropped %d invalid entries it did not name (of %d sent)",
                self.name,
                invalid - len(rejected),
                len(data),
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
