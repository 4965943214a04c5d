"""Wire rules of the Google Ads emulator: request schemas, checks and Google's error shapes.

Written from ``destinations/google_ads.md`` and Google's references, independently of
:mod:`revseg.destinations.google_ads` (the emulator imports nothing from it), so the
tests that pair the two check one reading of the wire format against another.

Google's JSON front end accepts lowerCamel and snake_case field names alike and rejects
any unknown field with a 400 whose ``BadRequest`` violation carries no ``reason``; both
behaviours are reproduced here, so a misspelt field in revseg fails loudly.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import uuid
from typing import Any

ANY = object()
INT64 = object()  # int64 fields are JSON strings (or numbers) in proto3 JSON

ACCOUNT = {"product": str, "accountType": str, "accountId": str}
CONSENT = {"adUserData": str, "adPersonalization": str}
ADDRESS = {"givenName": str, "familyName": str, "regionCode": str, "postalCode": str}
DM_IDENTIFIER = {"emailAddress": str, "phoneNumber": str, "address": ADDRESS}
DM_MEMBER = {
    "consent": CONSENT,
    "userData": {"userIdentifiers": [DM_IDENTIFIER]},
    "pairData": {"pairIds": [str]},
    "mobileData": {"mobileIds": [str]},
}
DESTINATION = {
    "reference": str,
    "loginAccount": ACCOUNT,
    "linkedAccount": ACCOUNT,
    "operatingAccount": ACCOUNT,
    "productDestinationId": str,
}
DM_REMOVE = {
    "destinations": [DESTINATION],
    "audienceMembers": [DM_MEMBER],
    "validateOnly": bool,
    "encoding": str,
    "encryptionInfo": ANY,
}
DM_INGEST = {
    **DM_REMOVE,
    "consent": CONSENT,
    "termsOfService": {"customerMatchTermsOfServiceStatus": str},
}
ADDRESS_INFO = {
    "hashedFirstName": str,
    "hashedLastName": str,
    "city": str,
    "state": str,
    "countryCode": str,
    "postalCode": str,
    "hashedStreetAddress": str,
}
ADS_IDENTIFIER = {
    "userIdentifierSource": str,
    "hashedEmail": str,
    "hashedPhoneNumber": str,
    "mobileId": str,
    "thirdPartyUserId": str,
    "addressInfo": ADDRESS_INFO,
}
USER_DATA = {
    "userIdentifiers": [ADS_IDENTIFIER],
    "transactionAttribute": ANY,
    "userAttribute": ANY,
    "consent": CONSENT,
}
CREATE_JOB = {
    "job": {
        "resourceName": str,
        "id": INT64,
        "externalId": INT64,
        "type": str,
        "status": str,
        "failureReason": str,
        "customerMatchUserListMetadata": {"userList": str, "consent": CONSENT},
        "storeSalesMetadata": ANY,
        "operationMetadata": ANY,
    },
    "validateOnly": bool,
    "enableMatchRateRangePreview": bool,
}
ADD_OPERATIONS = {
    "enablePartialFailure": bool,
    "enableWarnings": bool,
    "validateOnly": bool,
    "operations": [{"create": USER_DATA, "remove": USER_DATA, "removeAll": bool}],
}
RUN_JOB = {"validateOnly": bool}
SEARCH = {"query": str, "pageToken": str, "pageSize": int, "validateOnly": bool}

_HEX64 = re.compile(r"[0-9a-f]{64}")
_ANY_HEX = re.compile(r"[0-9a-fA-F]+")
STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    409: "Multiple requests were attempting to modify the same resource at once. Retry the request.",
    429: "Resource has been exhausted (e.g. check quota).",
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
    504: "The request deadline was exceeded.",
}


@functools.cache
def snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


@functools.cache
def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def camelize(value: Any) -> Any:
    """Field names as lowerCamel (proto3 JSON parsers accept both spellings)."""
    if isinstance(value, dict):
        return {k if k.startswith("@") else camel(k): camelize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camelize(v) for v in value]
    return value


def schema_problems(value: Any, schema: Any, path: str = "") -> list[dict[str, str]]:
    """``BadRequest`` violations, ESF-style, for unknown fields and wrong JSON types."""
    where = path or "<root>"
    if schema is ANY:
        return []
    if schema is INT64:
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, str) and value.lstrip("-").isdigit()
        )
        return [] if ok else [_invalid(where, "TYPE_INT64", value)]
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return [_invalid(where, "TYPE_MESSAGE", value)]
        found: list[dict[str, str]] = []
        for key, item in value.items():
            if key not in schema:
                text = f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field."
                found.append({"field": path, "description": text})
            else:
                found += schema_problems(item, schema[key], f"{path}.{snake(key)}".lstrip("."))
        return found
    if isinstance(schema, list):
        if not isinstance(value, list):
            return [_invalid(where, "TYPE_LIST", value)]
        return [
            p for i, v in enumerate(value) for p in schema_problems(v, schema[0], f"{path}[{i}]")
        ]
    ok = isinstance(value, schema) and not (schema is int and isinstance(value, bool))
    kind = {str: "TYPE_STRING", bool: "TYPE_BOOL", int: "TYPE_INT32"}.get(schema, "TYPE")
    return [] if ok else [_invalid(where, kind, value)]


def _invalid(where: str, kind: str, value: Any) -> dict[str, str]:
    shown = str(value)[:40]
    text = f"Invalid value at '{where}' ({kind}), {shown}"
    return {"field": where, "description": f"Invalid JSON payload received. {text}"}


def hash_problem(value: str, encoding: str = "HEX") -> str | None:
    """The Data Manager ErrorReason for a malformed SHA-256 digest, or None.

    Stricter than Google on one point: a HEX digest must be lowercase (revseg's contract).
    """
    if encoding == "BASE64":
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return "INVALID_BASE64_ENCODING"
        return None if len(raw) == 32 else "INVALID_SHA256_FORMAT"
    if _HEX64.fullmatch(value):
        return None
    if not _ANY_HEX.fullmatch(value) or len(value) % 2:
        return "INVALID_HEX_ENCODING"
    return "INVALID_SHA256_FORMAT"


def envelope(
    code: int, details: list[dict[str, Any]], message: str | None = None
) -> dict[str, Any]:
    """The Google API error body (``google.rpc.Status`` as JSON)."""
    return {
        "error": {
            "code": code,
            "message": message or MESSAGES.get(code, "Error."),
            "status": STATUS.get(code, "UNKNOWN"),
            "details": details,
        }
    }


def error_info(reason: str, domain: str = "datamanager.googleapis.com") -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": domain}


def bad_request(violations: list[dict[str, str]]) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": violations}


def retry_info(delay: str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}


def new_request_id() -> str:
    return uuid.uuid4().hex[:22]


def ads_failure(version: str, errors: list[dict[str, Any]], request_id: str) -> dict[str, Any]:
    """A ``GoogleAdsFailure`` detail of the Google Ads API version in use."""
    return {
        "@type": f"type.googleapis.com/google.ads.googleads.{version}.errors.GoogleAdsFailure",
        "errors": errors,
        "requestId": request_id,
    }


def ads_error(
    family: str,
    value: str,
    message: str,
    location: list[tuple[str, int | None]] | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One ``GoogleAdsError``: ``errorCode`` is a oneof keyed by error family."""
    error: dict[str, Any] = {"errorCode": {family: value}, "message": message}
    if location:
        elements = [
            {"fieldName": name} | ({} if index is None else {"index": index})
            for name, index in location
        ]
        error["location"] = {"fieldPathElements": elements}
    if details:
        error["details"] = details
    return error
