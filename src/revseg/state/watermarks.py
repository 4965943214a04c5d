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

from revseg.compile.candidates import Fingerprint
from revseg.compile.named_values import named_value, named_values
from revseg.compile.values import timestamp_literal
from revseg.state.store import StateStore


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
    return last_runs(store, [segment]).get(segment)


def last_runs(store: StateStore, segments: Sequence[str]) -> dict[str, LastRun]:
    """The last run of each of ``segments`` that has one, in one query."""
    if not segments:
        return {}
    version = exp.select(exp.column("as_of", table="v")).from_(exp.alias_(store.t("stage_versions"), "v", table=True)) \
        .where(exp.EQ(this=exp.column("segment", table="v"), expression=exp.column("segment", table="s")))
    columns = ("segment", "as_of", "definition_hash", "fingerprint", "last_full_as_of", "members")
    query = (
        exp.select(*[exp.column(c, table="s") for c in columns], exp.alias_(version.subquery(), "stage_as_of"))
        .from_(exp.alias_(store.t("segment_state"), "s", table=True))
        .where(exp.column("segment", table="s").isin(*[_s(name) for name in segments]))
    )
    return {
        str(segment): LastRun(as_of, str(definition), last_full, _parsed(fingerprint), int(members or 0), stage_as_of)
        for segment, as_of, definition, fingerprint, last_full, members, stage_as_of in store.wh.fetchall(query)
    }


def _parsed(fingerprint: str | None) -> Fingerprint | None:
    """A recorded fingerprint; None for none, or one in an older revseg's format."""
    try:
        value = json.loads(fingerprint) if fingerprint else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def settled_counts(store: StateStore, syncs: Sequence[tuple[str, int]]) -> list[exp.Select]:
    """Branches of a query of named counts (see :func:`counts`) that :func:`settled` reads:
    per sync, its pending rows, rows in flight, rejections to retry, whether it ever ran and
    whether its last run failed. Grouped by sync, so one query serves the syncs of every
    segment of a run; a sync with nothing of a kind has no row of it."""
    if not syncs:
        return []
    in_syncs = exp.column("sync").isin(*[_s(name) for name, _ in syncs])
    retry = exp.or_(*[
        exp.and_(exp.EQ(this=exp.column("sync"), expression=_s(name)),
                 exp.LT(this=exp.column("attempts"), expression=exp.Literal.number(limit)))
        for name, limit in syncs
    ])
    return [
        _per_sync("pending", store.t("sync_members"), exp.and_(in_syncs.copy(), exp.column("pending"))),
        _per_sync("in_flight", store.t("inflight"), in_syncs.copy()),
        _per_sync("retrying", store.t("rejections"), retry),
        _per_sync("ran", store.t("syncs"), in_syncs.copy()),  # a sync that never ran must run
        _per_sync("failed", store.t("sync_state"),  # failed, or stopped (SIGTERM) before the end
                  exp.and_(in_syncs.copy(), exp.column("status").isin(_s("failed"), _s("interrupted")))),
    ]


def settled(syncs: Sequence[tuple[str, int]], counts: dict[str, int]) -> bool:
    """No sync of the list has pending rows, unacknowledged batches, rejections still to
    retry, or a failed last run, and every one has run (``counts``: of :func:`settled_counts`)."""
    return all(
        not any(counts.get(f"{kind}:{name}") for kind in ("pending", "in_flight", "retrying", "failed"))
        and counts.get(f"ran:{name}")
        for name, _ in syncs
    )


def due_count(name: str, query: exp.Query) -> exp.Select:
    """A branch counting whether ``query`` has a row (its first row only)."""
    return _count(name, query.limit(1).subquery("d"))


def _per_sync(kind: str, table: exp.Table, where: exp.Expr) -> exp.Select:
    """``SELECT '<kind>:' || sync AS k, COUNT(*) AS v FROM table WHERE where GROUP BY sync``."""
    key = exp.Concat(expressions=[_s(f"{kind}:"), exp.column("sync")], safe=True, coalesce=False)
    return named_value(key, _counted()).from_(table, copy=False).where(where, copy=False) \
        .group_by(exp.column("sync"), copy=False)


def _count(name: str, source: exp.Expr, where: exp.Expr | None = None) -> exp.Select:
    """``SELECT name AS k, COUNT(*) AS v FROM source WHERE where``."""
    query = named_value(name, _counted()).from_(source, copy=False)
    return query.where(where, copy=False) if where is not None else query


def _counted() -> exp.Expr:
    """``COUNT(*)`` as text: a query of named values may mix counts with text values."""
    return exp.cast(exp.Count(this=exp.Star()), exp.DataType.build("TEXT"))


def counts(store: StateStore, branches: list[exp.Select]) -> dict[str, int]:
    """Named counts in one round trip (see :mod:`revseg.compile.named_values`)."""
    return {str(name): int(value or 0) for name, value in store.wh.fetchall(named_values(branches))}


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
    branches = [*settled_counts(store, [(sync, max_attempts)]), _count("rejections", store.t("rejections"), mine.copy())]
    if segment_as_of is not None:
        branches.append(_count("succeeded_at", store.t("sync_state"), exp.and_(
            mine.copy(), exp.EQ(this=exp.column("as_of"), expression=timestamp_literal(segment_as_of)),
            exp.EQ(this=exp.column("status"), expression=_s("success")))))
    found = counts(store, branches)
    done = settled([(sync, max_attempts)], found)
    return SyncState(settled=done, first_run=not found.get(f"ran:{sync}"), in_flight=found.get(f"in_flight:{sync}", 0),
                     rejections=found["rejections"], caught_up=done and bool(found.get("succeeded_at")))
