"""Trees for the diff: a segment's staged membership against what a sync's destination holds.

The diff is one query in the warehouse (a FULL OUTER JOIN of the stage and the sync's
snapshot on the id); only its rows, the changes, ever leave the warehouse. Each row gets
an ``op``:

- mirror / upsert: ``add`` (member, not held or held in an unknown state), ``remove`` (held,
  no longer a member; mirror only), ``update`` (held, synced traits' hash changed);
- trigger: ``trigger`` (send a message), and bookkeeping ops that send nothing:
  ``suppress`` (entered within ``cooldown`` of a previous send), ``remember`` (entered but
  nothing is due: the first run of a sync without ``backfill``, or ``on: exit`` syncs),
  ``forget`` (left; for ``on: enter`` syncs).

Rows are numbered (``rn``) in delivery order: removes first, then adds, then updates; so
batches can be read back by keyset.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlglot import exp

from revseg.compile.values import timestamp_literal

HASH = "revseg_hash"
SENDING_OPS = ("add", "remove", "update", "trigger")
_ORDER = {"remove": 0, "add": 1, "update": 2, "trigger": 3}


def _c(table: str, name: str) -> exp.Column:
    return exp.column(exp.to_identifier(name, quoted=True), table=exp.to_identifier(table))


def _s(value: str) -> exp.Literal:
    return exp.Literal.string(value)


def trait_hash(traits: list[str], table: str = "m") -> exp.MD5:
    """The hash of a row's traits (NULL-safe; each cast to text), as stored with the membership."""
    parts: list[exp.Expr] = []
    for name in traits:
        value = exp.cast(_c(table, name), exp.DataType.build("TEXT"))
        parts += [exp.Coalesce(this=value, expressions=[_s("\u2205")]), _s("\u001f")]
    return exp.MD5(this=exp.Concat(expressions=parts or [_s("")], safe=True))


def stage_query(membership: exp.Select, traits: list[str]) -> exp.Select:
    """Membership plus a hash of its traits, to detect trait updates in SQL."""
    return exp.select(exp.Star(), exp.alias_(trait_hash(traits), HASH, quoted=True)).from_(membership.subquery("m"))


def traits_differ(traits: list[str], left: str, right: str) -> list[exp.Expr]:
    """Per trait: the two rows' values differ, as their hash sees them (as text; NULL-safe)."""
    text = exp.DataType.build("TEXT")
    return [exp.NullSafeNEQ(this=exp.cast(_c(left, name), text), expression=exp.cast(_c(right, name), text))
            for name in traits]


@dataclass(frozen=True)
class DeltaSpec:
    """What the diff of one sync needs to know (no I/O)."""

    sync: str
    mode: str  # mirror | upsert | trigger
    traits: tuple[str, ...]
    max_attempts: int
    on: str = "enter"
    cooldown: timedelta | None = None
    first_run: bool = False
    backfill: bool = False


def delta_query(spec: DeltaSpec, stage: exp.Table, sync_members: exp.Table | exp.Subquery, rejections: exp.Table,
                triggers: exp.Table, as_of: datetime, exit_traits: exp.Select | None = None,
                only_ids: exp.Table | None = None) -> exp.Select:
    """The numbered delta of one sync, ready to be materialized (CREATE TABLE AS).

    ``only_ids`` (a table with an ``id`` column) limits the snapshot side to those ids: an
    incremental run whose sync held the previous membership exactly diffs only candidates
    (``stage`` is then their new rows).
    """
    held = (
        exp.select("id", "hash", "pending", "payload").from_(sync_members)
        .where(exp.EQ(this=exp.column("sync"), expression=_s(spec.sync)))
    )
    if only_ids is not None:
        held = held.where(exp.column("id").isin(query=exp.select("id").from_(only_ids.copy())))
    rejected = (
        exp.select("id", "attempts", "hash").from_(rejections)
        .where(exp.EQ(this=exp.column("sync"), expression=_s(spec.sync)))
    )
    m_id, s_id = _c("m", "id"), _c("s", "id")
    if spec.mode == "trigger":
        op, where, traits_from = _trigger_op(spec, m_id, s_id)
    else:
        op, where, traits_from = _mirror_op(spec, m_id, s_id)
    diff = (
        exp.select(
            exp.alias_(op, "op", quoted=True),
            exp.alias_(exp.Coalesce(this=m_id.copy(), expressions=[s_id.copy()]), "id", quoted=True),
            exp.alias_(_c("m", HASH), "hash", quoted=True),
            exp.alias_(_c("s", "payload"), "held_payload", quoted=True),
            exp.alias_(exp.not_(exp.Is(this=s_id.copy(), expression=exp.Null())), "held", quoted=True),
            *[exp.alias_(_c(traits_from, t), t, quoted=True) for t in spec.traits],
        )
        .from_(stage.copy().as_("m"))
        .join(held.subquery("s"), on=exp.EQ(this=m_id.copy(), expression=s_id.copy()), join_type="full outer")
        .where(where)
    )
    if spec.mode == "trigger":
        diff = diff.join(_recent(spec, triggers, as_of).subquery("recent"),
                         on=exp.EQ(this=_c("recent", "id"), expression=exp.Coalesce(this=m_id.copy(), expressions=[s_id.copy()])),
                         join_type="left")
        if exit_traits is not None:
            diff = diff.join(exit_traits.subquery("t"),
                             on=exp.EQ(this=_c("t", "id"), expression=exp.Coalesce(this=m_id.copy(), expressions=[s_id.copy()])),
                             join_type="left")
    order = exp.Case(
        this=_c("d", "op"),
        ifs=[exp.If(this=_s(k), true=exp.Literal.number(v)) for k, v in _ORDER.items()],
        default=exp.Literal.number(9),
    )
    row_number = exp.Window(this=exp.RowNumber(), order=exp.Order(expressions=[exp.Ordered(this=order), exp.Ordered(this=_c("d", "id"))]))
    return (
        exp.select(exp.alias_(row_number, "rn", quoted=True), exp.column(exp.Star(), table="d"))
        .from_(diff.subquery("d"))
        .join(rejected.subquery("r"), on=exp.EQ(this=_c("r", "id"), expression=_c("d", "id")), join_type="left")
        .where(exp.or_(
            exp.Is(this=_c("r", "attempts"), expression=exp.Null()),
            exp.LT(this=_c("r", "attempts"), expression=exp.Literal.number(spec.max_attempts)),
            # traits changed since the rejection (a fixed email): worth another try
            exp.NEQ(this=_c("r", "hash"), expression=_c("d", "hash")),
        ))
    )


def _mirror_op(spec: DeltaSpec, m_id: exp.Column, s_id: exp.Column) -> tuple[exp.Expr, exp.Expr, str]:
    missing = exp.Is(this=s_id.copy(), expression=exp.Null())
    gone = exp.Is(this=m_id.copy(), expression=exp.Null())
    pending = _c("s", "pending")
    changed = exp.or_(exp.Is(this=_c("s", "hash"), expression=exp.Null()),
                      exp.NEQ(this=_c("m", HASH), expression=_c("s", "hash")))
    op = exp.Case(ifs=[
        exp.If(this=gone, true=_s("remove")),
        exp.If(this=exp.or_(missing, pending), true=_s("add")),
    ], default=_s("update"))
    conditions: list[exp.Expr] = [exp.and_(exp.not_(gone.copy()), exp.or_(missing.copy(), pending.copy()))]
    if spec.mode == "mirror":
        conditions.append(gone.copy())
    # updates always: the runner turns one whose identifiers changed into remove + add, and
    # acknowledges the others without sending where the API has no update
    conditions.append(exp.and_(exp.not_(gone.copy()), exp.not_(missing.copy()), exp.not_(pending.copy()), changed))
    return op, exp.or_(*conditions), "m"


def _trigger_op(spec: DeltaSpec, m_id: exp.Column, s_id: exp.Column) -> tuple[exp.Expr, exp.Expr, str]:
    entered = exp.and_(exp.not_(exp.Is(this=m_id.copy(), expression=exp.Null())), exp.Is(this=s_id.copy(), expression=exp.Null()))
    left = exp.and_(exp.Is(this=m_id.copy(), expression=exp.Null()), exp.not_(exp.Is(this=s_id.copy(), expression=exp.Null())))
    recent = exp.not_(exp.Is(this=_c("recent", "id"), expression=exp.Null()))
    due: exp.Expr = exp.Case(ifs=[exp.If(this=recent, true=_s("suppress"))], default=_s("trigger"))
    if spec.first_run and not spec.backfill:
        due = _s("remember")  # SPEC 3: the first run records current members, sends nothing
    if spec.on == "enter":
        op = exp.Case(ifs=[exp.If(this=entered, true=due)], default=_s("forget"))
        return op, exp.or_(entered.copy(), left.copy()), "m"
    op = exp.Case(ifs=[exp.If(this=left, true=due)], default=_s("remember"))
    return op, exp.or_(entered.copy(), left.copy()), "t"


def _recent(spec: DeltaSpec, triggers: exp.Table, as_of: datetime) -> exp.Select:
    """Ids sent (or possibly sent) within the cooldown, counted in data time."""
    query = (
        exp.select("id").from_(triggers)
        .where(exp.EQ(this=exp.column("sync"), expression=_s(spec.sync)))
        .where(exp.In(this=exp.column("status"), expressions=[_s("intent"), _s("sent")]))
    )
    if spec.cooldown is None:
        query = query.where(exp.false())
    else:
        query = query.where(exp.GT(this=exp.column("as_of"), expression=timestamp_literal(as_of - spec.cooldown)))
    return query.group_by("id")
