"""Normalization and SHA-256 hashing of identifiers, as the ad APIs specify them.

Ad platforms match people on hashes, so a hash is only useful if revseg normalizes the raw
value exactly as the platform does before hashing: ``Ann@Example.com `` and
``ann@example.com`` must give the same digest. Each ``normalize_*`` function takes the raw
text of a trait and returns the normalized text, or ``None`` when the value cannot be a
usable identifier of that kind (a destination then leaves the field out, and rejects the
member when no usable field remains). The rules follow ``destinations/meta.md`` (Meta's
customer-file rules, the strictest of the APIs revseg speaks) and ``destinations/linkedin.md``
(trim + lowercase emails).

Values that already are SHA-256 digests (64 hex digits) are passed through, lowercased, by
:func:`hash_value`, so a warehouse that stores only hashed PII can still sync.

>>> normalize_email("  Ann.Lee@Example.COM. ")
'ann.lee@example.com'
>>> normalize_phone("+1 (415) 555-2671")
'14155552671'
>>> sha256_hex("us")
'79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621'
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable

Normalizer = Callable[[str], "str | None"]

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_SHA512_HEX = re.compile(r"[0-9a-fA-F]{128}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_US_ZIP = re.compile(r"(\d{5})(?:-?\d{4})?")
#: E.164 allows at most 15 digits; the shortest national numbers in use have 7 with the
#: country code, so anything shorter is a typo or an extension, not a phone number.
PHONE_DIGITS = range(7, 16)


def sha256_hex(text: str) -> str:
    """The lowercase hex SHA-256 of ``text`` encoded as UTF-8 (what every API expects)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_sha256_hex(value: str) -> bool:
    """True for a 64-digit hex string: a value that is already a SHA-256 digest."""
    return _SHA256_HEX.fullmatch(value) is not None


def is_sha512_hex(value: str) -> bool:
    """True for a 128-digit hex string (LinkedIn's ``SHA512_EMAIL``)."""
    return _SHA512_HEX.fullmatch(value) is not None


def hash_value(raw: str, normalize: Normalizer) -> str | None:
    """``sha256(normalize(raw))``; a raw value that is already a digest passes through.

    >>> hash_value("US", normalize_country)
    '79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621'
    >>> hash_value("79ADB2A2FCE5C6BA215FE5F27F532D4E7EDBAC4B6A5E09E1EF3A08084A904621", normalize_country)
    '79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621'
    """
    stripped = raw.strip()
    if is_sha256_hex(stripped):
        return stripped.lower()
    normalized = normalize(raw)
    return None if normalized is None else sha256_hex(normalized)


def _trim(raw: str) -> str:
    """Strip whitespace and control characters at both ends (the SDKs strip ``\\0``, ``\\x0b``)."""
    start, end = 0, len(raw)
    while start < end and (raw[start].isspace() or unicodedata.category(raw[start]) == "Cc"):
        start += 1
    while end > start and (raw[end - 1].isspace() or unicodedata.category(raw[end - 1]) == "Cc"):
        end -= 1
    return raw[start:end]


def _letters(raw: str) -> str:
    """Lowercase letters only: punctuation, digits and spaces go; non-Latin letters stay
    (Meta: "a-z only, no punctuation; UTF-8 for non-Latin"). NFC keeps ``é`` one character."""
    text = unicodedata.normalize("NFC", raw).lower()
    return "".join(ch for ch in text if ch.isalpha())


def normalize_email(raw: str) -> str | None:
    """Trimmed and lowercased; trailing dots dropped (as Meta's SDK does); None if not an address.

    >>> normalize_email(" Jane.Doe@Example.com\\n")
    'jane.doe@example.com'
    >>> normalize_email("n/a") is None
    True
    """
    email = _trim(raw).rstrip(".").lower()
    return email if _EMAIL.fullmatch(email) else None


def normalize_phone(raw: str, *, plus: bool = False) -> str | None:
    """E.164 digits: symbols, letters, ``+`` and leading zeros (an ``00`` exit code) removed.

    The country code must already be part of the number (Meta: "prefix country code"); a
    number that cannot be E.164 (fewer than 7 or more than 15 digits) gives None. ``plus``
    prefixes ``+`` for APIs that want the full E.164 form.

    >>> normalize_phone("0044 20 7946 0958")
    '442079460958'
    >>> normalize_phone("+1 415-555-2671", plus=True)
    '+14155552671'
    """
    digits = re.sub(r"\D", "", raw).lstrip("0")
    if len(digits) not in PHONE_DIGITS:
        return None
    return f"+{digits}" if plus else digits


def normalize_e164(raw: str) -> str | None:
    """The full E.164 form (``+14155552671``) of a number written with its country code
    (``+`` or the ``00`` international prefix); formatting characters are dropped. A
    national number gives None: guessing its country could name a stranger.

    >>> normalize_e164(" +1 (415) 555-2671 ")
    '+14155552671'
    >>> normalize_e164("0044 20 7946 0958")
    '+442079460958'
    >>> normalize_e164("(415) 555-2671") is None
    True
    """
    text = re.sub(r"[\s().\-/]", "", raw)
    if text.startswith("00"):
        text = "+" + text[2:]
    if not re.fullmatch(r"\+[1-9][0-9]*", text) or len(text) - 1 not in PHONE_DIGITS:
        return None
    return text


def normalize_name(raw: str) -> str | None:
    """First or last name: lowercase letters only (``O'Neil`` -> ``oneil``).

    >>> normalize_name("Mary-Ann")
    'maryann'
    """
    name = _letters(raw)
    return name or None


def normalize_first_initial(raw: str) -> str | None:
    """The first letter of the (normalized) first name."""
    name = _letters(raw)
    return name[0] if name else None


def normalize_gender(raw: str) -> str | None:
    """``m`` or ``f`` (from ``m``/``male``/``f``/``female``, any case); None otherwise."""
    value = _trim(raw).lower()
    return {"m": "m", "male": "m", "f": "f", "female": "f"}.get(value)


def normalize_birth_year(raw: str) -> str | None:
    """``YYYY``."""
    digits = re.sub(r"\D", "", raw)
    return digits if len(digits) == 4 else None


def _two_digits(raw: str, top: int) -> str | None:
    digits = re.sub(r"\D", "", raw)
    if not digits or not 1 <= int(digits) <= top:
        return None
    return f"{int(digits):02d}"


def normalize_birth_month(raw: str) -> str | None:
    """``MM``, 01-12 (``3`` -> ``03``)."""
    return _two_digits(raw, 12)


def normalize_birth_day(raw: str) -> str | None:
    """``DD``, 01-31."""
    return _two_digits(raw, 31)


def normalize_city(raw: str) -> str | None:
    """Lowercase, no spaces or punctuation (``San Francisco`` -> ``sanfrancisco``)."""
    city = _letters(raw)
    return city or None


def normalize_state(raw: str) -> str | None:
    """Lowercase letters only; US states should be given as their 2-letter ANSI code.

    Full state names are not mapped to codes (Meta hashes whatever it is given, so mapping
    would be a guess); ``CA`` -> ``ca``.
    """
    state = _letters(raw)
    return state or None


def normalize_zip(raw: str) -> str | None:
    """Lowercase letters and digits only (no spaces or dashes); a US ZIP+4 keeps its first 5.

    >>> normalize_zip("94107-1234")
    '94107'
    >>> normalize_zip("SW1A 1AA")
    'sw1a1aa'
    """
    value = _trim(raw)
    us = _US_ZIP.fullmatch(value)
    if us:
        return us.group(1)
    # postcodes are alphanumeric everywhere; spaces, dashes (and stray control bytes) go
    value = "".join(ch for ch in value if ch.isalnum()).lower()
    return value or None


def normalize_country(raw: str) -> str | None:
    """ISO 3166-1 alpha-2, lowercase (``US`` -> ``us``); anything else (``USA``) gives None."""
    value = _trim(raw).lower()
    return value if re.fullmatch(r"[a-z]{2}", value) else None


def normalize_external_id(raw: str) -> str | None:
    """Trimmed, case kept: an advertiser's own id is sent unhashed and compared as is."""
    value = _trim(raw)
    return value or None


def normalize_mobile_advertiser_id(raw: str) -> str | None:
    """IDFA / Android advertising id: a UUID, lowercase (sent unhashed)."""
    value = _trim(raw).lower()
    return value if _UUID.fullmatch(value) else None
