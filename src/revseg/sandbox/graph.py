"""Graph API conventions the Meta emulator checks, written from ``destinations/meta.md``:
the error envelope, parameters (query string, form-encoded JSON strings, or a JSON body),
and the customer-file ``payload`` (single-key or multi-key schema, rows of strings).

Kept apart from the ``/users`` edge in :mod:`revseg.sandbox.meta_emulator` so that module
holds only audience and session behaviour.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any
from urllib.parse import parse_qs

from revseg.sandbox.emulator import Request

MAX_ROWS = 10_000
#: multi-key schema fields, as the SDK's ``CustomAudience.Schema.MultiKeySchema`` lists them
MULTI_KEY = tuple(
    "EXTERN_ID EMAIL PHONE GEN DOBY DOBM DOBD LN FN FI CT ST ZIP MADID COUNTRY APPUID"
    " LOOKALIKE_VALUE DATA_PROCESSING_OPTIONS".split()
)
SINGLE_KEY = {"EMAIL_SHA256": "EMAIL", "PHONE_SHA256": "PHONE", "MOBILE_ADVERTISER_ID": "MADID"}
UNHASHED = frozenset({"EXTERN_ID", "MADID", "APPUID", "LOOKALIKE_VALUE", "DATA_PROCESSING_OPTIONS"})
MATCH_KEYS = frozenset({"EMAIL", "PHONE", "MADID", "EXTERN_ID"})
_HEX64 = re.compile(r"[0-9a-f]{64}")


class GraphError(Exception):
    """A request-level error, answered with Graph's error envelope."""

    def __init__(
        self,
        code: int,
        message: str,
        subcode: int | None = None,
        type_: str = "OAuthException",
        status: int = 400,
    ) -> None:
        super().__init__(message)
        self.code, self.subcode, self.type, self.status = code, subcode, type_, status


def error_body(
    code: int,
    message: str,
    subcode: int | None = None,
    type_: str = "OAuthException",
    transient: bool = False,
) -> dict[str, Any]:
    """``{"error": {message, type, code, error_subcode?, is_transient?, fbtrace_id}}``."""
    error: dict[str, Any] = {"message": message, "type": type_, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    if transient:
        error["is_transient"] = True
    error["fbtrace_id"] = secrets.token_urlsafe(9)
    return {"error": error}


def row_problem(schema: list[str], row: list[str]) -> tuple[str, str] | None:
    """The (sample key, reason) that makes a row invalid, or None."""
    if not any(row):
        return json.dumps(row), "Empty row: no identifier"
    for key, value in zip(schema, row, strict=True):
        if value and key not in UNHASHED and not _HEX64.fullmatch(value):
            return value, f"Invalid {key}: expected a SHA-256 hash (64 lowercase hex digits)"
    return None


def params(request: Request) -> dict[str, Any]:
    """Query parameters, then a form or JSON body (body wins), last value of each."""
    params: dict[str, Any] = {k: v[-1] for k, v in request.query.items()}
    if not request.body:
        return params
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if kind == "application/json":
            document = json.loads(request.body)
            if not isinstance(document, dict):
                raise ValueError("not an object")
            params.update(document)
        else:
            form = parse_qs(
                request.body.decode("utf-8"), keep_blank_values=True, strict_parsing=True
            )
            params.update({k: v[-1] for k, v in form.items()})
    except ValueError as exc:
        raise GraphError(100, f"(#100) Could not parse the request body: {exc}") from None
    return params


def decode(raw: Any, name: str) -> Any:
    """A parameter given as a JSON string (form, query) or as JSON (a JSON body)."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            raise GraphError(100, f"(#100) Param {name} must be JSON") from None
    return raw


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def payload(raw: Any) -> tuple[list[str], list[list[str]]]:
    """``(schema, rows)``; a single-key payload becomes a one-column multi-key one."""
    if raw is None:
        raise GraphError(100, "(#100) The parameter payload is required")
    payload = decode(raw, "payload")
    schema = payload.get("schema") if isinstance(payload, dict) else None
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list) or not data:
        raise GraphError(100, "(#100) payload.data must be a non-empty array")
    if len(data) > MAX_ROWS:
        raise GraphError(100, f"(#100) Too many entries: at most {MAX_ROWS} per request")
    if isinstance(schema, str) and schema in SINGLE_KEY:
        if not all(isinstance(v, str) for v in data):
            raise GraphError(100, "(#100) payload.data must be an array of strings")
        return [SINGLE_KEY[schema]], [[v] for v in data]
    if (
        not isinstance(schema, list)
        or not schema
        or len(set(schema)) != len(schema)
        or not all(k in MULTI_KEY for k in schema)
    ):
        raise GraphError(100, f"(#100) Invalid schema {schema!r}")
    for row in data:
        if not isinstance(row, list) or not all(isinstance(v, str) for v in row):
            raise GraphError(100, "(#100) Each row of payload.data must be an array of strings")
        if len(row) != len(schema):
            raise GraphError(
                100, "(#100) The number of fields in each row of payload.data must match the schema"
            )
    return schema, data
