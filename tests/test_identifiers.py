"""Identifier normalization and hashing (destinations/meta.md, destinations/linkedin.md).

Digests are written out, not computed with hashlib here: ``us`` is the vector Meta's doc
gives; the others were computed with coreutils ``printf '%s' VALUE | sha256sum``.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revseg.destinations import identifiers as ids

#: normalized text -> SHA-256 (lowercase hex)
VECTORS = {
    "us": "79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621",  # meta.md
    "jane.doe@example.com": "86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d",
    "14155552671": "758fbf68945f21c416814c539ab578876c8d98fb69e6da692def92cd52417fe0",
    "mary": "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec",
    "oneil": "67a42a846e98e3c1a96cd6ba14883a5ea05990cd93964ce8b832aa9497ca785c",
    "m": "62c66a7a5dd70c3146618063c344e531e6d4b59e379808443ce962b3abd63c5a",
    "1990": "a7be8e1fe282a37cd666e0632b17d933fa13f21addf4798fc0455bc166e2488c",
    "03": "0b8efa5a3bf104413a725c6ff0459a6be12b1fd33314cbb138745baf39504ae5",
    "sanfrancisco": "1a6bd4d9d79dc0a79b53795c70d3349fa9e38968a3fbefbfe8783efb1d2b6aac",
    "ca": "6959097001d10501ac7d54c0bdb8db61420f658f2922cc26e46d536119a31126",
    "94107": "c884a209ebe08750a7d13db63bd02233b375bd79786cbe329ab11586cc35dead",
    "sw1a1aa": "830e1d4b9838bab1f5c2acdb23e0b502ff13a9832c4632e8d67a1d43d3b7f614",
    "josé": "d994e1d001886fe5b45b1267bd1fa2b752ac50742579bd3dad7b2a2aa0ed6866",
}

CASES = [  # (normalizer, raw, normalized text)
    (ids.normalize_country, " US ", "us"),
    (ids.normalize_email, "  Jane.Doe@Example.COM \n", "jane.doe@example.com"),
    (ids.normalize_email, "jane.doe@example.com.", "jane.doe@example.com"),  # SDK: trailing dot
    (ids.normalize_email, "\x00Jane.Doe@example.com\x0b", "jane.doe@example.com"),
    (ids.normalize_phone, "+1 (415) 555-2671", "14155552671"),
    (ids.normalize_phone, "001-415-555-2671", "14155552671"),  # leading zeros (exit code) go
    (ids.normalize_phone, "tel:14155552671", "14155552671"),  # letters go
    (ids.normalize_name, " Mary ", "mary"),
    (ids.normalize_name, "O'Neil", "oneil"),
    (ids.normalize_name, "José", "josé"),  # non-ASCII letters stay, UTF-8 encoded
    (ids.normalize_name, "Jose\u0301", "josé"),  # decomposed accent composes first (NFC)
    (ids.normalize_gender, "Male", "m"),
    (ids.normalize_birth_year, "1990", "1990"),
    (ids.normalize_birth_month, "3", "03"),
    (ids.normalize_birth_day, "03", "03"),
    (ids.normalize_city, "San Francisco", "sanfrancisco"),
    (ids.normalize_state, "CA", "ca"),
    (ids.normalize_zip, "94107-1234", "94107"),
    (ids.normalize_zip, "941071234", "94107"),
    (ids.normalize_zip, "SW1A 1AA", "sw1a1aa"),
]


@pytest.mark.parametrize(("normalize", "raw", "expected"), CASES)
def test_normalization_and_hash_vectors(normalize: ids.Normalizer, raw: str, expected: str) -> None:
    assert normalize(raw) == expected
    assert ids.hash_value(raw, normalize) == VECTORS[expected]


def test_country_vector_from_meta_doc() -> None:
    assert ids.sha256_hex("us") == VECTORS["us"]


def test_phone_with_plus_for_apis_that_want_full_e164() -> None:
    assert ids.normalize_phone("+44 20 7946 0958", plus=True) == "+442079460958"


@pytest.mark.parametrize(
    ("normalize", "raw"),
    [
        (ids.normalize_email, "n/a"),
        (ids.normalize_email, "ann@"),
        (ids.normalize_email, "ann smith@example.com"),
        (ids.normalize_email, "   "),
        (ids.normalize_phone, "555-12"),  # too short for E.164
        (ids.normalize_phone, "1234567890123456"),  # longer than 15 digits
        (ids.normalize_phone, "unknown"),
        (ids.normalize_name, "---"),
        (ids.normalize_gender, "x"),
        (ids.normalize_birth_month, "13"),
        (ids.normalize_birth_day, "0"),
        (ids.normalize_country, "USA"),  # alpha-3 is not what Meta hashes
        (ids.normalize_external_id, "  "),
        (ids.normalize_mobile_advertiser_id, "not-a-uuid"),
    ],
)
def test_unusable_values_give_none(normalize: ids.Normalizer, raw: str) -> None:
    assert normalize(raw) is None
    assert ids.hash_value(raw, normalize) is None


def test_unhashed_kinds() -> None:
    assert ids.normalize_external_id(" CRM-42 ") == "CRM-42"  # case kept, sent as is
    aid = "38400000-8CF0-11BD-B23E-10B96E40000D"
    assert ids.normalize_mobile_advertiser_id(aid) == aid.lower()


def test_already_hashed_values_pass_through_lowercased() -> None:
    upper = VECTORS["jane.doe@example.com"].upper()
    assert ids.hash_value(f" {upper} ", ids.normalize_email) == VECTORS["jane.doe@example.com"]
    assert ids.is_sha256_hex(VECTORS["us"]) and not ids.is_sha256_hex("us")
    assert ids.is_sha512_hex("ab" * 64) and not ids.is_sha512_hex("ab" * 32)


_HEX64 = re.compile(r"[0-9a-f]{64}")


@settings(deadline=None)  # timing varies on a loaded CI machine; correctness does not
@given(st.text(max_size=40))
def test_normalizers_are_idempotent_and_hashes_well_formed(raw: str) -> None:
    for normalize in (
        ids.normalize_email,
        ids.normalize_phone,
        ids.normalize_name,
        ids.normalize_city,
        ids.normalize_zip,
        ids.normalize_country,
    ):
        once = normalize(raw)
        if once is not None:
            assert normalize(once) == once
        digest = ids.hash_value(raw, normalize)
        assert digest is None or _HEX64.fullmatch(digest)


@settings(deadline=None)
@given(st.emails())
def test_every_email_is_usable_and_case_insensitive(email: str) -> None:
    assert ids.hash_value(email.upper(), ids.normalize_email) == ids.hash_value(
        f"  {email}  ", ids.normalize_email
    )
