"""The emulated Data Manager API: ``POST /v1/audienceMembers:ingest`` and ``:remove``.

A request is all or nothing, as Google's is: every problem found is reported in one 400
(``ErrorInfo`` ``INVALID_ARGUMENT`` plus a ``BadRequest`` whose violations carry the
Data Manager ``ErrorReason``; a member's violations name it as
``audience_members.audience_members[i]...``, the form of Google's own samples), and nothing
is applied. A valid request answers ``200 {"requestId": ...}``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from revseg.sandbox import google_ads_wire as wire
from revseg.sandbox.google_ads_emulator_store import member_key

if TYPE_CHECKING:
    from revseg.sandbox.google_ads_emulator import GoogleAdsEmulator
    from revseg.sandbox.google_ads_emulator_http import Reply

MAX_DESTINATIONS = 10
MAX_MEMBERS = 10_000
MAX_IDENTIFIERS = 10
CONSENT_VALUES = {"CONSENT_STATUS_UNSPECIFIED", "CONSENT_GRANTED", "CONSENT_DENIED"}
_DIGITS = re.compile(r"\d+")
_REGION = re.compile(r"[A-Z]{2}")


def _violation(field: str, reason: str, description: str) -> dict[str, str]:
    return {"field": field, "description": description, "reason": reason}


def _bad(violations: list[dict[str, str]]) -> Reply:
    details = [wire.error_info("INVALID_ARGUMENT"), wire.bad_request(violations)]
    return 400, {}, wire.envelope(400, details, "There was a problem with the request.")


def _refused(code: int, reason: str, message: str | None = None) -> Reply:
    return code, {}, wire.envelope(code, [wire.error_info(reason)], message)


def data_manager(
    emu: GoogleAdsEmulator, method: str, headers: dict[str, str], raw: dict[str, Any]
) -> Reply:
    """Answer ``audienceMembers:{method}``; apply it to the lists when valid."""
    auth = headers.get("authorization", "")
    if not auth:
        return _refused(401, "CREDENTIALS_MISSING")
    if auth != f"Bearer {emu.access_token}":
        return _refused(401, "ACCESS_TOKEN_TYPE_UNSUPPORTED")
    ingest = method == "ingest"
    body = wire.camelize(raw)
    problems = wire.schema_problems(body, wire.DM_INGEST if ingest else wire.DM_REMOVE)
    if problems:
        return 400, {}, wire.envelope(400, [wire.bad_request(problems)])
    violations, list_ids = _destinations(emu, body.get("destinations") or [])
    if list_ids is None:
        return _refused(403, "PERMISSION_DENIED", "The caller does not have permission")
    members = body.get("audienceMembers") or []
    if not members:
        violations.append(
            _violation("audience_members", "REQUIRED_FIELD_MISSING", "No audience members.")
        )
    if len(members) > MAX_MEMBERS:
        violations.append(
            _violation(
                "audience_members",
                "TOO_MANY_AUDIENCE_MEMBERS",
                "Maximum number of audience members allowed per request is 10,000.",
            )
        )
    encoding = body.get("encoding")
    if encoding is None:
        violations.append(
            _violation("encoding", "REQUIRED_FIELD_MISSING", "encoding is required for UserData.")
        )
    elif encoding not in ("HEX", "BASE64"):
        violations.append(
            _violation("encoding", "INVALID_ENUM_VALUE", f"Unknown encoding {encoding}.")
        )
    if ingest:
        terms = (body.get("termsOfService") or {}).get("customerMatchTermsOfServiceStatus")
        if terms != "ACCEPTED":
            violations.append(
                _violation(
                    "terms_of_service",
                    "TERMS_AND_CONDITIONS_NOT_SIGNED",
                    "The Customer Match terms of service must be accepted.",
                )
            )
    for field, value in (body.get("consent") or {}).items():
        if value not in CONSENT_VALUES:
            violations.append(
                _violation(f"consent.{wire.snake(field)}", "INVALID_ENUM_VALUE", str(value))
            )
    if violations or len(members) > MAX_MEMBERS:
        return _bad(violations)
    keys: list[frozenset[str]] = []
    for index, member in enumerate(members):
        found, member_keys = _member(emu, member, str(encoding), index)
        violations += found
        keys.append(member_keys)
    if violations:
        return _bad(violations)
    if not body.get("validateOnly"):
        with emu.lock:
            for list_id in list_ids:
                for member_keys in keys:
                    audience = emu.audience(list_id)
                    (audience.add if ingest else audience.remove)(member_keys)
    return 200, {}, {"requestId": wire.new_request_id()}


def _destinations(
    emu: GoogleAdsEmulator, destinations: list[dict[str, Any]]
) -> tuple[list[dict[str, str]], list[str] | None]:
    """Violations, and the user list IDs (None: the caller may not act on an account)."""
    violations: list[dict[str, str]] = []
    if not destinations:
        violations.append(_violation("destinations", "REQUIRED_FIELD_MISSING", "No destinations."))
    if len(destinations) > MAX_DESTINATIONS:
        violations.append(
            _violation(
                "destinations",
                "TOO_MANY_DESTINATIONS",
                "Maximum number of destinations allowed per request is 10.",
            )
        )
    list_ids: list[str] = []
    for i, destination in enumerate(destinations):
        prefix = f"destinations.destinations[{i}]"
        account = destination.get("operatingAccount") or {}
        kind = account.get("accountType") or account.get("product")
        account_id = str(account.get("accountId") or "")
        if not account_id or not kind:
            violations.append(
                _violation(
                    f"{prefix}.operating_account",
                    "REQUIRED_FIELD_MISSING",
                    "operating_account needs account_type and account_id.",
                )
            )
        elif kind != "GOOGLE_ADS" or not _DIGITS.fullmatch(account_id):
            violations.append(
                _violation(
                    f"{prefix}.operating_account",
                    "INVALID_DESTINATION",
                    "The emulator holds Google Ads accounts only.",
                )
            )
        login = str((destination.get("loginAccount") or {}).get("accountId") or "")
        if emu.manager_customer_id is not None and login != emu.manager_customer_id:
            return violations, None
        list_id = str(destination.get("productDestinationId") or "")
        if not list_id:
            violations.append(
                _violation(
                    f"{prefix}.product_destination_id",
                    "REQUIRED_FIELD_MISSING",
                    "product_destination_id is required.",
                )
            )
        elif not _DIGITS.fullmatch(list_id) or list_id == "0":
            violations.append(
                _violation(
                    f"{prefix}.product_destination_id",
                    "INVALID_USER_LIST_ID",
                    "User list is not valid.",
                )
            )
        list_ids.append(list_id)
    return violations, list_ids


def _member(
    emu: GoogleAdsEmulator, member: dict[str, Any], encoding: str, index: int
) -> tuple[list[dict[str, str]], frozenset[str]]:
    """One audience member's violations and its identifier keys."""
    prefix = f"audience_members.audience_members[{index}]"
    kinds = [k for k in ("userData", "pairData", "mobileData") if k in member]
    if kinds != ["userData"]:
        text = "Exactly one of user_data, pair_data, mobile_data (the emulator keeps user_data)."
        return [_violation(prefix, "INVALID_AUDIENCE_MEMBER", text)], frozenset()
    identifiers = member["userData"].get("userIdentifiers") or []
    field = f"{prefix}.user_data.user_identifiers"
    if not identifiers:
        return [
            _violation(field, "REQUIRED_FIELD_MISSING", "At least one user identifier.")
        ], frozenset()
    if len(identifiers) > MAX_IDENTIFIERS:
        text = "Maximum number of user identifiers allowed per audience member is 10."
        return [_violation(field, "TOO_MANY_USER_IDENTIFIERS", text)], frozenset()
    found: list[dict[str, str]] = []
    keys: set[str] = set()
    for j, identifier in enumerate(identifiers):
        set_fields = [k for k in ("emailAddress", "phoneNumber", "address") if k in identifier]
        if len(set_fields) != 1:
            text = f"user_identifiers[{j}]: exactly one of email_address, phone_number, address."
            found.append(_violation(field, "INVALID_FORMAT", text))
            continue
        hashed = [identifier[set_fields[0]]] if set_fields[0] != "address" else []
        address = identifier.get("address")
        if address is not None:
            missing = [
                k
                for k in ("givenName", "familyName", "regionCode", "postalCode")
                if not address.get(k)
            ]
            if missing:
                text = f"user_identifiers[{j}].address: {', '.join(wire.snake(m) for m in missing)} required."
                found.append(_violation(field, "REQUIRED_FIELD_MISSING", text))
                continue
            hashed = [address["givenName"], address["familyName"]]
            if not _REGION.fullmatch(address["regionCode"]):
                found.append(
                    _violation(
                        field, "INVALID_COUNTRY_CODE", f"user_identifiers[{j}].address.region_code"
                    )
                )
        for value in hashed:
            problem = wire.hash_problem(value, encoding)
            if problem is not None:
                found.append(
                    _violation(field, problem, f"user_identifiers[{j}] is not a SHA-256 digest.")
                )
            elif value in emu.poisoned:
                found.append(
                    _violation(
                        prefix,
                        emu.poisoned[value] or "INVALID_AUDIENCE_MEMBER",
                        "This audience member is not valid.",
                    )
                )
        key = member_key(identifier)
        if key is not None:
            keys.add(key)
    return found, frozenset(keys)
