"""Before a run evaluates anything: one round trip that tells, for every selected segment,
what changed in the data it reads and whether it has anything to do.

Per segment that can be incremental, the probe takes its fingerprint since this run's as_of
(what the next run compares) and since its previous run's (compared with what that run
recorded), and, when nothing changed, whether any entity is due to cross a time boundary and
whether its syncs have anything left to deliver. All of it, for all segments, is one query of
named values: models read by several segments are counted once, and a ``revseg run`` poll over
N continuous segments that finds nothing new costs one query, not 2N.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlglot import exp

from revseg.compile.candidates import (
    KEYS,
    Fingerprint,
    IncrementalPlan,
    NotIncremental,
    candidate_parts,
    fingerprint_branches,
    fingerprint_of,
    plan_incremental,
    rows_key,
    window_key,
)
from revseg.compile.catalog import Catalog
from revseg.compile.named_values import named_values
from revseg.spec.project import Project, Segment
from revseg.state.store import StateStore
from revseg.state.watermarks import LastRun, due_count, settled, settled_counts

@dataclass(frozen=True)
class Probe:
    """What the probe found for one segment."""

    plan: IncrementalPlan | None  # None: the segment is always evaluated in full
    #: why this run must evaluate the segment in full (None: it may be incremental)
    full_reason: str | None
    fingerprint: Fingerprint | None = None  # since this as_of (None without a plan)
    #: since the previous run's as_of, when it may be compared with what that run recorded
    current: Fingerprint | None = None
    #: nothing arrived or changed, no entity crossed a boundary, every sync is settled
    idle: bool = False


def probe(project: Project, catalog: Catalog, store: StateStore, segments: Sequence[Segment], as_of: datetime,
          previous: Mapping[str, LastRun], definitions: Mapping[str, str], *, full_refresh: bool) -> dict[str, Probe]:
    """A Probe per segment (``previous``: the last run of each that has one; ``definitions``:
    each one's definition hash)."""
    plans: dict[str, IncrementalPlan | None] = {}
    reasons: dict[str, str | None] = {}
    branches: dict[str, exp.Select] = {}
    quiet: list[Segment] = []  # segments whose fingerprints are compared: may be idle
    for segment in segments:
        plan, why_not = _plan(project, segment)
        plans[segment.name] = plan
        last = previous.get(segment.name)
        reason = reasons[segment.name] = full_reason(segment, last, definitions[segment.name], why_not, as_of,
                                                     full_refresh)
        if plan is None:
            continue
        fingerprint_branches(project, catalog, plan, as_of, branches)
        if last is not None:
            fingerprint_branches(project, catalog, plan, last.as_of, branches)
        # the stored membership is exactly the previous run's, unless a killed run patched it since
        if reason is None and last is not None and last.stage_as_of == last.as_of \
                and not any(s.quiet_hours is not None for s in segment.syncs):  # deferred sends are due later
            quiet.append(segment)
    syncs = [(s.name, s.max_attempts) for segment in quiet for s in segment.syncs]
    due: dict[str, list[str]] = {}
    extra = settled_counts(store, syncs)
    for segment in quiet:
        plan, last = plans[segment.name], previous[segment.name]
        assert plan is not None
        parts = candidate_parts(project, catalog, plan, last.as_of, as_of, boundaries_only=True)
        due[segment.name] = [f"due:{segment.name}:{i}" for i in range(len(parts))]
        extra += [due_count(name, part) for name, part in zip(due[segment.name], parts, strict=True)]
    every = [*branches.values(), *extra]
    values = {str(k): str(v) for k, v in store.wh.fetchall(named_values(every))} if every else {}
    counts = {k: int(v) for k, v in values.items() if k not in branches}
    out: dict[str, Probe] = {}
    for segment in segments:
        plan, reason = plans[segment.name], reasons[segment.name]
        if plan is None:
            out[segment.name] = Probe(None, reason)
            continue
        last = previous.get(segment.name)
        fingerprint = fingerprint_of(values, project, plan, as_of)
        current = fingerprint_of(values, project, plan, last.as_of) if last is not None else None
        if reason is None and last is not None and current is not None:
            reason = deleted_rows(plan, last.fingerprint, current)
        idle = reason is None and segment.name in due and _idle(segment, last, current, due[segment.name], counts)
        out[segment.name] = Probe(plan, reason, fingerprint, current, idle)
    return out


def _idle(segment: Segment, last: LastRun | None, current: Fingerprint | None, due: list[str],
          counts: Mapping[str, int]) -> bool:
    """Nothing arrived or changed since the previous run, no entity is due to cross a time
    boundary (``due``: the names of those counts) and every sync of the segment is settled."""
    return last is not None and current == _without_keys(last.fingerprint) \
        and not any(counts.get(name) for name in due) \
        and settled([(s.name, s.max_attempts) for s in segment.syncs], counts)


def deleted_rows(plan: IncrementalPlan, recorded: Fingerprint | None, current: Fingerprint) -> str | None:
    """Why a full run is due when rows of a model other than the entity were deleted since the
    previous run: a deleted event or order carries no watermark, so no incremental run would
    see the member it qualified (SPEC 4 has every member re-evaluated; a full run does that).

    ``recorded`` was taken by the previous run, ``current`` now, over the same window (the
    rows changed after the previous as_of minus lookback). A model's rows grew by what
    arrived minus what was deleted; its window grew by what arrived in it, minus what was
    deleted in it. Growing less than the window is a deletion before the window that late
    arrivals do not make up for. (Deletes within the window, or exactly offset by late rows,
    wait for ``full_refresh_every``. The entity's deletes are found by its key checksum, and
    its updates move rows into the window without adding any.)"""
    if not recorded:
        return None
    for name in sorted(plan.boundaries):
        if name == plan.entity:
            continue
        counts = [_count(recorded, name), _window(recorded, name), _count(current, name), _window(current, name)]
        if None in counts:  # recorded by an older revseg, or not a number
            continue
        rows, window, now_rows, now_window = counts
        if now_rows - rows < now_window - window:  # type: ignore[operator]
            return f"rows of model '{name}' were deleted since the previous run"
    return None


def _count(fingerprint: Fingerprint, model: str) -> int | None:
    """A model's row count in a fingerprint."""
    value = fingerprint.get(rows_key(model))
    return int(value) if value is not None and value.isdigit() else None


def _window(fingerprint: Fingerprint, model: str) -> int | None:
    """The count of a model's ``recent`` fingerprint value (``max|count|sum``)."""
    parts = (fingerprint.get(window_key(model)) or "").split("|")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def full_reason(segment: Segment, previous: LastRun | None, definition: str, not_incremental: str | None,
                as_of: datetime, full_refresh: bool) -> str | None:
    """Why this run must evaluate ``segment`` in full; None when it may be incremental
    (``not_incremental``: why the segment can never be, if it cannot)."""
    if full_refresh:
        return "--full-refresh"
    if previous is None:
        return "first run"
    if previous.definition_hash != definition:
        return "definition changed"
    if as_of < previous.as_of:
        return "as_of is before the previous run's"
    if previous.last_full_as_of is None or as_of - previous.last_full_as_of >= segment.full_refresh_every:
        return "full_refresh_every"
    return not_incremental


def _plan(project: Project, segment: Segment) -> tuple[IncrementalPlan | None, str | None]:
    """The segment's incremental plan, or None and why it has none."""
    try:
        return plan_incremental(project, segment), None
    except NotIncremental as exc:
        return None, str(exc)


def _without_keys(fingerprint: Fingerprint | None) -> Fingerprint:
    return {name: value for name, value in (fingerprint or {}).items() if not name.endswith(KEYS)}
