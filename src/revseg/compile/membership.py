"""A segment's membership as one query: ``id`` (the primary key as text) and its traits.

>>> # doctest-style sketch: compile_membership(project, catalog, "vip", as_of)
>>> # WITH agg1 AS (SELECT o.customer_id AS k, SUM(o.amount) AS v FROM orders AS o ... GROUP BY ...)
>>> # SELECT CAST(e.customer_id AS TEXT) AS id, e.email AS email FROM customers AS e
>>> # LEFT JOIN agg1 ON agg1.k = e.customer_id WHERE COALESCE(COALESCE(agg1.v, 0) >= 500, FALSE)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlglot import exp

from revseg.compile.catalog import Catalog
from revseg.compile.conditions import ENTITY, ConditionCompiler, Scope, col, model_source
from revseg.errors import Position, Problem, ProjectError
from revseg.spec.conditions import SqlPredicate, walk
from revseg.spec.project import Model, Project, Segment

ID = "id"


def sql_segment_key(segment: Segment, entity: Model) -> str:
    """The key column a ``sql:`` segment returns: the entity's primary key, ``id``, or the first."""
    assert segment.query is not None
    names = segment.query.named_selects
    lowered = {name.lower(): name for name in names}
    for candidate in (entity.primary_key or "", ID):
        if candidate.lower() in lowered:
            return lowered[candidate.lower()]
    return names[0] if names else ID


def membership_query(project: Project, catalog: Catalog, segment_name: str, as_of: datetime,
                     candidates: exp.Table | None = None) -> exp.Select:
    """Compile one segment; raise ProjectError with located problems if it cannot compile.

    With ``candidates`` (a table of keys in column ``k``), only those entities are evaluated.
    """
    query, problems = _membership(project, catalog, project.segments[segment_name], as_of, candidates)
    if problems:
        raise ProjectError(problems)
    return query


def check_segment(project: Project, catalog: Catalog, segment: Segment, as_of: datetime) -> list[Problem]:
    """Every column and value problem of a segment (validation with the warehouse's columns)."""
    return _membership(project, catalog, segment, as_of)[1]


def _membership(project: Project, catalog: Catalog, segment: Segment, as_of: datetime,
                candidates: exp.Table | None = None) -> tuple[exp.Select, list[Problem]]:
    entity = project.models[segment.entity]
    scope = Scope(project, catalog, as_of, candidates=candidates)
    compiler = ConditionCompiler(scope, entity)
    if segment.query is not None:
        return _sql_segment(segment, entity, compiler), scope.problems
    key = scope.resolve(entity.name, entity.primary_key or "", entity.key_positions.get("primary_key", entity.position))
    if key is None:
        return exp.select("1"), scope.problems
    selects = _id_and_traits(compiler, segment, key.name)
    # where is None only for a segment whose condition failed to parse (already reported)
    condition = compiler.compile(segment.where) if segment.where is not None else exp.false()
    query = one_per_key(exp.select(*selects).from_(model_source(entity, ENTITY)), col(ENTITY, key.name))
    for name, key_column in scope.joins:
        on = exp.EQ(this=exp.column(key_column, table=name), expression=col(ENTITY, key.name))
        query = query.join(exp.to_table(name), on=on, join_type="left")
    # a row whose key is NULL is no entity (it has no id to send or to remember)
    known = exp.not_(exp.Is(this=col(ENTITY, key.name), expression=exp.Null()))
    query = query.where(exp.and_(*scope.only_candidates(col(ENTITY, key.name)), known, condition))
    for name, cte in scope.ctes:
        query = query.with_(name, as_=cte)
    return query, scope.problems


@dataclass(frozen=True)
class Fragment:
    """A user SQL fragment of a segment, as a query the warehouse can bind without running
    (LIMIT 0): the compiler checks the columns it names, only the engine its types."""

    what: str  # "sql" or "trait 'name'"
    position: Position
    query: exp.Select
    boolean: bool  # a condition: its one column must be a boolean


def fragments(project: Project, catalog: Catalog, segment: Segment) -> list[Fragment]:
    """The ``sql:`` leaves of a ``where:`` segment and its traits that are expressions (not a
    bare column), each alone over the entity model: ``SELECT <fragment> AS value FROM entity``."""
    if segment.where is None:
        return []
    entity = project.models[segment.entity]
    compiler = ConditionCompiler(Scope(project, catalog, datetime.min), entity)
    found = [("sql", leaf.position, leaf.tree, True) for leaf in walk(segment.where) if isinstance(leaf, SqlPredicate)]
    found += [(f"trait '{t.name}'", t.position, t.tree, False) for t in segment.traits if not isinstance(t.tree, exp.Column)]
    out = []
    for what, position, tree, boolean in found:
        qualified = compiler.qualify(tree, position)
        if qualified is not None:  # else an unknown column, reported by check_segment
            query = exp.select(exp.alias_(qualified, "value")).from_(model_source(entity, ENTITY))
            out.append(Fragment(what, position, query, boolean))
    return out


def traits_query(project: Project, catalog: Catalog, segment_name: str) -> exp.Select:
    """``id`` and the traits of every entity (no condition): traits of entities that left."""
    segment = project.segments[segment_name]
    entity = project.models[segment.entity]
    scope = Scope(project, catalog, datetime.min)
    compiler = ConditionCompiler(scope, entity)
    key = catalog.column(entity.name, entity.primary_key or "")
    assert key is not None
    selects = _id_and_traits(compiler, segment, key.name)
    return one_per_key(exp.select(*selects).from_(model_source(entity, ENTITY)), col(ENTITY, key.name))


def one_per_key(query: exp.Select, key: exp.Expr) -> exp.Select:
    """One row per entity key (``DISTINCT ON``): a segment is a set of entities.

    A primary key with several rows (a data error dbt's ``unique`` test would catch) is a
    member when any of its rows qualifies, once, with the traits of one of those rows.
    Without an ORDER BY, DuckDB keeps the first row it sees at the cost of a hash lookup;
    sqlglot writes a ROW_NUMBER() filter for engines without ``DISTINCT ON``.
    """
    return query.distinct(key.copy())


def _id_and_traits(compiler: ConditionCompiler, segment: Segment, key: str) -> list[exp.Expr]:
    """The entity key as text (``id``), then each trait expression over the entity row."""
    selects: list[exp.Expr] = [
        exp.alias_(exp.cast(col(ENTITY, key), exp.DataType.build("TEXT")), ID, quoted=True)
    ]
    for trait in segment.traits:
        tree = compiler.qualify(trait.tree, trait.position)
        if tree is not None:
            selects.append(exp.alias_(tree, trait.name, quoted=True))
    return selects


def _sql_segment(segment: Segment, entity: Model, compiler: ConditionCompiler) -> exp.Select:
    """``sql:`` segments: the key as text, then the declared traits (or every other column)."""
    assert segment.query is not None
    key = sql_segment_key(segment, entity)
    source = exp.Subquery(this=segment.query.copy(), alias=exp.TableAlias(this=exp.to_identifier("s")))
    key_column = exp.column(exp.to_identifier(key, quoted=True), table="s")
    selects: list[exp.Expr] = [exp.alias_(exp.cast(key_column.copy(), exp.DataType.build("TEXT")), ID, quoted=True)]
    if segment.traits:
        for trait in segment.traits:
            tree = trait.tree.copy()
            for column in tree.find_all(exp.Column):
                column.set("table", exp.to_identifier("s"))
            selects.append(exp.alias_(tree, trait.name, quoted=True))
    else:
        for name in segment.query.named_selects:
            if name != key:
                selects.append(exp.alias_(exp.column(exp.to_identifier(name, quoted=True), table="s"), name, quoted=True))
    # a NULL key is no entity; a query may return a key more than once (a join, a union)
    query = exp.select(*selects).from_(source).where(exp.not_(exp.Is(this=key_column.copy(), expression=exp.Null())))
    return one_per_key(query, key_column)
