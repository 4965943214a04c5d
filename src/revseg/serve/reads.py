"""The read API: membership from the committed snapshots in the state schema (SPEC 5.1).

Each function takes a :class:`StateStore` on the calling thread's own connection and returns
the JSON document to answer. The state tables exist: serve answers only once the scheduler's
session has ensured them. Members page by keyset on ``id`` (text order): the cursor is the
last id of the page, base64url-encoded so clients treat it as opaque.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlglot import exp

from revseg.spec.project import Project
from revseg.state import history
from revseg.state.store import StateStore

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000


class BadQuery(ValueError):
    """A query parameter is invalid (400)."""


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.isoformat(timespec="microseconds" if moment.microsecond else "seconds") + "Z"


def segments(project: Project, store: StateStore, checked_at: Mapping[str, datetime],
             now: datetime) -> dict[str, Any]:
    """Every segment of the project: members, the last run's as_of, and freshness: seconds
    since the scheduler last checked it (a check that finds nothing new writes no run), else
    since the last run's as_of; null when it never ran."""
    counts = history.member_counts(store)
    last = history.segment_status(store)
    out = []
    for name in sorted(project.segments):
        as_of = last[name]["as_of"] if name in last else None
        fresh = max((t for t in (checked_at.get(name), as_of) if t is not None), default=None)
        out.append({
            "name": name,
            "members": counts.get(name, 0),
            "as_of": _iso(as_of),
            "freshness_seconds": round(max(0.0, (now - fresh).total_seconds()), 3) if fresh else None,
        })
    return {"segments": out}


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise BadQuery(f"limit must be an integer from 1 to {MAX_LIMIT}, not {raw!r}") from None
    if limit < 1:
        raise BadQuery(f"limit must be an integer from 1 to {MAX_LIMIT}, not {limit}")
    return min(limit, MAX_LIMIT)


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(raw: str) -> str:
    try:
        return base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadQuery("cursor is not one this API returned (pass next_cursor as it came)") from None


def members(store: StateStore, segment: str, limit: int, cursor: str | None) -> dict[str, Any]:
    """One page of a segment's members by id; ``next_cursor`` is null on the last page."""
    query = exp.select("id").from_(store.t("segment_members")).where(
        exp.EQ(this=exp.column("segment"), expression=exp.Literal.string(segment)))
    if cursor:
        query = query.where(exp.GT(this=exp.column("id"), expression=exp.Literal.string(decode_cursor(cursor))))
    rows = store.wh.fetchall(query.order_by("id").limit(limit + 1))
    ids = [str(r[0]) for r in rows[:limit]]
    return {"members": ids, "next_cursor": encode_cursor(ids[-1]) if len(rows) > limit else None}


def profile(project: Project, store: StateStore, entity_id: str) -> dict[str, Any]:
    """The segments an entity is a member of (of this project's segments), by name."""
    query = (
        exp.select("segment").from_(store.t("segment_members"))
        .where(exp.EQ(this=exp.column("id"), expression=exp.Literal.string(entity_id)))
        .order_by("segment")
    )
    rows = store.wh.fetchall(query)
    return {"id": entity_id, "segments": [str(r[0]) for r in rows if r[0] in project.segments]}
