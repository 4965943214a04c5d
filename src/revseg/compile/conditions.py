"""Compile a condition tree into one boolean sqlglot expression over the entity row ``e``.

Two-valued logic is enforced at every leaf: a leaf whose SQL value is NULL is FALSE
(``COALESCE(leaf, FALSE)``), so ``not`` is the plain complement (SPEC 2.2 "NULLs").

Shapes, chosen so engines plan set-based joins, never a query per entity:

- event conditions with the default count (``>= 1``) are correlated ``EXISTS`` semi-joins
  (``= 0`` is ``NOT EXISTS``); sequences nest one more ``EXISTS`` on the first event;
- other counts and every aggregate are a grouped CTE per leaf, ``LEFT JOIN``-ed on the key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlglot import exp

from revseg.compile.catalog import Catalog, ColumnInfo, Kind
from revseg.compile.values import ValueConversionError, literal, timestamp_literal
from revseg.errors import Position, Problem, did_you_mean
from revseg.spec.conditions import (
    AggregateCondition,
    All,
    AnyOf,
    ColumnCondition,
    Comparison,
    Condition,
    EventCondition,
    Follow,
    Not,
    SegmentRef,
    SqlPredicate,
)

if TYPE_CHECKING:
    from revseg.spec.project import Model, Project

ENTITY = "e"
_FALSE = exp.false()


def coalesce_false(condition: exp.Expr) -> exp.Expr:
    """NULL (unknown) becomes FALSE, so NOT is the boolean complement."""
    return exp.Coalesce(this=exp.paren(condition, copy=False), expressions=[exp.false()])


def col(alias: str, name: str) -> exp.Column:
    return exp.column(exp.to_identifier(name, quoted=True), table=exp.to_identifier(alias))


def model_source(model: Model, alias: str) -> exp.Expr:
    """``FROM`` item for a model: its table, or its ``sql:`` as a subquery."""
    if model.table is not None:
        return model.table.copy().as_(alias)
    assert model.query is not None
    return exp.Subquery(this=model.query.copy(), alias=exp.TableAlias(this=exp.to_identifier(alias)))


@dataclass
class Scope:
    """State of compiling one membership query: CTEs added so far, problems found."""

    project: Project
    catalog: Catalog
    as_of: datetime
    ctes: list[tuple[str, exp.Select]] = field(default_factory=list)
    joins: list[tuple[str, str]] = field(default_factory=list)  # (cte alias, key column)
    problems: list[Problem] = field(default_factory=list)
    #: incremental runs: a table of candidate keys (column ``k``); every scan is cut to them
    candidates: exp.Table | None = None
    _counter: int = 0

    def only_candidates(self, key: exp.Expr) -> list[exp.Expr]:
        """``EXISTS (SELECT 1 FROM candidates AS c WHERE c.k = key)`` when evaluating candidates
        only: compared with ``=``, as the full query joins a model's key to the entity's, so a
        key of another type than the candidates' ``k`` (text events of an integer entity) is
        compared as in a full run (DuckDB refuses ``IN`` across types)."""
        if self.candidates is None:
            return []
        match = exp.EQ(this=exp.column("k", table="cand"), expression=key.copy())
        return [exp.Exists(this=exp.select("1").from_(exp.alias_(self.candidates.copy(), "cand", table=True)).where(match))]

    def fresh(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    def error(self, position: Position, message: str, code: str = "invalid") -> None:
        self.problems.append(Problem(position, message, code))

    def resolve(self, model: str, name: str, position: Position) -> ColumnInfo | None:
        info = self.catalog.column(model, name)
        if info is None:
            hint = did_you_mean(name, self.catalog.names(model))
            self.error(position, f"unknown column '{name}' in model '{model}'{hint}", "unknown-column")
        return info


class ConditionCompiler:
    """Compiles conditions of segments over entity model ``entity`` within a Scope."""

    def __init__(self, scope: Scope, entity: Model) -> None:
        self.scope = scope
        self.entity = entity
        self.key = scope.catalog.column(entity.name, entity.primary_key or "")

    # -- dispatch -------------------------------------------------------------------
    def compile(self, condition: Condition, *, depth: int = 0) -> exp.Expr:
        if isinstance(condition, All):
            return _fold(exp.and_, [self.compile(c, depth=depth) for c in condition.items], exp.true())
        if isinstance(condition, AnyOf):
            return _fold(exp.or_, [self.compile(c, depth=depth) for c in condition.items], exp.false())
        if isinstance(condition, Not):
            return exp.not_(exp.paren(self.compile(condition.item, depth=depth)))
        if isinstance(condition, ColumnCondition):
            return self.column(condition, self.entity, ENTITY)
        if isinstance(condition, EventCondition):
            return self.event(condition)
        if isinstance(condition, AggregateCondition):
            return self.aggregate(condition)
        if isinstance(condition, SegmentRef):
            return self.segment_ref(condition, depth)
        if isinstance(condition, SqlPredicate):
            return self.sql_predicate(condition)
        raise TypeError(f"unknown condition {condition!r}")

    # -- column leaves --------------------------------------------------------------
    def column(self, cond: ColumnCondition, model: Model, alias: str) -> exp.Expr:
        info = self.scope.resolve(model.name, cond.column, cond.column_position)
        if info is None:
            return _FALSE.copy()
        return self.compare(col(alias, info.name), info.kind, cond.comparison, info.name)

    def compare(self, this: exp.Expr, kind: Kind, comparison: Comparison, what: str) -> exp.Expr:
        """``this OP value`` as a never-NULL boolean."""
        op = comparison.op
        if op == "is_null":
            return exp.Is(this=this, expression=exp.Null())
        if op == "is_not_null":
            return exp.not_(exp.Is(this=this, expression=exp.Null()))
        assert comparison.value is not None
        raw = comparison.value.raw
        if kind is Kind.TEXT and op in _ORDERING:
            this = self.binary_order(this)
        try:
            if op in ("contains", "starts_with", "ends_with"):
                return self._string_op(this, kind, op, raw, what)
            if op in ("in", "not_in"):
                membership = exp.In(this=this, expressions=[literal(v, kind, self.scope.as_of) for v in raw])
                return coalesce_false(membership if op == "in" else exp.not_(membership))
            if op == "between":
                low, high = (literal(v, kind, self.scope.as_of) for v in raw)
                return coalesce_false(exp.Between(this=this, low=low, high=high))
            value = literal(raw, kind, self.scope.as_of)
        except ValueConversionError as exc:
            self.scope.error(comparison.value.position, f"value does not convert to the type of '{what}' "
                             f"({kind.value}): {exc}", "value")
            return _FALSE.copy()
        return coalesce_false(_COMPARATORS[op](this=this, expression=value))

    def binary_order(self, this: exp.Expr) -> exp.Expr:
        """Order text by code point where the engine's collation might not."""
        collation = self.scope.catalog.text_collation
        if collation is None:
            return this
        return exp.Collate(this=this, expression=exp.to_identifier(collation, quoted=True))

    def _string_op(self, this: exp.Expr, kind: Kind, op: str, raw: object, what: str) -> exp.Expr:
        if kind is Kind.UUID:  # matched in its text form (PostgreSQL has no string functions on uuid)
            this = exp.cast(this, exp.DataType.build("TEXT"))
        elif kind not in (Kind.TEXT, Kind.OTHER):
            raise ValueConversionError(f"'{op}' needs a text column, '{what}' is {kind.value}")
        text = str(raw)
        if text == "":  # every string contains, starts and ends with the empty string
            return exp.not_(exp.Is(this=this, expression=exp.Null()))
        needle = exp.Literal.string(text)
        found: exp.Expr
        if op == "contains":
            found = exp.GT(this=exp.StrPosition(this=this, substr=needle), expression=exp.Literal.number(0))
        elif op == "starts_with":
            found = exp.StartsWith(this=this, expression=needle)
        else:  # RIGHT() counts characters on every engine; ENDS_WITH is missing on Postgres
            found = exp.EQ(this=exp.Right(this=this, expression=exp.Literal.number(len(text))), expression=needle)
        return coalesce_false(found)

    def filters(self, conditions: tuple[Condition, ...], model: Model, alias: str) -> list[exp.Expr]:
        """An event's / aggregate's ``where``: column conditions over ``alias``."""
        return [self._filter(c, model, alias) for c in conditions]

    def _filter(self, condition: Condition, model: Model, alias: str) -> exp.Expr:
        if isinstance(condition, All):
            return _fold(exp.and_, [self._filter(c, model, alias) for c in condition.items], exp.true())
        if isinstance(condition, AnyOf):
            return _fold(exp.or_, [self._filter(c, model, alias) for c in condition.items], exp.false())
        if isinstance(condition, Not):
            return exp.not_(exp.paren(self._filter(condition.item, model, alias)))
        assert isinstance(condition, ColumnCondition)
        return self.column(condition, model, alias)

    # -- events ---------------------------------------------------------------------
    def _time_filters(self, model: Model, alias: str, cond: EventCondition | AggregateCondition,
                      position: Position) -> list[exp.Expr]:
        """as_of - within < ts <= as_of - older_than; NULL ts and ts > as_of drop out."""
        if model.timestamp is None:
            return []
        info = self.scope.resolve(model.name, model.timestamp, model.key_positions.get("timestamp", position))
        if info is None:
            return [_FALSE.copy()]
        ts = col(alias, info.name)
        upper = self.scope.as_of - cond.older_than if cond.older_than else self.scope.as_of
        out: list[exp.Expr] = [exp.LTE(this=ts, expression=timestamp_literal(upper))]
        if cond.within is not None:
            out.append(exp.GT(this=ts.copy(), expression=timestamp_literal(self.scope.as_of - cond.within)))
        return out

    def _name_filter(self, model: Model, alias: str, event: str, position: Position) -> exp.Expr:
        info = self.scope.resolve(model.name, model.event_name or "", model.key_positions.get("name", position))
        if info is None:
            return _FALSE.copy()
        return exp.EQ(this=col(alias, info.name), expression=exp.Literal.string(event))

    def _key(self, model: Model, alias: str, position: Position) -> exp.Column | None:
        info = self.scope.resolve(model.name, model.entity_key or "", model.key_positions.get("entity_key", position))
        return col(alias, info.name) if info else None

    def _event_rows(self, cond: EventCondition, alias: str) -> tuple[Model, list[exp.Expr]]:
        """Filters selecting the qualifying first events of ``cond`` from ``alias``."""
        model = self.scope.project.models[cond.model]
        where = [self._name_filter(model, alias, cond.event, cond.position)]
        where += self._time_filters(model, alias, cond, cond.position)
        where += self.filters(cond.where, model, alias)
        if cond.follow is not None:
            where.append(self._follow(cond.follow, model, alias, cond.within))
        return model, where

    def _follow(self, follow: Follow, first: Model, first_alias: str, first_within: timedelta | None) -> exp.Expr:
        model = self.scope.project.models[follow.model]
        alias = self.scope.fresh("f")
        first_key = self._key(first, first_alias, follow.position)
        key = self._key(model, alias, follow.position)
        first_ts = self.scope.resolve(first.name, first.timestamp or "", follow.position)
        ts_info = self.scope.resolve(model.name, model.timestamp or "", follow.position)
        if first_key is None or key is None or first_ts is None or ts_info is None:
            return _FALSE.copy()
        ts, t1 = col(alias, ts_info.name), col(first_alias, first_ts.name)
        where: list[exp.Expr] = [
            exp.EQ(this=key, expression=first_key),
            self._name_filter(model, alias, follow.event, follow.position),
            exp.GT(this=ts, expression=t1),
            exp.LTE(this=ts.copy(), expression=timestamp_literal(self.scope.as_of)),
        ]
        if first_within is not None:
            # implied by t2 > t1 > as_of - within, and it lets the engine skip old events
            where.append(exp.GT(this=ts.copy(), expression=timestamp_literal(self.scope.as_of - first_within)))
        if follow.within is not None:
            seconds = exp.Literal.number(int(follow.within.total_seconds()))
            bound = exp.TimestampAdd(this=t1.copy(), expression=seconds, unit=exp.var("SECOND"))
            where.append(exp.LTE(this=ts.copy(), expression=bound))
        where += self.filters(follow.where, model, alias)
        where += self.scope.only_candidates(key)
        exists = exp.Exists(this=exp.select("1").from_(model_source(model, alias)).where(exp.and_(*where)))
        return exp.not_(exists) if follow.negated else exists

    def event(self, cond: EventCondition) -> exp.Expr:
        shape = _exists_shape(cond.count)
        if shape is not None:
            alias = self.scope.fresh("ev")
            model, where = self._event_rows(cond, alias)
            key = self._key(model, alias, cond.position)
            entity_key = self._entity_key()
            if key is None or entity_key is None:
                return _FALSE.copy()
            query = exp.select("1").from_(model_source(model, alias)).where(
                exp.and_(exp.EQ(this=key, expression=entity_key), *where, *self.scope.only_candidates(key))
            )
            exists = exp.Exists(this=query)
            return exists if shape else exp.not_(exists)
        alias = self.scope.fresh("ev")
        model, where = self._event_rows(cond, alias)
        assert cond.count is not None
        count = exp.Count(this=exp.Star())
        return self._grouped(model, alias, count, where, cond.count, Kind.NUMBER, "count", empty_is_zero=True,
                             position=cond.position)

    # -- aggregates -----------------------------------------------------------------
    def aggregate(self, cond: AggregateCondition) -> exp.Expr:
        model = self.scope.project.models[cond.model]
        alias = self.scope.fresh("a")
        where = self._time_filters(model, alias, cond, cond.position) + self.filters(cond.where, model, alias)
        kind = Kind.NUMBER
        value: exp.Expr
        if cond.column is None:
            value = exp.Count(this=exp.Star())
        else:
            info = self.scope.resolve(model.name, cond.column, cond.column_position)
            if info is None:
                return _FALSE.copy()
            column: exp.Expr = col(alias, info.name)
            if cond.fn in ("sum", "avg") and info.kind not in (Kind.NUMBER, Kind.OTHER):
                self.scope.error(cond.column_position, f"'{cond.fn}' needs a numeric column; "
                                 f"'{info.name}' is {info.kind.value}", "aggregate")
                return _FALSE.copy()
            if cond.fn in ("min", "max") and info.kind is Kind.TEXT:
                column = self.binary_order(column)
            if cond.fn in ("min", "max") and info.kind is Kind.UUID:  # no MIN(uuid) on PostgreSQL; its text orders alike
                column = self.binary_order(exp.cast(column, exp.DataType.build("TEXT")))
            if cond.fn in ("min", "max") and info.kind is Kind.BOOL:
                # false < true, so min is BOOL_AND and max BOOL_OR: PostgreSQL has no MIN(boolean)
                value = (exp.LogicalAnd if cond.fn == "min" else exp.LogicalOr)(this=column)
            else:
                value = _AGGREGATES[cond.fn](column)
            if cond.fn in ("min", "max"):
                kind = info.kind
        return self._grouped(model, alias, value, where, cond.comparison, kind, cond.fn,
                             empty_is_zero=cond.fn in ("count", "count_distinct", "sum"), position=cond.position)

    def _grouped(self, model: Model, alias: str, value: exp.Expr, where: list[exp.Expr],
                 comparison: Comparison, kind: Kind, what: str, *, empty_is_zero: bool,
                 position: Position) -> exp.Expr:
        """A per-entity grouped CTE, LEFT JOINed to the entity; compare its value."""
        key = self._key(model, alias, position)
        if key is None:
            return _FALSE.copy()
        name = self.scope.fresh("agg")
        select = exp.select(exp.alias_(key, "k"), exp.alias_(value, "v")).from_(model_source(model, alias))
        where = where + self.scope.only_candidates(key)
        if where:
            select = select.where(exp.and_(*where))
        self.scope.ctes.append((name, select.group_by(key.copy())))
        self.scope.joins.append((name, "k"))
        result: exp.Expr = col(name, "v")
        if empty_is_zero:
            result = exp.Coalesce(this=result, expressions=[exp.Literal.number(0)])
        return self.compare(result, kind, comparison, what)

    # -- references and sql ---------------------------------------------------------
    def segment_ref(self, ref: SegmentRef, depth: int) -> exp.Expr:
        target = self.scope.project.segments.get(ref.segment)
        if target is None or depth > 64:  # unknown or cyclic: reported by validation
            return _FALSE.copy()
        if target.where is not None:
            return exp.paren(self.compile(target.where, depth=depth + 1))
        assert target.query is not None
        from revseg.compile.membership import sql_segment_key

        alias = self.scope.fresh("s")
        entity_key = self._entity_key()
        if entity_key is None:
            return _FALSE.copy()
        source = exp.Subquery(this=target.query.copy(), alias=exp.TableAlias(this=exp.to_identifier(alias)))
        key = exp.column(exp.to_identifier(sql_segment_key(target, self.entity), quoted=True), table=alias)
        return exp.Exists(this=exp.select("1").from_(source).where(exp.EQ(this=key, expression=entity_key)))

    def sql_predicate(self, cond: SqlPredicate) -> exp.Expr:
        tree = self.qualify(cond.tree, cond.position)
        return coalesce_false(tree) if tree is not None else _FALSE.copy()

    def qualify(self, tree: exp.Expr, position: Position) -> exp.Expr | None:
        """Point the fragment's columns at the entity row; unknown columns are errors."""
        unknown = False

        def point(node: exp.Expr) -> exp.Expr:
            nonlocal unknown
            if not isinstance(node, exp.Column):
                return node
            info = self.scope.resolve(self.entity.name, node.name, position)
            if info is None:
                unknown = True
                return node
            return col(ENTITY, info.name)

        qualified = tree.copy().transform(point)
        return None if unknown else qualified

    def _entity_key(self) -> exp.Column | None:
        if self.key is None:
            return None
        return col(ENTITY, self.key.name)


def _exists_shape(count: Comparison | None) -> bool | None:
    """True: plain EXISTS (count >= 1); False: NOT EXISTS (count = 0); None: needs a count."""
    if count is None:
        return True
    if count.value is None or isinstance(count.value.raw, list):
        return None
    try:
        n = float(str(count.value.raw))
    except ValueError:
        return None
    if (count.op, n) in ((">=", 1), (">", 0)):
        return True
    if (count.op, n) in (("=", 0), ("<", 1), ("<=", 0)):
        return False
    return None


def _fold(join: object, parts: list[exp.Expr], empty: exp.Expr) -> exp.Expr:
    if not parts:
        return empty
    wrapped = [exp.paren(p) if isinstance(p, (exp.And, exp.Or)) else p for p in parts]
    return join(*wrapped)  # type: ignore[operator, no-any-return]


_ORDERING = (">", ">=", "<", "<=", "between")

_COMPARATORS: dict[str, type[exp.Expr]] = {
    "=": exp.EQ,
    "!=": exp.NEQ,
    ">": exp.GT,
    ">=": exp.GTE,
    "<": exp.LT,
    "<=": exp.LTE,
}

_AGGREGATES: dict[str, Callable[[exp.Expr], exp.Expr]] = {
    "count": lambda c: exp.Count(this=c),
    "count_distinct": lambda c: exp.Count(this=exp.Distinct(expressions=[c])),
    "sum": lambda c: exp.Sum(this=c),
    "avg": lambda c: exp.Avg(this=c),
    "min": lambda c: exp.Min(this=c),
    "max": lambda c: exp.Max(this=c),
}
