"""Checks of one ``addOperations`` operation, as the emulated OfflineUserDataJobService
makes them: the operation oneof (``create`` | ``remove`` | ``removeAll``), the order and
kind rules of a job, 1 to 20 identifiers, each a oneof with SHA-256 hex digests (lowercase,
revseg's contract) and a complete address. Errors are ``GoogleAdsError`` objects located at
``operations[i].<kind>.user_identifiers[j]``.
"""

from __future__ import annotations

import re
from typing import Any

from revseg.sandbox import google_ads_wire as wire
from revseg.sandbox.google_ads_emulator_store import member_key

MAX_REQUEST_IDENTIFIERS = 100_000
MAX_OPERATION_IDENTIFIERS = 20
TOO_MANY = (
    "Maximum number of user identifiers allowed per request is 100,000 and per operation is 20."
)
IDENTIFIER_FIELDS = (
    "hashedEmail",
    "hashedPhoneNumber",
    "mobileId",
    "thirdPartyUserId",
    "addressInfo",
)
ADDRESS_FIELDS = ("hashedFirstName", "hashedLastName", "countryCode", "postalCode")
Location = list[tuple[str, int | None]]
Errors = list[dict[str, Any]]
_HEX64 = re.compile(r"[0-9a-f]{64}")
_COUNTRY = re.compile(r"[A-Z]{2}")


def job_error(value: str, message: str, where: Location | None = None) -> dict[str, Any]:
    return wire.ads_error("offlineUserDataJobError", value, message, where)


def check_operation(
    i: int,
    op: dict[str, Any],
    job_kind: str | None,
    has_earlier: bool,
    poisoned: dict[str, str | None],
) -> tuple[str, Errors, frozenset[str]]:
    """``(kind, errors, identifier keys)`` of operation ``i``.

    ``job_kind`` is the kind the job already holds (``create`` or ``remove``);
    ``has_earlier`` says whether any operation precedes this one in the job.
    """
    kinds = [k for k in ("create", "remove", "removeAll") if k in op]
    if len(kinds) != 1:
        value = "REQUIRED" if not kinds else "VALUE_MUST_BE_UNSET"
        return (
            "",
            [wire.ads_error("fieldError", value, "operation", [("operations", i)])],
            frozenset(),
        )
    kind = kinds[0]
    where: Location = [("operations", i), (wire.snake(kind), None)]
    if kind == "removeAll":
        if has_earlier:
            return (
                kind,
                [job_error("INVALID_OPERATION_ORDER", "removeAll must come first.", where)],
                frozenset(),
            )
        return kind, [], frozenset()
    if job_kind is not None and job_kind != kind:
        text = "Create and remove operations cannot be mixed in one job."
        return kind, [job_error("CONFLICTING_OPERATION", text, where)], frozenset()
    identifiers = (op[kind] or {}).get("userIdentifiers") or []
    if not identifiers:
        return (
            kind,
            [job_error("MISSING_USER_IDENTIFIER", "No user identifier.", where)],
            frozenset(),
        )
    if len(identifiers) > MAX_OPERATION_IDENTIFIERS:
        return kind, [job_error("TOO_MANY_USER_IDENTIFIERS", TOO_MANY, where)], frozenset()
    errors: Errors = []
    keys: set[str] = set()
    for j, identifier in enumerate(identifiers):
        errors += check_identifier(identifier, [*where, ("user_identifiers", j)], poisoned)
        key = member_key(identifier)
        if key is not None:
            keys.add(key)
    return kind, errors, frozenset(keys)


def check_identifier(
    identifier: dict[str, Any], where: Location, poisoned: dict[str, str | None]
) -> Errors:
    """The errors of one ``UserIdentifier`` (the first found: Google reports one per field)."""
    fields = [k for k in IDENTIFIER_FIELDS if k in identifier]
    if not fields:
        return [
            job_error(
                "MISSING_USER_IDENTIFIER", "A user identifier sets none of its fields.", where
            )
        ]
    if len(fields) > 1:
        return [
            wire.ads_error(
                "fieldError", "VALUE_MUST_BE_UNSET", "A user identifier is a oneof.", where
            )
        ]
    hashed: list[str] = []
    if fields[0] in ("hashedEmail", "hashedPhoneNumber"):
        hashed = [identifier[fields[0]]]
    elif fields[0] == "addressInfo":
        address = identifier["addressInfo"]
        if any(not address.get(k) for k in ADDRESS_FIELDS):
            text = "addressInfo needs " + ", ".join(ADDRESS_FIELDS)
            return [wire.ads_error("fieldError", "REQUIRED", text, where)]
        if not _COUNTRY.fullmatch(address["countryCode"]):
            return [job_error("INVALID_COUNTRY_CODE", "Country code is invalid.", where)]
        hashed = [address["hashedFirstName"], address["hashedLastName"]]
    for value in hashed:
        if not _HEX64.fullmatch(value):
            return [
                job_error("INVALID_SHA256_FORMAT", "The SHA256 encoded value is malformed.", where)
            ]
        if value in poisoned:
            reason = poisoned[value] or "INVALID_SHA256_FORMAT"
            return [job_error(reason, "The emulator was told to reject this identifier.", where)]
    return []
