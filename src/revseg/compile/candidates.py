"""Incremental candidates: the entities whose membership can have changed between two as_of.

For fixed data, a segment's membership changes with time only when as_of crosses a
*boundary*: a row becoming visible (``ts``), passing ``older_than`` (``ts + older_than``),
leaving a ``within`` window (``ts + within``), or a ``{ago: D}`` comparison flipping
(``column + D``). So the entities that can change in (prev, now] are:

- those with a row whose boundary falls in [prev, now]: ``column`` in [prev - D, now - D]
  (closed at both ends: ``column > as_of - D`` flips as as_of reaches ``column + D``, but
  ``column >= as_of - D`` and ``column = as_of - D`` flip just after it, so an entity whose
  ``column + D`` is exactly prev can differ between prev and now); nothing when now = prev;
- those with new or updated rows: the model's ``loaded_at`` (else its ``timestamp``, or the
  entity's ``updated_at``) after ``prev - lookback`` (SPEC 4's watermark).

Evaluating only those, and keeping everyone else's previous membership, gives exactly the
membership a full run gives, as long as rows arrive within ``lookback`` (late rows are
caught by the periodic full run; a run that finds rows of a related model deleted is full,
see :func:`revseg.runner.probe.deleted_rows`).

A segment is evaluated incrementally only if every model it reads can show its changes: the
entity needs ``updated_at``; other models need ``loaded_at`` or ``timestamp``. ``sql:``
segments (and references to them) are always evaluated in full.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlglot import exp

from revseg.compile.catalog import Catalog, Kind
from revseg.compile.conditions import model_source
from revseg.compile.named_values import named_value
from revseg.compile.values import timestamp_literal
from revseg.spec.conditions import (
    AggregateCondition,
    Ago,
    All,
    AnyOf,
    ColumnCondition,
    Comparison,
    Condition,
    EventCondition,
    Not,
    SegmentRef,
)
from revseg.spec.project import Model, Project, Segment

ZERO = timedelta(0)

#: per model read: its row count, its recent changes, the entity's key checksum (see
#: :func:`fingerprint_branches`); recorded with each segment run
Fingerprint = dict[str, str]


@dataclass
class IncrementalPlan:
    """What a segment reads: per model, the (column, offset) boundaries that move with time."""

    entity: str
    boundaries: dict[str, set[tuple[str, timedelta]]] = field(default_factory=dict)

    def add(self, model: str, column: str, offset: timedelta) -> None:
        self.boundaries.setdefault(model, set()).add((column, offset))

    def touch(self, model: str) -> None:
        self.boundaries.setdefault(model, set())


class NotIncremental(Exception):
    """The segment must be evaluated in full; the message says why."""


def plan_incremental(project: Project, segment: Segment) -> IncrementalPlan:
    """Collect the models and boundaries of a segment (references followed); or raise."""
    if segment.where is None:
        raise NotIncremental("sql: segments are always evaluated in full")
    plan = IncrementalPlan(segment.entity)
    plan.touch(segment.entity)
    _collect(project, segment.where, plan, project.models[segment.entity], depth=0)
    for name in plan.boundaries:
        model = project.models[name]
        if name == segment.entity and model.updated_at is None:
            raise NotIncremental(f"entity model '{name}' has no updated_at, so changes to it cannot be seen")
        if name != segment.entity and not (model.loaded_at or model.timestamp):
            raise NotIncremental(f"model '{name}' has neither loaded_at nor timestamp, so new rows cannot be seen")
    return plan


def _agos(comparison: Comparison | None) -> list[timedelta]:
    if comparison is None or comparison.value is None:
        return []
    raw = comparison.value.raw
    values = raw if isinstance(raw, list) else [raw]
    return [v.delta for v in values if isinstance(v, Ago)]


def _filters(conditions: tuple[Condition, ...], model: Model, plan: IncrementalPlan) -> None:
    for condition in conditions:
        _collect_filter(condition, model, plan)


def _collect_filter(condition: Condition, model: Model, plan: IncrementalPlan) -> None:
    if isinstance(condition, (All, AnyOf)):
        for item in condition.items:
            _collect_filter(item, model, plan)
    elif isinstance(condition, Not):
        _collect_filter(condition.item, model, plan)
    elif isinstance(condition, ColumnCondition):
        for delta in _agos(condition.comparison):
            plan.add(model.name, condition.column, delta)


def _windowed(plan: IncrementalPlan, model: Model, within: timedelta | None, older: timedelta | None) -> None:
    if model.timestamp is None:
        plan.touch(model.name)
        return
    plan.add(model.name, model.timestamp, ZERO)  # a row becomes visible when as_of reaches ts
    for offset in (within, older):
        if offset is not None:
            plan.add(model.name, model.timestamp, offset)


def _collect(project: Project, condition: Condition, plan: IncrementalPlan, entity: Model, depth: int) -> None:
    if isinstance(condition, (All, AnyOf)):
        for item in condition.items:
            _collect(project, item, plan, entity, depth)
    elif isinstance(condition, Not):
        _collect(project, condition.item, plan, entity, depth)
    elif isinstance(condition, ColumnCondition):
        _collect_filter(condition, entity, plan)
    elif isinstance(condition, EventCondition):
        model = project.models[condition.model]
        _windowed(plan, model, condition.within, condition.older_than)
        _filters(condition.where, model, plan)
        if condition.follow is not None:
            follower = project.models[condition.follow.model]
            _windowed(plan, follower, None, None)
            _filters(condition.follow.where, follower, plan)
    elif isinstance(condition, AggregateCondition):
        model = project.models[condition.model]
        _windowed(plan, model, condition.within, condition.older_than)
        _filters(condition.where, model, plan)
        if condition.column is not None:
            for delta in _agos(condition.comparison):
                plan.add(model.name, condition.column, delta)
    elif isinstance(condition, SegmentRef):
        target = project.segments.get(condition.segment)
        if target is None or depth > 64:
            return
        if target.where is None:
            raise NotIncremental(f"it references sql: segment '{target.name}'")
        _collect(project, target.where, plan, entity, depth + 1)


def candidates_query(project: Project, catalog: Catalog, plan: IncrementalPlan,
                     previous: datetime, as_of: datetime) -> exp.Query:
    """``SELECT k``: keys of every entity whose membership may differ from ``previous``."""
    parts = candidate_parts(project, catalog, plan, previous, as_of)
    if not parts:  # nothing moves with time: an empty set of the right shape
        parts.append(exp.select(exp.alias_(exp.Null(), "k")).where(exp.false()))
    query: exp.Query = parts[0]
    for part in parts[1:]:
        query = exp.union(query, part, distinct=True)
    return exp.select("k").from_(query.subquery("c")).where(exp.not_(exp.Is(this=exp.column("k"), expression=exp.Null()))).distinct()


def candidate_parts(project: Project, catalog: Catalog, plan: IncrementalPlan, previous: datetime,
                    as_of: datetime, *, boundaries_only: bool = False) -> list[exp.Select]:
    """One ``SELECT k`` per model read: its rows that are new or cross a boundary.

    ``boundaries_only`` leaves out new rows: the entities due to change with time alone (a
    run that found no new data asks each part for one row, and stops at the first).
    """
    parts: list[exp.Select] = []
    for name in sorted(plan.boundaries):
        model = project.models[name]
        key_name = model.primary_key if name == plan.entity else model.entity_key
        key = _column(catalog, name, key_name or "")
        conditions: list[exp.Expr] = []
        change = model.updated_at if name == plan.entity else (model.loaded_at or model.timestamp)
        if change and not boundaries_only:
            conditions.append(exp.GT(this=_column(catalog, name, change),
                                     expression=timestamp_literal(previous - model.lookback)))
        # when as_of did not move, no boundary was crossed
        edges = _with_date_edges(catalog, name, plan.boundaries[name]) if as_of > previous else []
        for column, offset in edges:
            ref = _column(catalog, name, column)
            conditions.append(exp.and_(
                exp.GTE(this=ref, expression=timestamp_literal(previous - offset)),
                exp.LTE(this=ref.copy(), expression=timestamp_literal(as_of - offset)),
            ))
        if not conditions:
            continue
        parts.append(exp.select(exp.alias_(key, "k")).from_(model_source(model, "m")).where(exp.or_(*conditions)))
    return parts


def change_column(project: Project, plan: IncrementalPlan, name: str) -> str | None:
    """The column whose values say a row of model ``name`` is new or changed for ``plan``:
    the entity's ``updated_at``; another model's ``loaded_at``, else its ``timestamp``."""
    model = project.models[name]
    return model.updated_at if name == plan.entity else (model.loaded_at or model.timestamp)


def fingerprint_branches(project: Project, catalog: Catalog, plan: IncrementalPlan, since: datetime,
                         into: dict[str, exp.Select]) -> None:
    """Add to ``into`` the ``(k, v)`` branches of a fingerprint of what ``plan`` reads, since
    ``since``: per model, its row count (``<model>:rows``), and the latest change and the count
    and sum (in seconds) of the changes after ``since - lookback``, the rows a run that follows
    a run at ``since`` takes as new (:func:`recent_key`); all as text.

    Two fingerprints taken with the same ``since`` are equal only if no row arrived or changed
    there. The count and latest change alone miss a row that arrives out of order within
    ``lookback``, e.g. an entity updated in place with an ``updated_at`` below the latest one.

    A key names exactly what its branch computes, so the branches of several segments, and of
    several instants, share one query (one row per value, see
    :mod:`revseg.compile.named_values`) and models read by several segments are counted once.
    """
    for name in sorted(plan.boundaries):
        model = project.models[name]
        if rows_key(name) not in into:
            count = exp.cast(exp.Count(this=exp.Star()), exp.DataType.build("TEXT"))
            into[rows_key(name)] = named_value(rows_key(name), count).from_(model_source(model, "m"), copy=False)
        change = change_column(project, plan, name)
        key = recent_key(name, change, since)
        if change is None or key in into:
            continue
        column = _column(catalog, name, change)
        recent = exp.GT(this=column, expression=timestamp_literal(since - model.lookback))
        seconds = exp.DateDiff(this=column.copy(), expression=timestamp_literal(_EPOCH), unit=exp.var("SECOND"))
        # one bounded scan for the three (an unbounded MAX would scan every event on each poll)
        values = [exp.Max(this=column.copy()), exp.Count(this=exp.Star()), exp.Sum(this=seconds)]
        text = [exp.Coalesce(this=exp.cast(value, exp.DataType.build("TEXT")), expressions=[exp.Literal.string("-")])
                for value in values]
        into[key] = named_value(key, exp.Concat(expressions=_joined(text), safe=True, coalesce=False)) \
            .from_(model_source(model, "m"), copy=False).where(recent, copy=False)


def fingerprint_of(values: dict[str, str], project: Project, plan: IncrementalPlan, since: datetime) -> Fingerprint:
    """A segment's fingerprint since ``since``, out of the values of a query of
    :func:`fingerprint_branches`: ``<model>:rows`` and ``<model>:recent`` per model it reads
    (the form recorded with each run)."""
    out: Fingerprint = {}
    for name in sorted(plan.boundaries):
        out[rows_key(name)] = values[rows_key(name)]
        change = change_column(project, plan, name)
        if change is not None:
            out[window_key(name)] = values[recent_key(name, change, since)]
    return out


def recent_key(model: str, change: str | None, since: datetime) -> str:
    """The key of a model's recent changes since ``since`` in a probe's query."""
    return f"{model}:recent:{change}@{since.isoformat()}"


def window_key(model: str) -> str:
    """The fingerprint value of a model's recent changes (``max|count|sum``), as recorded."""
    return f"{model}:recent"


#: the suffix of the fingerprint key of an entity's key checksum (``customers:keys``), taken
#: only when a segment is evaluated (see key_checksum_query)
KEYS = ":keys"


def rows_key(model: str) -> str:
    """The fingerprint value holding a model's row count."""
    return f"{model}:rows"


def key_checksum_query(project: Project, catalog: Catalog, plan: IncrementalPlan) -> exp.Select | None:
    """The sum of a cheap hash of every entity key (None where the engine has no such hash).
    With the row count, it shows whether any entity row was deleted since a previous run: an
    incremental run looks for deleted members only when either moved. (A run that finds no
    new data needs neither: a delete alone changes the row count in the fingerprint.)"""
    model = project.models[plan.entity]
    if catalog.key_hash is None or not model.primary_key:
        return None
    checksum = exp.Sum(this=catalog.key_hash(_column(catalog, plan.entity, model.primary_key)))
    return exp.select(exp.Coalesce(this=exp.cast(checksum, exp.DataType.build("TEXT")),
                                   expressions=[exp.Literal.string("0")])).from_(model_source(model, "m"))


def deleted_members_query(project: Project, catalog: Catalog, plan: IncrementalPlan, stage: exp.Table) -> exp.Select:
    """``SELECT k``: stored members (``stage``, ids as text) whose entity row is gone; deletes
    carry no watermark. NOT EXISTS, not NOT IN: engines run it as an anti join."""
    entity = project.models[plan.entity]
    key = catalog.column(entity.name, entity.primary_key or "")
    assert key is not None
    try:
        key_type = exp.DataType.build(key.type_name)
    except Exception:  # an engine type sqlglot cannot spell: compare as text
        key_type = exp.DataType.build("TEXT")
    stored = exp.TryCast(this=exp.column("id", table="s"), to=key_type)
    pk = exp.column(exp.to_identifier(key.name, quoted=True), table="e")
    present = exp.select(exp.Literal.number(1)).from_(model_source(entity, "e")).where(
        exp.EQ(this=exp.cast(pk, key_type) if key_type.is_type("text") else pk, expression=stored.copy()))
    return exp.select(exp.alias_(stored.copy(), "k")).from_(exp.alias_(stage.copy(), "s", table=True)).where(
        exp.and_(exp.not_(exp.Is(this=stored.copy(), expression=exp.Null())), exp.not_(exp.Exists(this=present))))


def _joined(parts: list[exp.Expr]) -> list[exp.Expr]:
    out: list[exp.Expr] = []
    for part in parts:
        if out:
            out.append(exp.Literal.string("|"))
        out.append(part)
    return out


_EPOCH = datetime(1970, 1, 1)


def _with_date_edges(catalog: Catalog, model: str, boundaries: set[tuple[str, timedelta]]) -> list[tuple[str, timedelta]]:
    """A DATE compared with ``{ago: D}`` flips at midnight: at d + D or d + 1 day + D."""
    out = set(boundaries)
    for column, offset in boundaries:
        info = catalog.column(model, column)
        if info is not None and info.kind is Kind.DATE:
            out.add((column, offset + timedelta(days=1)))
    return sorted(out)


def _column(catalog: Catalog, model: str, name: str) -> exp.Column:
    info = catalog.column(model, name)
    return exp.column(exp.to_identifier(info.name if info else name, quoted=True))
