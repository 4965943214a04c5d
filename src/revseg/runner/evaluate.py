"""Evaluate one segment for a run, in full or incrementally, into its stage table.

Mode, in order: ``full`` when asked (``--full-refresh``), on the first run, when the
definition changed, when as_of went backwards, when ``full_refresh_every`` has passed since
the last full run (data time), or when the segment cannot be incremental (see
:mod:`revseg.compile.candidates`); else ``incremental``: only candidates are evaluated and
everyone else keeps their previous membership (with fresh traits); ``skipped`` when there are
no candidates and every sync of the segment is settled.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlglot import exp

from revseg.compile.candidates import (
    NotIncremental,
    candidates_query,
    fingerprint_query,
    plan_incremental,
)
from revseg.compile.catalog import Catalog
from revseg.compile.delta import stage_query
from revseg.compile.membership import ID, membership_query, traits_query
from revseg.spec.project import Project, Segment
from revseg.state.store import StateStore
from revseg.state.watermarks import last_run, syncs_settled


@dataclass(frozen=True)
class Evaluation:
    mode: str  # full | incremental | skipped
    members: int
    candidates: int | None = None
    reason: str = ""
    fingerprint: str | None = None


def definition_hash(project: Project, segment: Segment) -> str:
    """The segment's definition with everything it reads: a change forces a full run."""
    parts = [segment.definition, repr(sorted((n, repr(m)) for n, m in project.models.items()))]
    parts += sorted(s.definition for s in project.segments.values() if s.name != segment.name)
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def trait_names(segment: Segment, membership: exp.Select) -> list[str]:
    return [t.name for t in segment.traits] if segment.where is not None else list(membership.named_selects[1:])


def evaluate(project: Project, catalog: Catalog, store: StateStore, segment: Segment, as_of: datetime,
             *, full_refresh: bool) -> Evaluation:
    previous = last_run(store, segment.name)
    reason = _full_reason(project, segment, previous, as_of, full_refresh)
    full = membership_query(project, catalog, segment.name, as_of)
    traits = trait_names(segment, full)
    fingerprint = _fingerprint(project, catalog, store, segment, as_of)  # the next run compares with it
    if reason is not None:
        members = store.stage(segment.name, stage_query(full, traits))
        return Evaluation("full", members, reason=reason, fingerprint=fingerprint)
    assert previous is not None
    plan = plan_incremental(project, segment)
    current = fingerprint if as_of == previous.as_of else _fingerprint(project, catalog, store, segment, previous.as_of)
    if current == previous.fingerprint:  # no row arrived or changed since the previous run
        due = candidates_query(project, catalog, plan, previous.as_of, as_of, boundaries_only=True)
        limits = [(s.name, s.max_attempts) for s in segment.syncs]
        waiting = any(s.quiet_hours is not None for s in segment.syncs)  # deferred sends are due later
        if not waiting and not store.wh.fetchall(due.limit(1)) and syncs_settled(store, limits):
            return Evaluation("skipped", -1, 0, fingerprint=fingerprint)
    candidates = store.t(f"cand__{segment.name}")
    store.replace_table(candidates, candidates_query(project, catalog, plan, previous.as_of, as_of))
    count = int(store.scalar(exp.select(exp.Count(this=exp.Star())).from_(candidates.copy())))
    changed = membership_query(project, catalog, segment.name, as_of, candidates=candidates)
    both = exp.union(exp.select("*").from_(_unchanged(project, catalog, store, segment, candidates).subquery("u")),
                     exp.select("*").from_(changed.subquery("c")), distinct=False)
    staged = stage_query(exp.select("*").from_(both.subquery("b")), traits)
    members = store.stage(segment.name, staged)
    store.drop(candidates)
    return Evaluation("incremental", members, count, fingerprint=fingerprint)


def _fingerprint(project: Project, catalog: Catalog, store: StateStore, segment: Segment,
                 since: datetime) -> str | None:
    """What a run following a run at ``since`` compares to decide it has no new data."""
    try:
        plan = plan_incremental(project, segment)
    except NotIncremental:
        return None
    row = store.wh.fetchall(fingerprint_query(project, catalog, plan, since))[0]
    return "|".join(str(v) for v in row)


def _unchanged(project: Project, catalog: Catalog, store: StateStore, segment: Segment,
               candidates: exp.Table) -> exp.Select:
    """Previous members that are not candidates, with their current traits."""
    entity = project.models[segment.entity]
    key = catalog.column(entity.name, entity.primary_key or "")
    assert key is not None
    pk = exp.column(exp.to_identifier(key.name, quoted=True), table="e")
    previous = exp.select("id").from_(store.t("segment_members")).where(
        exp.EQ(this=exp.column("segment"), expression=exp.Literal.string(segment.name)))
    return traits_query(project, catalog, segment.name).where(exp.and_(
        exp.cast(pk, exp.DataType.build("TEXT")).isin(query=previous),
        exp.not_(pk.copy().isin(query=exp.select("k").from_(candidates.copy()))),
    ))


def _full_reason(project: Project, segment: Segment, previous: object, as_of: datetime,
                 full_refresh: bool) -> str | None:
    from revseg.state.watermarks import LastRun

    if full_refresh:
        return "--full-refresh"
    if not isinstance(previous, LastRun):
        return "first run"
    if previous.definition_hash != definition_hash(project, segment):
        return "definition changed"
    if as_of < previous.as_of:
        return "as_of is before the previous run's"
    if previous.last_full_as_of is None or as_of - previous.last_full_as_of >= segment.full_refresh_every:
        return "full_refresh_every"
    try:
        plan_incremental(project, segment)
    except NotIncremental as exc:
        return str(exc)
    return None


__all__ = ["evaluate", "Evaluation", "definition_hash", "ID"]
