"""Bulk hashing (destinations/hashing.py) agrees with ``identifiers.hash_value`` on every value."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revseg.destinations import identifiers as ids
from revseg.destinations.hashing import ASCII_RULES, hash_column

NORMALIZERS = [*ASCII_RULES, ids.normalize_zip, ids.normalize_gender]

#: the characters the rules treat specially: ASCII whitespace and controls, separators,
#: digits, both cases, and a few non-ASCII letters, digits and spaces (per-value path)
TRICKY = "".join(chr(i) for i in range(0x21)) + "\x7f.@+-()_'/aAzZ09" + "éÉİßٳ\u00a0\u2028\u0301"
values = st.lists(
    st.one_of(st.none(), st.text(alphabet=TRICKY, max_size=24), st.text(max_size=12)), max_size=30
)


def expected(column: list[str | None], normalize: ids.Normalizer) -> list[str | None]:
    return [None if v is None else ids.hash_value(v, normalize) for v in column]


@pytest.mark.parametrize("normalize", NORMALIZERS, ids=lambda n: n.__name__)
def test_vectors_and_edge_cases(normalize: ids.Normalizer) -> None:
    column = [
        " Jane.Doe@Example.COM \n", "jane.doe@example.com.", "\x00Jane.Doe@example.com\x0b", "n/a", "",
        "+1 (415) 555-2671", "001-415-555-2671", "12", "O'Neil", "José", " US ", "USA", None,
        " " + "AB" * 32 + "\x1c", "ab" * 32 + "\x00", "a@b.c\x00.", "a\x1c@b.c",
        "Ann@Exämple.com",
    ]
    assert hash_column(column, normalize) == expected(column, normalize)


@settings(deadline=None)
@given(values, st.sampled_from(NORMALIZERS))
def test_bulk_equals_per_value(column: list[str | None], normalize: ids.Normalizer) -> None:
    assert hash_column(column, normalize) == expected(column, normalize)


def test_empty_column() -> None:
    assert hash_column([], ids.normalize_email) == []
