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
import json
from dataclasses import dataclass
from datetime import datetime

from sqlglot import exp

from revseg.compile.candidates import (
    NotIncremental,
    candidate_parts,
    candidates_query,
    fingerprint_query,
    plan_incremental,
    key_checksum_query,
    rows_key,
)
from revseg.compile.catalog import Catalog
from revseg.compile.delta import HASH, stage_query
from revseg.compile.membership import ID, membership_query
from revseg.spec.project import Project, Segment
from revseg.state.store import StateStore
from revseg.state.watermarks import LastRun, last_run, syncs_settled


@dataclass(frozen=True)
class Evaluation:
    mode: str  # full | incremental | skipped
    members: int
    candidates: int | None = None
    reason: str = ""
    fingerprint: str | None = None
    #: incremental runs: the table of candidate keys (``k``, and ``id`` as text) and the table
    #: of their new membership; the segment commit and settled syncs' diffs read only these
    candidates_table: exp.Table | None = None
    changed_table: exp.Table | None = None
    previous_as_of: datetime | None = None


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
    # the next run compares with the first; this one compares the second with the previous run's
    if previous is not None and previous.as_of != as_of:
        fingerprint, current = _fingerprints(project, catalog, store, segment, as_of, previous.as_of)
    else:
        fingerprint = current = _fingerprints(project, catalog, store, segment, as_of)[0]
    version = store.stage_version(segment.name)
    # the stored membership is exactly the previous run's, unless a killed run patched it since
    clean = previous is not None and version == previous.as_of
    if reason is None and clean and _nothing_to_do(project, catalog, store, segment, previous, as_of, current):
        assert previous is not None
        return Evaluation("skipped", previous.members, 0, fingerprint=fingerprint)
    fingerprint = _with_key_checksum(project, catalog, store, segment, fingerprint)
    stored = store.stage_columns(segment.name)
    if reason is None and stored is None:
        reason = "no stored membership (first run of this revseg version)"
    if reason is None and not clean and version is not None and version > as_of:
        reason = "a killed run left the stored membership at a later as_of"
    if reason is not None:
        full = membership_query(project, catalog, segment.name, as_of)
        traits = trait_names(segment, full)
        return _full(store, segment, stage_query(full, traits), stored == [ID, *traits, HASH], as_of, reason,
                     fingerprint, clean)
    assert previous is not None and segment.where is not None  # sql: segments always run in full
    traits = [t.name for t in segment.traits]
    plan = plan_incremental(project, segment)
    # only candidates are evaluated; the stored membership (with traits) is patched for them.
    # If a killed run changed it after the previous recorded run, syncs must diff in full.
    candidates = store.scratch(f"cand__{segment.name}")
    keys: exp.Query = candidates_query(project, catalog, plan, previous.as_of, as_of)
    if not _same_entity_keys(segment, previous.fingerprint, fingerprint):  # rows may have been deleted
        keys = exp.union(keys, _deleted(project, catalog, store, segment), distinct=True)
    store.replace_table(candidates, exp.select(
        exp.column("k"), exp.alias_(exp.cast(exp.column("k"), exp.DataType.build("TEXT")), "id")).from_(keys.subquery("c")))
    count = int(store.scalar(exp.select(exp.Count(this=exp.Star())).from_(candidates.copy())))
    changed = store.scratch(f"changed__{segment.name}")
    store.replace_table(changed, stage_query(
        membership_query(project, catalog, segment.name, as_of, candidates=candidates), traits))
    members = store.patch_stage(segment.name, candidates, changed, as_of)
    return Evaluation("incremental", members, count, fingerprint=fingerprint,
                      candidates_table=candidates, changed_table=changed,
                      previous_as_of=previous.as_of if clean else None)


def _nothing_to_do(project: Project, catalog: Catalog, store: StateStore, segment: Segment, previous: LastRun,
                   as_of: datetime, current: str | None) -> bool:
    """No row arrived or changed since the previous run (``current``: the fingerprint since its
    as_of), no entity crossed a boundary since then, and every sync of the segment is settled:
    the run can skip the segment."""
    plan = plan_incremental(project, segment)
    if current != _without_key_checksum(previous.fingerprint):
        return False
    if any(s.quiet_hours is not None for s in segment.syncs):  # deferred sends are due later
        return False
    due = candidate_parts(project, catalog, plan, previous.as_of, as_of, boundaries_only=True)
    if any(store.wh.fetchall(part.limit(1)) for part in due):
        return False
    return syncs_settled(store, [(s.name, s.max_attempts) for s in segment.syncs])


def _full(store: StateStore, segment: Segment, staged: exp.Select, same_columns: bool, as_of: datetime,
          reason: str, fingerprint: str | None, clean: bool) -> Evaluation:
    """Evaluate every entity into a scratch table, then patch the stored membership with the
    rows that differ (a rewrite of every member costs more than the evaluation itself).
    When the stored membership was the previous run's, those rows are also all the segment
    commit has to compare; syncs still diff in full (SPEC 4: ``--full-refresh``)."""
    if not same_columns:  # first run, or other traits: rebuild it
        store.set_stage_version(segment.name, as_of)
        return Evaluation("full", store.stage(segment.name, staged), reason=reason, fingerprint=fingerprint)
    fresh = store.scratch(f"fresh__{segment.name}")
    store.replace_table(fresh, staged)
    candidates, changed = store.restage(segment.name, fresh)
    members = store.patch_stage(segment.name, candidates, changed, as_of)
    return Evaluation("full", members, reason=reason, fingerprint=fingerprint,
                      candidates_table=candidates if clean else None, changed_table=changed if clean else None)


def _fingerprints(project: Project, catalog: Catalog, store: StateStore, segment: Segment,
                  *sinces: datetime) -> list[str | None]:
    """Per ``since``: what a run following a run at ``since`` compares to decide it has no new
    data (one query for all)."""
    try:
        plan = plan_incremental(project, segment)
    except NotIncremental:
        return [None for _ in sinces]
    query = fingerprint_query(project, catalog, plan, *sinces)
    values = dict(zip(query.named_selects, (str(v) for v in store.wh.fetchall(query)[0]), strict=True))
    out: list[str | None] = []
    for i in range(len(sinces)):
        mine = {name.split("@")[0]: value for name, value in values.items() if "@" not in name or name.endswith(f"@{i}")}
        out.append(json.dumps(mine, sort_keys=True))
    return out


_KEYS = ":keys"


def _with_key_checksum(project: Project, catalog: Catalog, store: StateStore, segment: Segment,
                       fingerprint: str | None) -> str | None:
    """The fingerprint with the entity's key checksum, when the segment is evaluated."""
    if fingerprint is None:
        return None
    query = key_checksum_query(project, catalog, plan_incremental(project, segment))
    if query is None:
        return fingerprint
    values = json.loads(fingerprint)
    values[segment.entity + _KEYS] = str(store.wh.fetchall(query)[0][0])
    return json.dumps(values, sort_keys=True)


def _without_key_checksum(fingerprint: str | None) -> str | None:
    if fingerprint is None or not fingerprint.startswith("{"):
        return fingerprint
    return json.dumps({k: v for k, v in json.loads(fingerprint).items() if not k.endswith(_KEYS)}, sort_keys=True)


def _same_entity_keys(segment: Segment, previous: str | None, current: str | None) -> bool:
    """Whether the entity table's row count and key checksum are as at the previous run."""
    if previous is None or current is None or not previous.startswith("{"):
        return False
    before, now = json.loads(previous), json.loads(current)
    keys = (rows_key(segment.entity), segment.entity + _KEYS)
    return keys[1] in now and all(before.get(k) == now.get(k) for k in keys)


def _deleted(project: Project, catalog: Catalog, store: StateStore, segment: Segment) -> exp.Select:
    """Stored members whose entity row is gone: they leave (deletes carry no watermark)."""
    entity = project.models[segment.entity]
    key = catalog.column(entity.name, entity.primary_key or "")
    assert key is not None
    try:
        key_type = exp.DataType.build(key.type_name)
    except Exception:  # an engine type sqlglot cannot spell: compare as text
        key_type = exp.DataType.build("TEXT")
    stored = exp.TryCast(this=exp.column("id", table="s"), to=key_type)
    source = entity.table.copy() if entity.table is not None else exp.Subquery(
        this=entity.query, alias=exp.TableAlias(this=exp.to_identifier("m")))
    pk = exp.column(exp.to_identifier(key.name, quoted=True), table="e")
    present = exp.select(exp.Literal.number(1)).from_(exp.alias_(source, "e", table=True)).where(
        exp.EQ(this=exp.cast(pk, key_type) if key_type.is_type("text") else pk, expression=stored.copy()))
    # NOT EXISTS, not NOT IN: engines run it as an anti join (NOT IN must mind NULLs)
    return exp.select(exp.alias_(stored.copy(), "k")).from_(
        exp.alias_(store.stage_table(segment.name), "s", table=True)).where(
        exp.and_(exp.not_(exp.Is(this=stored.copy(), expression=exp.Null())), exp.not_(exp.Exists(this=present))))


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
