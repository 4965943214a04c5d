"""Google's normalization and hashing of Customer Match identifiers (no HTTP).

Vectors are Google's own where it publishes them (the Data Manager quickstart's hashed
``dana@example.com``, the formatting guide's ``(800)555-0100`` -> ``+18005550100``); the
rest spell out the normalized text, hashed here with hashlib, so a failure shows which rule
broke.
"""

from __future__ import annotations

import hashlib

import pytest

from revseg.destinations.google_ads_identifiers import (
    HASHED_KINDS,
    KINDS,
    Address,
    IdentifierError,
    hash_identifiers,
    normalize_country,
    normalize_email,
    normalize_name,
    normalize_phone,
    normalize_postal_code,
    sha256_hex,
)


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_google_quickstart_vector() -> None:
    # https://developers.google.com/data-manager/api/get-started/quickstart: hex SHA-256
    expected = "07e2f1394b0ea80e2adca010ea8318df697001a005ba7452720edda4b0ce57b3"
    assert sha256_hex(normalize_email("dana@example.com")) == expected
    assert hash_identifiers({"email": " Dana@Example.COM "}).emails == (
        expected,
    )


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        # the quickstart's sample rows: whitespace anywhere removed, lowercased
        ("DanaM@example.com", "danam@example.com"),
        (" AlexJ@cymbalgroup.com", "alexj@cymbalgroup.com"),
        ("baklavainthebalkans@gmail.com  ", "baklavainthebalkans@gmail.com"),
        ("cloudySanFrancisco@GMAIL.com", "cloudysanfrancisco@gmail.com"),
        ("quinn@CYMBAL GROUP.com", "quinn@cymbalgroup.com"),
        # google_ads.md: removing a gmail.com local part's dots is optional; revseg keeps
        # them (and +tags), so a receiver hashing the trimmed, lowercased address matches
        ("Jane.Doe@gmail.com", "jane.doe@gmail.com"),
        ("j.a.n.e+ads@GoogleMail.com", "j.a.n.e+ads@googlemail.com"),
        ("jane.doe@example.com", "jane.doe@example.com"),
        ("jane.doe@gmail.com.au", "jane.doe@gmail.com.au"),
    ],
)
def test_email_normalization(raw: str, normalized: str) -> None:
    assert normalize_email(raw) == normalized


@pytest.mark.parametrize(
    "raw", ["", "not-an-email", "@example.com", "ann@", "a@b@example.com", "ann@localhost"]
)
def test_unusable_emails(raw: str) -> None:
    with pytest.raises(IdentifierError, match="email"):
        normalize_email(raw)


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+1 (800) 555-0100", "+18005550100"),  # the formatting guide's example
        ("+1.800.555.0100", "+18005550100"),
        ("+44 (0)20 7946 0958", "+442079460958"),  # UK trunk prefix
        ("0044 20 7946 0958", "+442079460958"),
        ("+33 6 12 34 56 78", "+33612345678"),
        (" +12125650000 ", "+12125650000"),
    ],
)
def test_phone_to_e164(raw: str, e164: str) -> None:
    assert normalize_phone(raw) == e164


@pytest.mark.parametrize(
    "raw",
    ["(800)555-0100", "8005550100", "+1 800 CALL NOW", "+0123456789", "+1234", "+1234567890123456"],
)
def test_unusable_phones(raw: str) -> None:
    with pytest.raises(IdentifierError, match="phone"):
        normalize_phone(raw)


def test_names_as_google_ads_md_says() -> None:
    """First and last name: lowercase, trim, collapse spaces; the last name also loses its
    punctuation (google_ads.md, for both API paths)."""
    first = {
        "first_name": "  Mrs.   Mary-Jane ",
        "last_name": "O'Brien Jr.",
        "country": "ie",
        "postal_code": " D02 X285 ",
    }
    assert hash_identifiers(first).address == Address(
        h("mrs. mary-jane"), h("obrien jr"), "IE", "D02 X285"
    )
    assert normalize_name("  Ann   Marie ", strip_punctuation=True) == "ann marie"
    with pytest.raises(IdentifierError):
        normalize_name(" .. ", strip_punctuation=True)


def test_country_and_postal_code() -> None:
    assert normalize_country(" us ") == "US"
    with pytest.raises(IdentifierError, match="did you mean GB"):
        normalize_country("UK")
    with pytest.raises(IdentifierError, match="alpha-2"):
        normalize_country("USA")
    assert normalize_postal_code(" 94105 ", "US") == "94105"
    assert normalize_postal_code("941051234", "US") == "94105-1234"
    assert normalize_postal_code("94105-1234", "US") == "94105-1234"
    assert normalize_postal_code("SW1A  1AA", "GB") == "SW1A 1AA"
    with pytest.raises(IdentifierError, match="postal_code"):
        normalize_postal_code("9410", "US")


def test_member_identifiers_and_problems() -> None:
    ids = hash_identifiers(
        {"email": "Ann@Example.com", "phone": "212 555 0000", "first_name": "Ann"}
    )
    assert ids.emails == (h("ann@example.com"),) and ids.phones == () and ids.address is None
    assert not ids.empty and ids.count() == 1
    assert ids.problems == (
        "phone: needs a leading + and country code (E.164, e.g. +12125650000)",
        "address: needs first_name, last_name, country, postal_code "
        "(missing last_name, country, postal_code)",
    )


def test_rejection_names_the_reason_never_the_value() -> None:
    raw = {"email": "ann.secret@nowhere", "phone": "5550100"}
    ids = hash_identifiers(raw)
    assert ids.empty
    reason = ids.rejection()
    assert reason.startswith("no usable identifier for Google Customer Match (")
    assert "email: not an email address" in reason and "phone:" in reason
    assert "ann.secret" not in reason and "5550100" not in reason
    assert hash_identifiers({}).rejection().endswith("(none given)")
    assert hash_identifiers({"email": "  "}).empty


def test_prehashed_values_pass_through_lowercased() -> None:
    digest = h("ann@example.com")
    ids = hash_identifiers({"email": digest.upper(), "phone": h("+12125650000")})
    assert ids.emails == (digest,) and ids.phones == (h("+12125650000"),)


def test_kinds_are_the_capabilities() -> None:
    assert {"country", "postal_code"} == KINDS - HASHED_KINDS
    assert hash_identifiers({"mobile_id": "x", "email": "a@b.co"}).problems == (
        "mobile_id: not an identifier kind Google knows",
    )
