"""The emulator's user lists: members as sets of identifiers, indexed by identifier.

Google matches people, not rows: identifiers uploaded together belong to one person, an
add that shares an identifier with a known member extends that member, and a remove by
any of a member's identifiers removes the member. The index keeps both linear in the
request size, so a 10,000-member request costs what Google's does.
"""

from __future__ import annotations

import itertools
from typing import Any


class Audience:
    """One user list."""

    def __init__(self) -> None:
        self._members: dict[int, frozenset[str]] = {}
        self._index: dict[str, int] = {}
        self._ids = itertools.count()

    def members(self) -> set[frozenset[str]]:
        return set(self._members.values())

    def add(self, keys: frozenset[str]) -> None:
        merged = set(keys)
        for member in self._drop(keys):
            merged |= member
        number = next(self._ids)
        self._members[number] = frozenset(merged)
        self._index.update(dict.fromkeys(merged, number))

    def remove(self, keys: frozenset[str]) -> None:
        self._drop(keys)

    def clear(self) -> None:
        self._members.clear()
        self._index.clear()

    def _drop(self, keys: frozenset[str]) -> list[frozenset[str]]:
        numbers = {self._index[k] for k in keys if k in self._index}
        dropped = [self._members.pop(n) for n in numbers]
        for member in dropped:
            for key in member:
                self._index.pop(key, None)
        return dropped


def member_key(identifier: dict[str, Any]) -> str | None:
    """The stored form of one identifier (either API's spelling); None if it has none."""
    for field, kind in (
        ("emailAddress", "email"),
        ("hashedEmail", "email"),
        ("phoneNumber", "phone"),
        ("hashedPhoneNumber", "phone"),
        ("mobileId", "mobile"),
        ("thirdPartyUserId", "user_id"),
    ):
        if field in identifier:
            return f"{kind}={identifier[field]}"
    address = identifier.get("address") or identifier.get("addressInfo")
    if isinstance(address, dict):
        parts = [
            address.get(k) or address.get(alt, "")
            for k, alt in (
                ("givenName", "hashedFirstName"),
                ("familyName", "hashedLastName"),
                ("regionCode", "countryCode"),
                ("postalCode", "postalCode"),
            )
        ]
        return "address=" + "|".join(str(p) for p in parts)
    return None
