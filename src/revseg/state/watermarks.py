"""What an incremental run needs to know of the previous ones: the last as_of (the
watermark, in data time), the last full run, the definition hash, and whether a segment's
syncs have anything left to deliver. Each is one query over rows that do not grow with the
number of runs (``segment_state``, ``sync_state``; the history tables are for people)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlglot import exp

from revseg.compile.named_values import named_value, named_values
from revseg.compile.values import timestamp_literal

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
                   exp.alias_(store.stage_version_query(segment).subquery(), "stage_as_of"))
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
    changing = [_count(f"due{i}", query.limit(1).subquery("d")) for i, query in enumerate(due)]
    counts = _counts(store, _unsettled(store, syncs) + changing)
    return not any(counts[f"due{i}"] for i in range(len(due))) and _settled(syncs, counts)


def _count(name: str, source: exp.Expr, where: exp.Expr | None = None, value: exp.Expr | None = None) -> exp.Select:
    """``SELECT name AS k, COUNT(*) AS v FROM source WHERE where`` (or another aggregate)."""
    query = named_value(name, value if value is not None else exp.Count(this=exp.Star())).from_(source)
    return query.where(where) if where is not None else query


def _counts(store: StateStore, branches: list[exp.Select]) -> dict[str, int]:
    """Named counts in one round trip (see :mod:`revseg.compile.named_values`)."""
    return {str(name): int(value or 0) for name, value in store.wh.fetchall(named_values(branches))}


def _unsettled(store: StateStore, syncs: list[tuple[str, int]]) -> list[exp.Select]:
    """Counts of pending rows, rows in flight, rejections to retry, syncs that ran, syncs whose
    last run failed."""
    if not syncs:
        return []
    in_syncs = exp.column("sync").isin(*[_s(name) for name, _ in syncs])
    retry = exp.or_(*[
        exp.and_(exp.EQ(this=exp.column("sync"), expression=_s(name)),
                 exp.LT(this=exp.column("attempts"), expression=exp.Literal.number(limit)))
        for name, limit in syncs
    ])
    return [
        _count("pending", store.t("sync_members"), exp.and_(in_syncs.copy(), exp.column("pending"))),
        _count("in_flight", store.t("inflight"), in_syncs.copy()),
        _count("retrying", store.t("rejections"), retry),
        # a sync that never ran must run
        _count("ran", store.t("syncs"), in_syncs.copy(), exp.Count(this=exp.Distinct(expressions=[exp.column("sync")]))),
        _count("failed", store.t("sync_state"),
               exp.and_(in_syncs.copy(), exp.EQ(this=exp.column("status"), expression=_s("failed")))),
    ]


def _settled(syncs: list[tuple[str, int]], counts: dict[str, int]) -> bool:
    if not syncs:
        return True
    return not (counts["pending"] or counts["in_flight"] or counts["retrying"] or counts["failed"]) \
        and counts["ran"] >= len(syncs)


@dataclass(frozen=True)
class SyncState:
    """What a sync's run needs to know before it diffs, from one query."""

    settled: bool  # nothing pending, in flight or to retry, and the last run did not fail
    first_run: bool  # the sync never started a run
    in_flight: int  # rows of batches a killed run left in flight (see StateStore.recover)
    rejections: int  # rejected records on record, retryable or not
    #: the destination holds exactly the segment as committed at the as_of asked about: the
    #: last run was at that as_of and succeeded, and nothing is left to deliver. Then an
    #: incremental run's diff for it can be limited to the candidates.
    caught_up: bool


def sync_state(store: StateStore, sync: str, max_attempts: int, segment_as_of: datetime | None) -> SyncState:
    mine = exp.EQ(this=exp.column("sync"), expression=_s(sync))
    branches = [*_unsettled(store, [(sync, max_attempts)]), _count("rejections", store.t("rejections"), mine.copy())]
    if segment_as_of is not None:
        branches.append(_count("succeeded_at", store.t("sync_state"), exp.and_(
            mine.copy(), exp.EQ(this=exp.column("as_of"), expression=timestamp_literal(segment_as_of)),
            exp.EQ(this=exp.column("status"), expression=_s("success")))))
    counts = _counts(store, branches)
    settled = _settled([(sync, max_attempts)], counts)
    return SyncState(settled=settled, first_run=not counts["ran"], in_flight=counts["in_flight"],
                     rejections=counts["rejections"], caught_up=settled and bool(counts.get("succeeded_at")))
