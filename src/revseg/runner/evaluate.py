"""Evaluate one segment for a run, in full or incrementally, into its stage table.

Mode, in order: ``skipped`` when the run's probe found nothing new, nothing due and every
sync of the segment settled (:mod:`revseg.runner.probe`); ``full`` when asked
(``--full-refresh``), on the first run, when the definition changed, when as_of went
backwards, when ``full_refresh_every`` has passed since the last full run (data time), or when
the segment cannot be incremental (see :mod:`revseg.compile.candidates`); else
``incremental``: only candidates are evaluated and everyone else keeps their previous
membership (with fresh traits).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlglot import exp

from revseg.compile.candidates import (
    KEYS,
    Fingerprint,
    IncrementalPlan,
    candidates_query,
    deleted_members_query,
    key_checksum_query,
    rows_key,
)
from revseg.compile.catalog import Catalog
from revseg.compile.delta import HASH, stage_query
from revseg.compile.membership import ID, membership_query
from revseg.runner.probe import Probe
from revseg.spec.project import Project, Segment
from revseg.state.store import StateStore
from revseg.state.watermarks import LastRun


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
    """The segment's definition with everything it reads: a change forces a full run.

    Beside the segment's own text: its entity (a segment without ``entity:`` takes the
    project's, which may change under an unchanged file) and the dialect its ``sql:`` is read in."""
    parts = [segment.definition, segment.entity, project.sql_dialect,
             repr(sorted((n, repr(m)) for n, m in project.models.items()))]
    parts += sorted(s.definition for s in project.segments.values() if s.name != segment.name)
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def trait_names(segment: Segment, membership: exp.Select) -> list[str]:
    return [t.name for t in segment.traits] if segment.where is not None else list(membership.named_selects[1:])


def evaluate(project: Project, catalog: Catalog, store: StateStore, segment: Segment, as_of: datetime,
             probed: Probe, previous: LastRun | None, *, checksums: dict[tuple[str, str], str] | None = None) -> Evaluation:
    """``probed``: what the run's probe found for the segment; ``previous``: its last run;
    ``checksums``: entity key checksums taken earlier in the same run, by entity and row count
    (segments of one entity share one scan of its keys)."""
    plan, reason, fingerprint = probed.plan, probed.full_reason, probed.fingerprint
    if probed.idle:
        assert previous is not None
        return Evaluation("skipped", previous.members, 0, fingerprint=fingerprint, previous=previous)
    version = previous.stage_as_of if previous is not None else None
    clean = previous is not None and version == previous.as_of
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


def _with_key_checksum(project: Project, catalog: Catalog, store: StateStore, plan: IncrementalPlan,
                       fingerprint: Fingerprint, checksums: dict[tuple[str, str], str]) -> Fingerprint:
    key = (plan.entity, fingerprint.get(rows_key(plan.entity), ""))
    if key not in checksums:
        query = key_checksum_query(project, catalog, plan)
        if query is None:
            return fingerprint
        checksums[key] = str(store.wh.fetchall(query)[0][0])
    return {**fingerprint, plan.entity + KEYS: checksums[key]}


def _same_entity_keys(plan: IncrementalPlan, previous: Fingerprint | None, current: Fingerprint | None) -> bool:
    """Whether the entity table's row count and key checksum are as at the previous run."""
    if previous is None or current is None or plan.entity + KEYS not in current:
        return False
    return all(previous.get(k) == current.get(k) for k in (rows_key(plan.entity), plan.entity + KEYS))


__all__ = ["evaluate", "Evaluation", "definition_hash", "ID"]
