"""What an incremental run needs to know of the previous ones: the last as_of (the
watermark, in data time), the last full run, the definition hash, and whether a segment's
syncs have anything left to deliver. Each is one query over rows that do not grow with the
number of runs (``segment_state``, ``sync_state``; the history tables are for people)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
    #: the as_of the stored membership was computed at: that run's, unless a killed run
    #: patched it since
    stage_as_of: datetime | None = None


def _s(value: str) -> exp.Literal:
    return exp.Literal.string(value)


def last_run(store: StateStore, segment: str) -> LastRun | None:
    query = (
        exp.select("as_of", "definition_hash", "fingerprint", "last_full_as_of", "members",
                   exp.alias_(store.stage_version(segment).subquery(), "stage_as_of"))
        .from_(store.t("segment_state")).where(exp.EQ(this=exp.column("segment"), expression=_s(segment)))
    )
    rows = store.wh.fetchall(query)
    if not rows:
        return None
    as_of, definition, fingerprint, last_full, members, stage_as_of = rows[0]
    return LastRun(as_of, str(definition), last_full, _parsed(fingerprint), int(members or 0), stage_as_of)


def _parsed(fingerprint: str | None) -> Fingerprint | None:
    """A recorded fingerprint; None for none, or one in an older revseg's format."""
    try:
        value = json.loads(fingerprint) if fingerprint else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def syncs_settled(store: StateStore, syncs: list[tuple[str, int]], due: Sequence[exp.Query] = ()) -> bool:
    """True when no sync of the list has pending rows, unacknowledged batches, rejections
    still to retry, or a failed last run, and none of the ``due`` queries (entities whose
    membership is due to change) has a row: then a run without candidates has nothing to do."""
    if not syncs and not due:
        return True
    # one round trip: this runs on every poll of `revseg run`
    unsettled = _unsettled(store, syncs) if syncs else []
    row = store.wh.fetchall(exp.select(*unsettled, *(exp.Exists(this=query) for query in due)))[0]
    counts, changing = row[:len(unsettled)], row[len(unsettled):]
    return not any(changing) and (not syncs or _settled(syncs, counts))


def _unsettled(store: StateStore, syncs: list[tuple[str, int]]) -> list[exp.Expr]:
    """Scalar subqueries: pending rows, rows in flight, rejections to retry, syncs that ran,
    syncs whose last run failed."""
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
    failed = exp.select(exp.Count(this=exp.Star())).from_(store.t("sync_state")).where(
        exp.and_(in_syncs.copy(), exp.EQ(this=exp.column("status"), expression=_s("failed"))))
    return [q.subquery() for q in (pending, inflight, rejected, seen, failed)]


def _settled(syncs: list[tuple[str, int]], counts: tuple[Any, ...]) -> bool:
    waiting, in_flight, retrying, ran, last_failed = (int(v or 0) for v in counts)
    return not (waiting or in_flight or retrying or last_failed) and ran >= len(syncs)


@dataclass(frozen=True)
class SyncState:
    """What a sync's run needs to know before it diffs, from one query."""

    settled: bool  # nothing pending, in flight or to retry, and the last run did not fail
    first_run: bool  # the sync never started a run
    in_flight: int  # rows of batches a killed run left in flight (see StateStore.recover)
    rejections: int  # rejected records on record, retryable or not
    last_as_of: datetime | None
    last_status: str | None

    def caught_up(self, segment_as_of: datetime) -> bool:
        """Whether the destination holds exactly the segment as committed at ``segment_as_of``:
        the last run was at that as_of and succeeded, and nothing is left to deliver. Then an
        incremental run's diff for it can be limited to the candidates."""
        return self.settled and self.last_as_of == segment_as_of and self.last_status == "success"


def sync_state(store: StateStore, sync: str, max_attempts: int) -> SyncState:
    mine = exp.EQ(this=exp.column("sync"), expression=_s(sync))
    last = exp.select("as_of").from_(store.t("sync_state")).where(mine)
    rejections = exp.select(exp.Count(this=exp.Star())).from_(store.t("rejections")).where(mine.copy())
    syncs = [(sync, max_attempts)]
    row = store.wh.fetchall(exp.select(
        *_unsettled(store, syncs), rejections.subquery(), last.subquery(),
        last.copy().select("status", append=False).subquery(),
    ))[0]
    counts, (rejected, last_as_of, last_status) = row[:5], row[5:]
    return SyncState(settled=_settled(syncs, counts), first_run=not row[3], in_flight=int(row[1] or 0),
                     rejections=int(rejected or 0), last_as_of=last_as_of, last_status=last_status)
