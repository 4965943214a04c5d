"""The users behind :class:`~revseg.sandbox.braze_emulator.BrazeEmulator`.

A user is found by the object's identifier, in Braze's order of precedence: ``braze_id``,
``external_id``, ``user_alias``, then ``email`` (which wins over ``phone`` when both are
given); an ``external_id`` object creates its user, an email/phone/alias object creates an
identified-by-that user, and ``_update_existing_only: true`` (the default for aliases)
never creates one. Callers hold the emulator's lock.
"""

from __future__ import annotations

import itertools
from typing import Any

IDENTIFIERS = ("external_id", "user_alias", "braze_id", "email", "phone")
#: keys of an object that are not attribute writes (no data point).
META = frozenset({"external_id", "user_alias", "braze_id", "_update_existing_only"})


class UserStore:
    """Users as attribute dicts, with their subscription-group states."""

    def __init__(self) -> None:
        self.users: list[dict[str, Any]] = []
        self.subscriptions: dict[str, dict[int, str]] = {}  # group -> user index -> state
        self.events: list[dict[str, Any]] = []
        self.data_points = 0
        self._ids = itertools.count(1)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {self.label(u): {k: v for k, v in u.items() if k != "braze_id"} for u in self.users}

    @staticmethod
    def label(user: dict[str, Any]) -> str:
        if user.get("external_id"):
            return str(user["external_id"])
        for kind in ("email", "phone"):
            if user.get(kind):
                return f"{kind}:{user[kind]}"
        return f"braze_id:{user['braze_id']}"

    def subscribed(self, group: str) -> set[str]:
        states = self.subscriptions.get(group, {})
        return {self.label(self.users[i]) for i, s in states.items() if s == "subscribed"}

    def find(self, item: dict[str, Any]) -> int | None:
        """The index of the user an object identifies, if it exists."""
        for kind in ("braze_id", "external_id"):
            if item.get(kind):
                return next(
                    (i for i, u in enumerate(self.users) if u.get(kind) == item[kind]), None
                )
        alias = item.get("user_alias")
        if isinstance(alias, dict):
            return next((i for i, u in enumerate(self.users) if u.get("_alias") == alias), None)
        for kind in ("email", "phone"):
            if item.get(kind):
                value = str(item[kind]).lower()
                matches = [
                    i for i, u in enumerate(self.users) if str(u.get(kind, "")).lower() == value
                ]
                return matches[-1] if matches else None
        return None

    def track(self, item: dict[str, Any]) -> None:
        """Apply one valid attributes object."""
        index = self.find(item)
        existing_only = item.get("_update_existing_only", "user_alias" in item)
        if index is None:
            if existing_only or item.get("braze_id"):
                return
            user: dict[str, Any] = {"braze_id": f"b{next(self._ids):08d}"}
            if item.get("external_id"):
                user["external_id"] = item["external_id"]
            elif isinstance(item.get("user_alias"), dict):
                user["_alias"] = item["user_alias"]
            self.users.append(user)
            index = len(self.users) - 1
        user = self.users[index]
        for name, value in item.items():
            if name in META:
                continue
            self.data_points += 1
            if name == "subscription_groups":
                self.data_points += len(value) - 1
                for entry in value:
                    group = self.subscriptions.setdefault(entry["subscription_group_id"], {})
                    group[index] = entry["subscription_state"]
            else:
                self._write(user, name, value)

    @staticmethod
    def _write(user: dict[str, Any], name: str, value: Any) -> None:
        if value is None:
            user.pop(name, None)
        elif isinstance(value, dict) and set(value) == {"inc"}:
            user[name] = (user.get(name) or 0) + value["inc"]
        elif isinstance(value, dict) and value and set(value) <= {"add", "remove"}:
            current = [v for v in user.get(name) or [] if v not in value.get("remove", [])]
            current += [v for v in value.get("add", []) if v not in current]
            user[name] = current[-25:]  # default array cap: overflow is truncated
        else:
            user[name] = value
