"""Google's normalization and SHA-256 hashing of Customer Match identifiers.

Google matches only digests of *normalized* values, and a value hashed in the wrong form is
accepted but never matches (``destinations/google_ads.md``), so revseg normalizes exactly
as Google documents and rejects, with a reason, what it cannot normalize rather than send
a digest that can never match:

- email: remove every whitespace character, lowercase. The dots of a ``gmail.com`` local
  part are kept: ``google_ads.md`` makes removing them optional, and a receiver that hashes
  the trimmed, lowercased address (the one rule it states) would never match a digest
  without them. ``+tags`` are kept: Google does not ask to strip them.
- phone: E.164, a ``+``, the country code and at most 15 digits in all (``+12125650000``);
  formatting characters and a ``(0)`` trunk prefix are dropped, a leading ``00`` counts as
  ``+``; a number without a country code is rejected (revseg cannot guess the country).
- first and last name: lowercase, trim, collapse inner whitespace; last names also lose
  their punctuation (``google_ads.md``, for both API paths: Google's Data Manager guide asks
  for more, dropping first-name punctuation and prefixes such as ``Mrs.``, which a receiver
  following the documented rule would not match).
- country (ISO-3166-1 alpha-2) and postal code are sent unhashed; US postal codes are
  5 digits or ZIP+4. An address is usable only with all four parts.

Values that already are SHA-256 hex digests (warehouses often store hashed emails) pass
through lowercased. Problem messages never quote the raw value: they end up in run reports.

>>> sha256_hex(normalize_email(" Dana@Example.com "))
'07e2f1394b0ea80e2adca010ea8318df697001a005ba7452720edda4b0ce57b3'
>>> normalize_phone("+1 (800) 555-0100")
'+18005550100'
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass

#: identifier kinds a sync's ``identifiers:`` may map for ``google_ads``.
KINDS = frozenset({"email", "phone", "first_name", "last_name", "country", "postal_code"})
#: the kinds revseg hashes; country and postal code travel in clear text.
HASHED_KINDS = frozenset({"email", "phone", "first_name", "last_name"})
ADDRESS_KINDS = ("first_name", "last_name", "country", "postal_code")

_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
_PHONE_FORMATTING = re.compile(r"[\s\-.()/\u00a0]")
_US_ZIP = re.compile(r"(\d{5})(?:[\s-]?(\d{4}))?")
_ISO_3166_ALPHA2 = frozenset(
    """AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO
    DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU
    GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW
    KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU
    MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW
    PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF
    TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA
    ZM ZW""".split()
)
_COMMON_MISTAKES = {"UK": "GB", "EN": "GB", "EL": "GR"}


class IdentifierError(ValueError):
    """A value that cannot be normalized as Google requires; the message names no PII."""


def sha256_hex(text: str) -> str:
    """Lowercase hex SHA-256 of the UTF-8 text (the ``HEX`` encoding Google accepts)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _digest(value: str) -> str | None:
    """The value itself when it already is a SHA-256 hex digest."""
    value = value.strip()
    return value.lower() if _HEX_DIGEST.fullmatch(value) else None


def normalize_email(raw: str) -> str:
    """``" John.Doe@GMail.com "`` -> ``"john.doe@gmail.com"``."""
    text = "".join(raw.split()).lower()
    local, at, domain = text.rpartition("@")
    if not at or not local or "@" in local or "." not in domain.strip("."):
        raise IdentifierError("email: not an email address")
    return f"{local}@{domain}"


def normalize_phone(raw: str) -> str:
    """E.164: ``"+44 (0)20 7946 0958"`` -> ``"+442079460958"``."""
    text = _PHONE_FORMATTING.sub("", raw.replace("(0)", ""))
    if text.startswith("+"):
        digits = text[1:]
    elif text.startswith("00"):
        digits = text[2:]
    else:
        raise IdentifierError(
            "phone: needs a leading + and country code (E.164, e.g. +12125650000)"
        )
    if not digits.isascii() or not digits.isdigit():
        raise IdentifierError("phone: contains characters other than digits")
    if not 7 <= len(digits) <= 15 or digits[0] == "0":
        raise IdentifierError("phone: not an E.164 number (a country code, at most 15 digits)")
    return "+" + digits


def normalize_name(raw: str, *, strip_punctuation: bool) -> str:
    """Lowercase, punctuation removed when asked (last names), whitespace trimmed and collapsed."""
    text = unicodedata.normalize("NFC", raw).lower()
    if strip_punctuation:
        text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    words = text.split()
    if not words:
        raise IdentifierError("name: empty after normalization")
    return " ".join(words)


def normalize_country(raw: str) -> str:
    """``" us "`` -> ``"US"``; anything not ISO-3166-1 alpha-2 is an error."""
    code = raw.strip().upper()
    if code in _ISO_3166_ALPHA2:
        return code
    hint = f" (did you mean {_COMMON_MISTAKES[code]}?)" if code in _COMMON_MISTAKES else ""
    shown = code if len(code) <= 3 and code.isalpha() else "value"
    raise IdentifierError(f"country: {shown} is not an ISO-3166-1 alpha-2 code{hint}")


def normalize_postal_code(raw: str, country: str) -> str:
    """Trimmed; US codes as ``94105`` or ``94105-1234``."""
    code = " ".join(raw.split())
    if country == "US":
        match = _US_ZIP.fullmatch(code)
        if match is None:
            raise IdentifierError("postal_code: a US postal code is 5 digits or ZIP+4")
        return match.group(1) + (f"-{match.group(2)}" if match.group(2) else "")
    if not code:
        raise IdentifierError("postal_code: empty")
    return code


@dataclass(frozen=True)
class Address:
    """Google's address identifier: hashed names, clear-text country and postal code."""

    first_name: str
    last_name: str
    country: str
    postal_code: str


@dataclass(frozen=True)
class UserIds:
    """One member's identifiers, normalized and hashed, and why others were unusable."""

    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    address: Address | None = None
    problems: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.emails or self.phones or self.address)

    def count(self) -> int:
        return len(self.emails) + len(self.phones) + (self.address is not None)

    def rejection(self) -> str:
        """The per-record reason when nothing usable is left."""
        detail = "; ".join(self.problems) if self.problems else "none given"
        return f"no usable identifier for Google Customer Match ({detail})"


@dataclass(frozen=True)
class Member:
    """A record to send: the entity's id and its usable identifiers."""

    id: str
    ids: UserIds


def _hashed(raw: str, normalize: Callable[[str], str]) -> str:
    return _digest(raw) or sha256_hex(normalize(raw))


def hash_identifiers(identifiers: Mapping[str, str]) -> UserIds:
    """Normalize and hash one member's ``{kind: raw value}``; unusable parts become problems."""
    emails: list[str] = []
    phones: list[str] = []
    problems: list[str] = []
    values = {k: v for k, v in identifiers.items() if v is not None and str(v).strip()}
    for kind in sorted(set(values) - KINDS):
        problems.append(f"{kind}: not an identifier kind Google knows")
    for kind, normalize, out in (
        ("email", normalize_email, emails),
        ("phone", normalize_phone, phones),
    ):
        if kind in values:
            try:
                out.append(_hashed(str(values[kind]), normalize))
            except IdentifierError as exc:
                problems.append(str(exc))
    address = None
    present = [k for k in ADDRESS_KINDS if k in values]
    if present:
        missing = [k for k in ADDRESS_KINDS if k not in values]
        if missing:
            problems.append(
                f"address: needs {', '.join(ADDRESS_KINDS)} (missing {', '.join(missing)})"
            )
        else:
            try:
                address = _address({k: str(values[k]) for k in ADDRESS_KINDS})
            except IdentifierError as exc:
                problems.append(str(exc))
    return UserIds(tuple(emails), tuple(phones), address, tuple(problems))


def _address(values: dict[str, str]) -> Address:
    country = normalize_country(values["country"])
    postal = normalize_postal_code(values["postal_code"], country)

    def name(kind: str, punctuation: bool) -> str:
        try:
            return _hashed(values[kind], lambda v: normalize_name(v, strip_punctuation=punctuation))
        except IdentifierError as exc:
            raise IdentifierError(str(exc).replace("name:", f"{kind}:", 1)) from None

    first, last = name("first_name", False), name("last_name", True)
    return Address(first, last, country, postal)
