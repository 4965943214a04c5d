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
    IncrementalPlan,
    NotIncremental,
    candidate_parts,
    candidates_query,
    deleted_members_query,
    fingerprint_query,
    key_checksum_query,
    plan_incremental,
    rows_key,
)
from revseg.compile.catalog import Catalog
from revseg.compile.delta import HASH, stage_query
from revseg.compile.membership import ID, membership_query
from revseg.spec.project import Project, Segment
from revseg.state.store import StateStore
from revseg.state.watermarks import Fingerprint, LastRun, last_run, syncs_settled


@dataclass(frozen=True)
class Evaluation:
    mode: str  # full | incremental | skipped
    members: int
    candidates: int | None = None
    reason: str = ""
    fingerprint: Fingerprint | None = None
    #: incremental runs: the table of candidate keys (``k``, and ``id`` as text) and the table
    #: of their new membership; the segment commit and settled syncs' diffs read only these
    candidates_table: exp.Table | None = None
    changed_table: exp.Table | None = None
    previous_as_of: datetime | None = None
    #: the as_of of the latest full run, this one included (full_refresh_every counts from it)
    last_full_as_of: datetime | None = None
    #: the previous run (None: there is none)
    previous: LastRun | None = None

    def recorded(self, as_of: datetime, definition: str) -> LastRun:
        """The last run, once this one is recorded."""
        return LastRun(as_of, definition, self.last_full_as_of, self.fingerprint, self.members, stage_as_of=as_of)


def definition_hash(project: Project, segment: Segment) -> str:
    """The segment's definition with everything it reads: a change forces a full run."""
    parts = [segment.definition, repr(sorted((n, repr(m)) for n, m in project.models.items()))]
    parts += sorted(s.definition for s in project.segments.values() if s.name != segment.name)
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def trait_names(segment: Segment, membership: exp.Select) -> list[str]:
    return [t.name for t in segment.traits] if segment.where is not None else list(membership.named_selects[1:])


def evaluate(project: Project, catalog: Catalog, store: StateStore, segment: Segment, as_of: datetime,
             *, full_refresh: bool, checksums: dict[tuple[str, str], str] | None = None,
             known: LastRun | None = None) -> Evaluation:
    """``checksums``: entity key checksums taken earlier in the same run, by entity and row
    count (segments of one entity share one scan of its keys); ``known``: the segment's last
    run as this process recorded it (else it is read)."""
    previous = known if known is not None else last_run(store, segment.name)
    reason = _full_reason(project, segment, previous, as_of, full_refresh)
    plan = _plan(project, segment)
    # this run records the first for the next run; it compares the second with the previous run's
    since_previous = previous.as_of if previous is not None else as_of
    fingerprint, current = _fingerprints(project, catalog, store, plan, as_of, since_previous)
    version = previous.stage_as_of if previous is not None else None
    # the stored membership is exactly the previous run's, unless a killed run patched it since
    clean = previous is not None and version == previous.as_of
    if reason is None and clean and plan is not None and current is not None:
        assert previous is not None
        if _nothing_to_do(project, catalog, store, segment, plan, previous, as_of, current):
            return Evaluation("skipped", previous.members, 0, fingerprint=fingerprint, previous=previous)
    if plan is not None and fingerprint is not None:
        fingerprint = _with_key_checksum(project, catalog, store, plan, fingerprint,
                                         checksums if checksums is not None else {})
    stored = store.stage_columns(segment.name)
    if reason is None and stored is None:
        reason = "no stored membership (first run of this revseg version)"
    if reason is None and not clean and version is not None and version > as_of:
        reason = "a killed run left the stored membership at a later as_of"
    if reason is not None:
        full = membership_query(project, catalog, segment.name, as_of)
        traits = trait_names(segment, full)
        return _full(store, segment, full, traits, stored == [ID, *traits, HASH], as_of, reason,
                     fingerprint, previous.as_of if previous is not None and clean else None)
    assert previous is not None and plan is not None and segment.where is not None  # else always full
    traits = [t.name for t in segment.traits]
    # only candidates are evaluated; the stored membership (with traits) is patched for them.
    # If a killed run changed it after the previous recorded run, syncs must diff in full.
    candidates = store.run_table(segment.name, "cand")
    keys: exp.Query = candidates_query(project, catalog, plan, previous.as_of, as_of)
    if not _same_entity_keys(plan, previous.fingerprint, fingerprint):  # rows may have been deleted
        keys = exp.union(keys, deleted_members_query(project, catalog, plan, store.stage_table(segment.name)),
                         distinct=True)
    count = store.replace_table(candidates, exp.select(
        exp.column("k"), exp.alias_(exp.cast(exp.column("k"), exp.DataType.build("TEXT")), "id")).from_(keys.subquery("c")))
    changed = store.run_table(segment.name, "changed")
    store.replace_table(changed, stage_query(
        membership_query(project, catalog, segment.name, as_of, candidates=candidates), traits))
    members = store.patch_stage(segment.name, candidates, changed, as_of)
    return Evaluation("incremental", members, count, fingerprint=fingerprint,
                      candidates_table=candidates, changed_table=changed,
                      previous_as_of=previous.as_of if clean else None, last_full_as_of=previous.last_full_as_of)


def _plan(project: Project, segment: Segment) -> IncrementalPlan | None:
    try:
        return plan_incremental(project, segment)
    except NotIncremental:
        return None


def _nothing_to_do(project: Project, catalog: Catalog, store: StateStore, segment: Segment, plan: IncrementalPlan,
                   previous: LastRun, as_of: datetime, current: Fingerprint) -> bool:
    """No row arrived or changed since the previous run (``current``: the fingerprint since its
    as_of), no entity crossed a boundary since then, and every sync of the segment is settled:
    the run can skip the segment."""
    recorded = previous.fingerprint or {}
    if current != {name: value for name, value in recorded.items() if not name.endswith(_KEYS)}:
        return False
    if any(s.quiet_hours is not None for s in segment.syncs):  # deferred sends are due later
        return False
    due = candidate_parts(project, catalog, plan, previous.as_of, as_of, boundaries_only=True)
    return syncs_settled(store, [(s.name, s.max_attempts) for s in segment.syncs], due)


def _full(store: StateStore, segment: Segment, full: exp.Select, traits: list[str], same_columns: bool,
          as_of: datetime, reason: str, fingerprint: Fingerprint | None, previous_as_of: datetime | None) -> Evaluation:
    """Evaluate every entity into a scratch table, then patch the stored membership with the
    rows that differ (a rewrite of every member costs more than the evaluation itself).

    When the stored membership was the previous run's (``previous_as_of``), those rows are
    also all the segment commit has to compare, and all a sync that holds exactly that
    membership has to diff: its delta, the difference from what it holds (SPEC 4), has no
    other rows. A sync that is behind, or a membership a killed run left behind, diffs in full."""
    if not same_columns:  # first run, or other traits: rebuild it
        store.set_stage_version(segment.name, as_of)
        return Evaluation("full", store.stage(segment.name, stage_query(full, traits)), reason=reason,
                          fingerprint=fingerprint, last_full_as_of=as_of)
    fresh = store.run_table(segment.name, "fresh")
    store.replace_table(fresh, full)
    candidates, changed = store.restage(segment.name, fresh)
    members = store.patch_stage(segment.name, candidates, changed, as_of)
    clean = previous_as_of is not None
    return Evaluation("full", members, reason=reason, fingerprint=fingerprint,
                      candidates_table=candidates if clean else None, changed_table=changed if clean else None,
                      previous_as_of=previous_as_of, last_full_as_of=as_of)


#: the fingerprint key of the entity's key checksum (taken only when a segment is evaluated)
_KEYS = ":keys"


def _fingerprints(project: Project, catalog: Catalog, store: StateStore, plan: IncrementalPlan | None,
                  as_of: datetime, since_previous: datetime) -> tuple[Fingerprint | None, Fingerprint | None]:
    """What the next run compares (since ``as_of``) and what this one compares with the
    previous run's (since its as_of), in one query."""
    if plan is None:
        return None, None
    sinces = [as_of] if since_previous == as_of else [as_of, since_previous]
    values = {str(k): str(v) for k, v in store.wh.fetchall(fingerprint_query(project, catalog, plan, *sinces))}
    out = [{name.split("@")[0]: value for name, value in values.items() if "@" not in name or name.endswith(f"@{i}")}
           for i in range(len(sinces))]
    return out[0], out[-1]


def _with_key_checksum(project: Project, catalog: Catalog, store: StateStore, plan: IncrementalPlan,
                       fingerprint: Fingerprint, checksums: dict[tuple[str, str], str]) -> Fingerprint:
    key = (plan.entity, fingerprint.get(rows_key(plan.entity), ""))
    if key not in checksums:
        query = key_checksum_query(project, catalog, plan)
        if query is None:
            return fingerprint
        checksums[key] = str(store.wh.fetchall(query)[0][0])
    return {**fingerprint, plan.entity + _KEYS: checksums[key]}


def _same_entity_keys(plan: IncrementalPlan, previous: Fingerprint | None, current: Fingerprint | None) -> bool:
    """Whether the entity table's row count and key checksum are as at the previous run."""
    if previous is None or current is None or plan.entity + _KEYS not in current:
        return False
    return all(previous.get(k) == current.get(k) for k in (rows_key(plan.entity), plan.entity + _KEYS))


def _full_reason(project: Project, segment: Segment, previous: object, as_of: datetime,
                 full_refresh: bool) -> str | None:
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
