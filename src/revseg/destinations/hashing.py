"""Normalize and hash a whole column of identifiers at once.

:func:`revseg.destinations.identifiers.hash_value` is the definition: one raw value in,
one digest (or None) out. A destination that sends thousands of rows per request calls
:func:`hash_column` instead, which gives exactly the same answer for every value but does
the work on an Arrow array: for the common normalizers (email, phone, names, country) an
ASCII value is trimmed, lowercased and checked with Arrow compute kernels, and only the
SHA-256 itself runs per value. A value with a non-ASCII character, or a kind without a
vectorized rule here, goes through ``hash_value`` unchanged, so Unicode case folding,
NFC and Python's notion of whitespace stay defined in one place.

The ASCII rules restate ``identifiers`` character for character: Python's ``str.isspace``
and the regex ``\\s`` are ``\\t\\n\\v\\f\\r``, space and ``\\x1c``-``\\x1f`` in ASCII; control
characters (category Cc) are ``\\x00``-``\\x1f`` and ``\\x7f``; ``\\D`` is anything but
``0``-``9``. ``tests/test_hashing.py`` checks both paths agree on arbitrary text.

>>> hash_column([" Jane.Doe@Example.com ", None, "n/a"], identifiers.normalize_email)[0]
'86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d'
>>> hash_column([" Jane.Doe@Example.com ", None, "n/a"], identifiers.normalize_email)[1:]
[None, None]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from revseg.destinations import identifiers
from revseg.destinations.identifiers import Normalizer

try:  # CPython's own SHA-256: about twice as fast as OpenSSL's on short input (no EVP setup)
    from _sha2 import sha256 as _sha256  # type: ignore[import-not-found]  # 3.12+
except ImportError:
    try:
        from _sha256 import sha256 as _sha256  # type: ignore[import-not-found,no-redef]  # 3.11
    except ImportError:
        from hashlib import sha256 as _sha256  # type: ignore[assignment]

#: what ``str.strip()`` removes from ASCII text (hash_value's digest check)
_WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f "
#: what ``identifiers._trim`` removes from ASCII text: whitespace and control characters
_TRIMMED = "".join(chr(i) for i in range(0x21)) + "\x7f"
_NOT_SPACE = "[^@\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f ]+"
_EMAIL = f"^{_NOT_SPACE}@{_NOT_SPACE}\\.{_NOT_SPACE}$"
_SHA256 = "^[0-9a-fA-F]{64}$"

#: an ASCII-only array in, the normalized array out (null: not usable)
AsciiRule = Callable[[pa.Array], pa.Array]


def _email(values: pa.Array) -> pa.Array:
    trimmed = pc.ascii_trim(values, characters=_TRIMMED)
    email = pc.ascii_lower(pc.ascii_rtrim(trimmed, characters="."))
    return pc.if_else(pc.match_substring_regex(email, _EMAIL), email, pa.scalar(None, pa.string()))


def _phone(values: pa.Array) -> pa.Array:
    digits = pc.ascii_ltrim(pc.replace_substring_regex(values, "[^0-9]", ""), characters="0")
    length = pc.utf8_length(digits)
    usable = pc.and_(pc.greater_equal(length, identifiers.PHONE_DIGITS.start),
                     pc.less(length, identifiers.PHONE_DIGITS.stop))
    return pc.if_else(usable, digits, pa.scalar(None, pa.string()))


def _letters(values: pa.Array) -> pa.Array:
    letters = pc.ascii_lower(pc.replace_substring_regex(values, "[^A-Za-z]", ""))
    return pc.if_else(pc.greater(pc.utf8_length(letters), 0), letters, pa.scalar(None, pa.string()))


def _country(values: pa.Array) -> pa.Array:
    country = pc.ascii_lower(pc.ascii_trim(values, characters=_TRIMMED))
    usable = pc.match_substring_regex(country, "^[a-z]{2}$")
    return pc.if_else(usable, country, pa.scalar(None, pa.string()))


#: normalizers with an exact ASCII equivalent; any other normalizer runs per value
ASCII_RULES: dict[Normalizer, AsciiRule] = {
    identifiers.normalize_email: _email,
    identifiers.normalize_phone: _phone,
    identifiers.normalize_name: _letters,
    identifiers.normalize_city: _letters,
    identifiers.normalize_state: _letters,
    identifiers.normalize_country: _country,
}


def hash_column(values: Sequence[str | None], normalize: Normalizer) -> list[str | None]:
    """``[hash_value(v, normalize) for v in values]``, None staying None, computed in bulk."""
    rule = ASCII_RULES.get(normalize)
    if rule is None or not values:
        return [None if v is None else identifiers.hash_value(v, normalize) for v in values]
    array = pa.array(values, pa.string())
    stripped = pc.ascii_trim(array, characters=_WHITESPACE)
    digest = pc.match_substring_regex(stripped, _SHA256)
    # values the rule does not cover: non-ASCII text (per value) and digests (passed through)
    other = pc.fill_null(pc.or_(pc.invert(pc.string_is_ascii(array)), digest), False)
    normalized = rule(array).cast(pa.binary()).to_pylist()
    out = [None if n is None else _sha256(n).hexdigest() for n in normalized]
    if pc.any(other).as_py():
        for i in pc.indices_nonzero(other).to_pylist():
            raw = values[i]
            assert raw is not None
            out[i] = identifiers.hash_value(raw, normalize)
    return out
