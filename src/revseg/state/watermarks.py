"""What an incremental run needs to know of the previous ones: the last as_of (the
watermark, in data time), the last full run, the definition hash, and whether a segment's
syncs have anything left to deliver."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlglot import exp

from revseg.state.store import StateStore


#: per model read: its row count, its recent changes, the entity's key checksum (see
#: revseg.compile.candidates.fingerprint_query); stored as JSON with each segment run
Fingerprint = dict[str, str]


@dataclass(frozen=True)
class LastRun:
    as_of: datetime
    definition_hash: str
    last_full_as_of: datetime | None
    fingerprint: Fingerprint | None
    members: int  # committed by that run


def _s(value: str) -> exp.Literal:
    return exp.Literal.string(value)


def last_run(store: StateStore, segment: str) -> LastRun | None:
    runs = store.t("segment_runs")
    mine = exp.EQ(this=exp.column("segment"), expression=_s(segment))
    full = exp.select(exp.Max(this=exp.column("as_of"))).from_(runs.copy()).where(
        exp.and_(mine.copy(), exp.EQ(this=exp.column("mode"), expression=_s("full"))))
    latest = (
        exp.select("as_of", "definition_hash", "fingerprint", exp.alias_(full.subquery(), "last_full"), "members")
        .from_(runs).where(mine)
        .order_by(exp.Ordered(this=exp.column("finished_at"), desc=True)).limit(1)
    )
    rows = store.wh.fetchall(latest)
    if not rows:
        return None
    as_of, definition, fingerprint, last_full, members = rows[0]
    return LastRun(as_of, str(definition), last_full, _parsed(fingerprint), int(members or 0))


def _parsed(fingerprint: str | None) -> Fingerprint | None:
    """A recorded fingerprint; None for none, or one in an older revseg's format."""
    try:
        value = json.loads(fingerprint) if fingerprint else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def syncs_settled(store: StateStore, syncs: list[tuple[str, int]]) -> bool:
    """True when no sync of the list has pending rows, unacknowledged batches, rejections
    still to retry, or a failed last run: then a run without candidates has nothing to do."""
    if not syncs:
        return True
    names = [_s(name) for name, _ in syncs]
    in_syncs = exp.column("sync").isin(*names)
    pending = exp.select(exp.Count(this=exp.Star())).from_(store.t("sync_members")).where(
        exp.and_(in_syncs, exp.column("pending")))
    inflight = exp.select(exp.Count(this=exp.Star())).from_(store.t("inflight")).where(in_syncs.copy())
    retry = exp.or_(*[
        exp.and_(exp.EQ(this=exp.column("sync"), expression=_s(name)),
                 exp.LT(this=exp.column("attempts"), expression=exp.Literal.number(limit)))
        for name, limit in syncs
    ])
    rejected = exp.select(exp.Count(this=exp.Star())).from_(store.t("rejections")).where(retry)
    # a sync that never ran must run
    seen = exp.select(exp.Count(this=exp.Distinct(expressions=[exp.column("sync")]))).from_(store.t("syncs")).where(in_syncs.copy())
    runs = store.t("sync_runs")
    ranked = exp.select(
        "sync", "status",
        exp.alias_(exp.Window(this=exp.RowNumber(), partition_by=[exp.column("sync")],
                              order=exp.Order(expressions=[exp.Ordered(this=exp.column("finished_at"), desc=True)])), "rn"),
    ).from_(runs).where(in_syncs.copy())
    failed = exp.select(exp.Count(this=exp.Star())).from_(ranked.subquery("x")).where(
        exp.and_(exp.EQ(this=exp.column("rn"), expression=exp.Literal.number(1)),
                 exp.EQ(this=exp.column("status"), expression=_s("failed"))))
    # one round trip: this runs on every poll of `revseg run`
    counts = store.wh.fetchall(exp.select(*(q.subquery() for q in (pending, inflight, rejected, seen, failed))))[0]
    waiting, in_flight, retrying, ran, last_failed = (int(v or 0) for v in counts)
    return not (waiting or in_flight or retrying or last_failed) and ran >= len(syncs)


def sync_caught_up(store: StateStore, sync: str, max_attempts: int, segment_as_of: datetime) -> bool:
    """True when the sync's destination holds exactly the segment as committed at
    ``segment_as_of``: its last run was at that as_of and succeeded, and it has nothing
    pending, in flight or to retry. Then an incremental run's diff for it can be limited to
    the candidates."""
    if not syncs_settled(store, [(sync, max_attempts)]):
        return False
    last = (
        exp.select("as_of", "status").from_(store.t("sync_runs"))
        .where(exp.EQ(this=exp.column("sync"), expression=_s(sync)))
        .order_by(exp.Ordered(this=exp.column("finished_at"), desc=True)).limit(1)
    )
    rows = store.wh.fetchall(last)
    return bool(rows) and rows[0][0] == segment_as_of and rows[0][1] == "success"
