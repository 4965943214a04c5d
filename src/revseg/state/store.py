"""State operations in the warehouse: migrations, the stored membership of each segment,
segment snapshots, and the per-batch bookkeeping that makes delivery crash-safe (SPEC 4).

The delivery protocol of one batch of a sync:

1. ``mark_inflight``: record the batch in ``inflight`` (one insert) before it is sent.
   Trigger sends are applied to the snapshot here already: at most once, never resent.
2. send it.
3. ``acknowledge``: in one transaction, apply the outcome: acknowledged adds/updates become
   held with their hash, acknowledged removes leave; rejections are recorded with their
   reason and attempt count; the inflight rows are deleted.

A crash between 1 and 3 leaves ``inflight`` rows; ``recover`` (at the next run of the sync)
turns their ids ``pending`` in ``sync_members``: the next diff re-adds those still members
and removes the others, so a mirror ends exactly equal to the segment.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

from sqlglot import exp

from revseg.compile.delta import HASH, trait_hash, traits_differ
from revseg.compile.values import number_literal, timestamp_literal
from revseg.errors import StateError
from revseg.state.schema import LATEST, MIGRATIONS, create_table, table
from revseg.warehouse.base import Warehouse


def _s(value: str) -> exp.Literal:
    return exp.Literal.string(value)


def _eq(column: str, value: Any) -> exp.EQ:
    literal = exp.Literal.number(value) if isinstance(value, int) else _s(str(value))
    return exp.EQ(this=exp.column(column), expression=literal)


def _all_empty(traits: Any) -> list[exp.Expr]:
    return [
        exp.EQ(this=exp.Coalesce(this=exp.cast(exp.column(exp.to_identifier(t, quoted=True)), exp.DataType.build("TEXT")),
                                 expressions=[_s("")]), expression=_s(""))
        for t in traits
    ]


#: a segment's scratch tables: the whole fresh membership of a full run and how it differs
#: from the stored one, the candidates (keys that may have changed) and their new rows
RUN_TABLES = ("fresh", "diff", "cand", "changed")

_MEMBER_COLUMNS = ["sync", "id", "hash", "pending", "payload", "updated_at"]

#: scratch tables of at least this many rows are dropped when their run is done
SCRATCH_KEPT_ROWS = 10_000


def _value(value: Any) -> exp.Expr:
    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, datetime):
        return timestamp_literal(value)
    if isinstance(value, (int, float)):
        return number_literal(value)
    return _s(str(value))


def _ident(name: str) -> str:
    """A table-name-safe spelling of a segment or sync name."""
    return "".join(ch if ch.isalnum() or ch == "_" else "__" for ch in name)


class StateStore:
    """revseg's tables in ``schema`` of one warehouse connection."""

    def __init__(self, warehouse: Warehouse, schema: str) -> None:
        self.wh = warehouse
        self.schema = schema
        self._ensured = False
        #: scratch tables this connection created and has not dropped, with their row count
        self._scratch: dict[str, int] = {}
        #: column names of each stored membership this connection has read or written: no
        #: other process writes a stage while this one holds the segment's lock
        self._stage_columns: dict[str, list[str]] = {}

    def t(self, name: str) -> exp.Table:
        return table(self.schema, name)

    def stage_table(self, segment: str) -> exp.Table:
        return self.t(f"stage__{_ident(segment)}")

    def delta_table(self, sync: str) -> exp.Table:
        return self.scratch(f"delta__{_ident(sync)}")

    # -- schema ---------------------------------------------------------------------
    def ensure(self) -> None:
        """Create the schema and apply pending migrations (each in its own transaction)."""
        if self._ensured:
            return
        with self.wh.exclusive(f"revseg state {self.schema}"):  # two first runs: one migrates
            self._migrate()
        self._ensured = True

    def _migrate(self) -> None:
        if not self.wh.schema_exists(self.schema):
            self.wh.execute(exp.Create(this=exp.to_identifier(self.schema, quoted=True), kind="SCHEMA", exists=True))
        self.wh.execute(create_table(self.schema, "schema_version"))
        rows = self.wh.fetchall(exp.select(exp.Max(this=exp.column("version"))).from_(self.t("schema_version")))
        current = int(rows[0][0] or 0)
        if current > LATEST:
            raise StateError(
                f"state schema '{self.schema}' is at version {current}, newer than this revseg "
                f"understands ({LATEST}): upgrade revseg"
            )
        for version in range(current + 1, LATEST + 1):
            with self.transaction():
                self.wh.execute_many(MIGRATIONS[version - 1](self.schema))
                self.wh.execute(exp.insert(
                    exp.select(exp.Literal.number(version), timestamp_literal(datetime.utcnow())),
                    self.t("schema_version"),
                ))

    def exists(self, table: str = "runs") -> bool:
        """Whether any revseg state is here (status/history on a fresh warehouse), or with
        ``table``, that state table (a read-only command on a state an older revseg wrote)."""
        return self.wh.schema_exists(self.schema) and self.wh.columns(_tableref(self.schema, table)) is not None

    # -- helpers --------------------------------------------------------------------
    def transaction(self) -> AbstractContextManager[None]:
        """The warehouse's transaction (inside another one it joins it)."""
        return self.wh.transaction()

    def scalar(self, query: exp.Select) -> Any:
        rows = self.wh.fetchall(query)
        return rows[0][0] if rows else None

    def replace_table(self, target: exp.Table, query: exp.Query) -> int:
        """(Re)create ``target`` from a query and return its number of rows; a scratch table
        (no schema) is TEMPORARY: it lives in this connection only and writes nothing durable."""
        scratch = not target.db
        count = self.wh.create_table_as(target, query, temporary=scratch)
        if count is None:
            count = int(self.scalar(exp.select(exp.Count(this=exp.Star())).from_(target.copy())))
        if scratch:
            self._scratch[target.name] = count
        return count

    def drop(self, target: exp.Table) -> None:
        self.wh.execute(exp.Drop(tables=[target.copy()], kind="TABLE", exists=True))
        self._scratch.pop(target.name, None)

    def release(self, target: exp.Table) -> None:
        """Done with a scratch table: a large one is dropped; a small one stays until it is
        replaced or the connection closes (a drop is a statement per run of a long-running
        session)."""
        if self._scratch.get(target.name, 0) >= SCRATCH_KEPT_ROWS:
            self.drop(target)

    def insert_rows(self, name: str, rows: list[dict[str, Any]]) -> None:
        """A few bookkeeping rows, as one INSERT ... VALUES (bulk data goes through Arrow)."""
        if not rows:
            return
        columns = list(rows[0])
        values = exp.values([tuple(_value(row[c]) for c in columns) for row in rows])
        self.wh.execute(exp.insert(values, self.t(name), columns=[exp.to_identifier(c, quoted=True) for c in columns]))

    def upsert_row(self, name: str, row: dict[str, Any], key: str) -> None:
        """Replace the row whose ``key`` is ``row``'s, or insert it: an UPDATE, then an INSERT
        when it changed nothing (on DuckDB, cheaper than ON CONFLICT or DELETE + INSERT)."""
        update = exp.update(self.t(name), {c: _value(v) for c, v in row.items() if c != key},
                            where=_eq(key, row[key]))
        if not self.wh.execute_count(update):
            self.insert_rows(name, [row])

    # -- runs -----------------------------------------------------------------------
    def start_run(self, run_id: str, command: str, as_of: datetime, now: datetime) -> None:
        self.insert_rows("runs", [{"run_id": run_id, "command": command, "as_of": as_of,
                                   "status": "running", "started_at": now, "finished_at": None}])

    def finish_run(self, run_id: str, status: str, now: datetime) -> None:
        self.wh.execute(exp.update(self.t("runs"), {"status": _s(status), "finished_at": timestamp_literal(now)},
                                   where=_eq("run_id", run_id)))

    # -- segments -------------------------------------------------------------------
    def stage(self, segment: str, query: exp.Select) -> int:
        """Materialize a segment's membership (with its traits' hash) for this run."""
        self._stage_columns.pop(segment, None)
        return self.replace_table(self.stage_table(segment), query)

    def scratch(self, name: str) -> exp.Table:
        """A temporary table for this run only (candidates, changes, deltas)."""
        return exp.table_(f"revseg_{self.schema}__{name}", quoted=True)

    def run_table(self, segment: str, kind: str) -> exp.Table:
        """One of a segment's scratch tables of this run (``RUN_TABLES``)."""
        assert kind in RUN_TABLES, kind
        return self.scratch(f"{kind}__{_ident(segment)}")

    def forget(self) -> None:
        """Forget what this connection remembered of the state (the stored memberships'
        columns): another process may have changed it since."""
        self._stage_columns.clear()

    def stage_columns(self, segment: str) -> list[str] | None:
        """The stored membership's column names, or None when there is none yet."""
        if segment not in self._stage_columns:
            columns = self.wh.columns(_tableref(self.schema, f"stage__{_ident(segment)}"))
            if columns is None:
                return None
            self._stage_columns[segment] = [c.name for c in columns]
        return list(self._stage_columns[segment])

    def restage(self, segment: str, fresh: exp.Table) -> tuple[exp.Table, exp.Table]:
        """A full run: patch the stored membership to equal ``fresh`` (the whole new
        membership: a scratch table of the stage's columns but the hash) by rewriting only
        the rows that differ, not every member. Returns (ids that changed, their new rows)
        like an incremental run's candidates.

        One FULL OUTER JOIN of the two finds the new rows, the rows whose traits changed and
        the ids that left, into a small table the two results are read from. Traits are
        compared as the hash sees them, and only those rows are hashed: hashing every
        member cost more than the join."""
        columns = self.stage_columns(segment) or []
        traits = [c for c in columns if c not in ("id", HASH)]
        gone = "revseg_gone"
        while gone in columns:
            gone += "_"
        stage = self.stage_table(segment)
        diff, changed, candidates = (self.run_table(segment, kind) for kind in ("diff", "changed", "cand"))
        f_id, s_id = exp.column("id", table="f"), exp.column("id", table="s")
        new_row = [exp.column(exp.to_identifier(c, quoted=True), table="f") if c != HASH
                   else exp.alias_(trait_hash(traits, "f"), HASH, quoted=True) for c in columns]
        self.replace_table(diff, exp.select(*new_row, exp.alias_(s_id.copy(), gone, quoted=True))
            .from_(exp.alias_(fresh.copy(), "f", table=True))
            .join(exp.select("id", *[exp.to_identifier(t, quoted=True) for t in traits]).from_(stage).subquery("s"),
                  on=exp.EQ(this=f_id.copy(), expression=s_id.copy()), join_type="full outer")
            .where(exp.or_(exp.Is(this=f_id.copy(), expression=exp.Null()),
                           exp.Is(this=s_id.copy(), expression=exp.Null()), *traits_differ(traits, "f", "s"))))
        self.replace_table(changed, exp.select(*[exp.to_identifier(c, quoted=True) for c in columns]).from_(diff.copy())
                           .where(exp.not_(exp.Is(this=exp.column("id"), expression=exp.Null()))))
        self.replace_table(candidates, exp.select(exp.alias_(exp.Coalesce(
            this=exp.column("id"), expressions=[exp.column(exp.to_identifier(gone, quoted=True))]), "id")).from_(diff.copy()))
        return candidates, changed

    def stage_version_query(self, segment: str) -> exp.Select:
        """The query of the as_of the stored membership was computed at (no row: none)."""
        return exp.select("as_of").from_(self.t("stage_versions")).where(_eq("segment", segment))

    def set_stage_version(self, segment: str, as_of: datetime) -> None:
        with self.transaction():
            self._set_stage_version(segment, as_of)

    def _set_stage_version(self, segment: str, as_of: datetime) -> None:
        self.upsert_row("stage_versions", {"segment": segment, "as_of": as_of}, key="segment")

    def patch_stage(self, segment: str, candidates: exp.Table, changed: exp.Table, as_of: datetime) -> int:
        """Replace the candidates' rows of the stored membership by their new rows, and mark
        it as evaluated at ``as_of``, in one transaction."""
        stage = self.stage_table(segment)
        with self.transaction():
            self.wh.execute(exp.delete(stage, where=exp.column("id").isin(
                query=exp.select("id").from_(candidates.copy()))))
            self.wh.execute(exp.insert(exp.select("*").from_(changed.copy()), stage.copy()))
            self._set_stage_version(segment, as_of)
        return int(self.scalar(exp.select(exp.Count(this=exp.Star())).from_(stage)))

    def segment_size(self, segment: str) -> int:
        query = exp.select(exp.Count(this=exp.Star())).from_(self.t("segment_members")).where(_eq("segment", segment))
        return int(self.scalar(query))

    def stage_traits(self, segment: str) -> list[str]:
        """Trait columns of a staged ``sql:`` segment (everything but id and the hash)."""
        return [c for c in self.stage_columns(segment) or [] if c not in ("id", HASH)]

    def commit_segment(self, segment: str, as_of: datetime, retention: timedelta,
                       only: tuple[exp.Table, exp.Table] | None = None) -> tuple[int, int]:
        """Replace the segment's committed snapshot by the stage; keep entered/exited history.

        The two sides are joined once, into a small table of changes; every write then
        reads only the changes. ``only`` = (candidates, their new rows): an incremental run
        compares just those.
        """
        stage = only[1] if only else self.stage_table(segment)
        members = self.t("segment_members")
        history = self.t("membership_history")
        changes = self.scratch(f"changes__{_ident(segment)}")
        snapshot = exp.select("id").from_(members).where(_eq("segment", segment))
        if only:
            snapshot = snapshot.where(exp.column("id").isin(query=exp.select("id").from_(only[0].copy())))
        m_id, s_id = exp.column("id", table="m"), exp.column("id", table="s")
        diff = (
            exp.select(
                exp.alias_(exp.Coalesce(this=m_id.copy(), expressions=[s_id.copy()]), "id"),
                exp.alias_(exp.If(this=exp.Is(this=s_id.copy(), expression=exp.Null()),
                                  true=_s("enter"), false=_s("exit")), "change"),
            )
            .from_(exp.select("id").from_(stage).subquery("m"))
            .join(snapshot.subquery("s"), on=exp.EQ(this=m_id.copy(), expression=s_id.copy()), join_type="full outer")
            .where(exp.or_(exp.Is(this=m_id.copy(), expression=exp.Null()), exp.Is(this=s_id.copy(), expression=exp.Null())))
        )
        self.replace_table(changes, diff)
        counts = dict(self.wh.fetchall(exp.select("change", exp.Count(this=exp.Star())).from_(changes).group_by("change")))
        entered, exited = int(counts.get("enter", 0)), int(counts.get("exit", 0))
        moment = timestamp_literal(as_of)
        entering = exp.select("id").from_(changes).where(_eq("change", "enter"))
        leaving = exp.select("id").from_(changes).where(_eq("change", "exit"))
        with self.transaction():
            if exited:
                self.wh.execute(exp.update(history, {"exited_at": moment}, where=exp.and_(
                    _eq("segment", segment), exp.Is(this=exp.column("exited_at"), expression=exp.Null()),
                    exp.column("id").isin(query=leaving.copy()))))
                self.wh.execute(exp.delete(members, where=exp.and_(
                    _eq("segment", segment), exp.column("id").isin(query=leaving.copy()))))
            if entered:
                self.wh.execute(exp.insert(
                    exp.select(_s(segment), exp.column("id"), moment.copy(), exp.Null()).from_(entering.subquery("x")),
                    history))
                self.wh.execute(exp.insert(
                    exp.select(_s(segment), exp.column("id"), moment.copy()).from_(entering.subquery("x")), members))
            if exited:
                self.wh.execute(exp.delete(history, where=exp.and_(
                    _eq("segment", segment),
                    exp.LT(this=exp.column("exited_at"), expression=timestamp_literal(as_of - retention)))))
        self.release(changes)
        return entered, exited

    # -- syncs ----------------------------------------------------------------------
    def recover(self, sync: str, trigger_on: str | None = None) -> int:
        """Batches a killed run left in flight: their ids become ``pending`` (state at the
        destination unknown), so the next diff re-adds members and removes the others.
        Trigger sends were applied when recorded: at most once, never sent again."""
        inflight, members = self.t("inflight"), self.t("sync_members")
        mine = _eq("sync", sync)
        count = int(self.scalar(exp.select(exp.Count(this=exp.Star())).from_(inflight).where(mine.copy())))
        if not count:
            return 0
        with self.transaction():
            if trigger_on is None:
                in_flight = exp.and_(mine.copy(), exp.column("id").isin(query=self._in_flight_ids(sync)))
                self.wh.execute(exp.delete(members, where=in_flight))
                unknown = self._in_flight_as_pending(sync, timestamp_literal(datetime.utcnow()))
                self.wh.execute(exp.insert(unknown, members, columns=_MEMBER_COLUMNS))
            self.wh.execute(exp.delete(inflight, where=mine.copy()))
            self.wh.execute(exp.delete(self.t("outcomes"), where=mine.copy()))
        return count

    def recovered_members(self, sync: str) -> exp.Subquery:
        """The sync's snapshot as ``recover`` would leave it, read only (``plan`` changes no
        state): ids of batches a killed run left in flight count as ``pending``, so a plan
        shows the re-adds and removes the next sync will send."""
        kept = exp.select("sync", "id", "hash", "pending", "payload").from_(self.t("sync_members")).where(
            exp.and_(_eq("sync", sync), exp.not_(exp.column("id").isin(query=self._in_flight_ids(sync)))))
        return exp.union(kept, self._in_flight_as_pending(sync), distinct=False).subquery("held")

    def _in_flight_ids(self, sync: str) -> exp.Select:
        return exp.select("id").from_(self.t("inflight")).where(_eq("sync", sync))

    def _in_flight_as_pending(self, sync: str, *more: exp.Expr) -> exp.Select:
        """One snapshot row per id of the sync's batches in flight: its state at the destination
        is unknown, so no hash and ``pending`` (then ``more`` columns)."""
        return (
            exp.select(_s(sync), exp.column("id"), exp.cast(exp.Null(), exp.DataType.build("TEXT")), exp.true(),
                       exp.Max(this=exp.column("payload")), *more)
            .from_(self.t("inflight")).where(_eq("sync", sync)).group_by("id")
        )

    def record_first_run(self, sync: str, run_id: str, now: datetime) -> None:
        """The sync's first run started (its delta is then a backfill, see compile.delta)."""
        self.insert_rows("syncs", [{"sync": sync, "first_run_id": run_id, "created_at": now}])

    def held(self, sync: str) -> int:
        query = exp.select(exp.Count(this=exp.Star())).from_(self.t("sync_members")).where(_eq("sync", sync))
        return int(self.scalar(query))

    def materialize_delta(self, sync: str, query: exp.Select) -> dict[str, int]:
        """Write the sync's numbered delta to a table; return the count of rows per op.

        Not sorted again by ``rn``: the numbering's own sort leaves the rows in ``rn``
        order, and a page is read by an ``rn`` range with ORDER BY anyway (a second sort of a
        1M-row delta cost 0.2-0.3 s and as much memory as the delta)."""
        target = self.delta_table(sync)
        self.replace_table(target, query)
        rows = self.wh.fetchall(exp.select("op", exp.Count(this=exp.Star())).from_(target).group_by("op"))
        return {str(op): int(n) for op, n in rows}

    def apply_bookkeeping(self, sync: str, on: str, now: datetime) -> None:
        """Trigger-mode ops that send nothing: remember / forget / suppress, in bulk."""
        delta = self.delta_table(sync)
        members = self.t("sync_members")
        keeps = ["remember", "suppress"] if on == "enter" else ["remember"]
        drops = ["forget"] if on == "enter" else ["forget", "suppress"]
        with self.transaction():
            ids = exp.select("id").from_(delta).where(exp.column("op").isin(*[_s(o) for o in keeps + drops]))
            self.wh.execute(exp.delete(members, where=exp.and_(_eq("sync", sync), exp.column("id").isin(query=ids))))
            self.wh.execute(exp.insert(
                exp.select(_s(sync), exp.column("id"), exp.column("hash"), exp.false(), exp.Null(), timestamp_literal(now))
                .from_(delta).where(exp.column("op").isin(*[_s(o) for o in keeps])),
                members,
            ))

    def read_delta(self, sync: str, after: int, limit: int, ops: tuple[str, ...], *,
                   total: int) -> dict[str, list[Any]]:
        """Rows ``after < rn <= after + limit`` of the delta that send (``rn`` is dense, so
        a page is a range, not a sort of the whole delta), as one list per column; read as
        Arrow when the warehouse prefers it for a delta of ``total`` rows."""
        query = (
            exp.select("*").from_(self.delta_table(sync))
            .where(exp.GT(this=exp.column("rn"), expression=exp.Literal.number(after)))
            .where(exp.LTE(this=exp.column("rn"), expression=exp.Literal.number(after + limit)))
            .where(exp.column("op").isin(*[_s(o) for o in ops]))
            .order_by("rn")
        )
        if not self.wh.prefers_arrow(total):
            return self.wh.fetch_columns(query)
        import pyarrow as pa

        batches = list(self.wh.fetch_batches(query, limit))
        if not batches:
            return {}
        page = pa.Table.from_batches(batches)
        return {name: page.column(name).to_pylist() for name in page.column_names}

    def mark_inflight(self, sync: str, run_id: str, batch: int, rows: dict[str, list[Any]],
                      *, trigger_on: str | None, as_of: datetime, now: datetime) -> None:
        """Step 1 of the protocol: the batch is recorded before it is sent.

        ``rows`` has columns id, op, hash, payload, held (the destination held the id before),
        one list each.
        Mirror and upsert only write ``inflight`` (a crash leaves it for ``recover``); a trigger
        send is applied to the snapshot here already, so it is never sent twice.
        """
        inflight, members = self.t("inflight"), self.t("sync_members")
        this_batch = exp.and_(_eq("sync", sync), _eq("run_id", run_id), _eq("batch", batch))
        batch_of = {"sync": sync, "run_id": run_id, "batch": batch}
        if trigger_on is None:
            self.wh.insert_columns(inflight, rows, batch_of)
            return
        ids = exp.select("id").from_(inflight).where(this_batch.copy())
        with self.transaction():
            self.wh.insert_columns(inflight, rows, batch_of)
            self.wh.execute(exp.insert(
                exp.select(_s(sync), exp.column("id"), _s(run_id), timestamp_literal(as_of), _s("intent"), exp.Null())
                .from_(inflight).where(this_batch.copy()),
                self.t("triggers"), columns=["sync", "id", "run_id", "as_of", "status", "reason"],
            ))
            self.wh.execute(exp.delete(members, where=exp.and_(_eq("sync", sync), exp.column("id").isin(query=ids))))
            if trigger_on == "enter":  # triggered: a member of the snapshot from now on
                self.wh.execute(exp.insert(
                    exp.select(_s(sync), exp.column("id"), exp.column("hash"), exp.false(), exp.column("payload"),
                               timestamp_literal(now)).from_(inflight).where(this_batch.copy()),
                    members, columns=_MEMBER_COLUMNS,
                ))

    def forget_inflight(self, sync: str, run_id: str, batch: int) -> None:
        """Undo step 1 for a batch that will not be sent after all (the run is stopping)."""
        this_batch = exp.and_(_eq("sync", sync), _eq("run_id", run_id), _eq("batch", batch))
        self.wh.execute(exp.delete(self.t("inflight"), where=this_batch))

    def acknowledge(self, sync: str, run_id: str, batch: int, rejected: dict[str, str], *,
                    trigger_on: str | None, now: datetime, any_held: bool = True,
                    open_rejections: bool = True) -> None:
        """Step 3: apply the destination's answer to the batch, in one transaction.

        ``any_held`` False (no id of the batch was held) and ``open_rejections`` False (the
        sync has no rejection on record) let a first upload skip statements that would scan
        the snapshot for nothing.

        Inside a transaction it joins it: the runner records a mirror's next batch in flight
        in the same one (one commit per batch, see ``runner/sync.py``).
        """
        inflight, members = self.t("inflight"), self.t("sync_members")
        this_batch = exp.and_(_eq("sync", sync), _eq("run_id", run_id), _eq("batch", batch))
        bad = exp.select("id").from_(self.t("outcomes")).where(this_batch.copy())
        is_bad = exp.column("id").isin(query=bad)
        ok = exp.not_(is_bad.copy()) if rejected else exp.true()
        stamp = timestamp_literal(now)
        with self.transaction():
            if rejected:
                self.insert_rows("outcomes", [{"sync": sync, "run_id": run_id, "batch": batch, "id": i, "reason": r}
                                              for i, r in rejected.items()])
            if trigger_on is None:
                if any_held:
                    held_ids = exp.select("id").from_(inflight).where(exp.and_(this_batch.copy(), exp.column("held")))
                    self.wh.execute(exp.delete(members, where=exp.and_(
                        _eq("sync", sync), exp.column("id").isin(query=held_ids))))
                acked = exp.select(_s(sync), exp.column("id"), exp.column("hash"), exp.false(), exp.column("payload"), stamp)
                self.wh.execute(exp.insert(acked.from_(inflight).where(exp.and_(
                    this_batch.copy(), exp.column("op").isin(_s("add"), _s("update")), ok.copy())),
                    members, columns=_MEMBER_COLUMNS))
                if rejected and any_held:
                    # rejected, and the destination held it before: its state there is unknown
                    unknown = exp.select(_s(sync), exp.column("id"), exp.Null(), exp.true(), exp.column("payload"), stamp.copy())
                    self.wh.execute(exp.insert(unknown.from_(inflight).where(exp.and_(
                        this_batch.copy(), exp.column("held"), is_bad.copy())), members, columns=_MEMBER_COLUMNS))
            else:
                ids = exp.select("id").from_(inflight).where(this_batch.copy())
                sent_where = exp.and_(_eq("sync", sync), _eq("run_id", run_id), exp.column("id").isin(query=ids))
                self.wh.execute(exp.update(self.t("triggers"), {"status": _s("sent")}, where=exp.and_(sent_where, ok.copy())))
                if rejected:
                    self.wh.execute(exp.update(self.t("triggers"), {"status": _s("rejected")},
                                               where=exp.and_(sent_where.copy(), is_bad.copy())))
                    if trigger_on == "enter":  # a rejected message may be retried: not triggered after all
                        self.wh.execute(exp.delete(members, where=exp.and_(_eq("sync", sync), is_bad.copy())))
                    else:
                        self.wh.execute(exp.insert(
                            exp.select(_s(sync), exp.column("id"), exp.column("hash"), exp.false(), exp.column("payload"),
                                       stamp.copy()).from_(inflight).where(exp.and_(this_batch.copy(), is_bad.copy())),
                            members, columns=_MEMBER_COLUMNS))
            if rejected or open_rejections:
                self._record_rejections(sync, run_id, batch, now)
            self.wh.execute(exp.delete(inflight, where=this_batch.copy()))
            if rejected:
                self.wh.execute(exp.delete(self.t("outcomes"), where=this_batch.copy()))

    def _record_rejections(self, sync: str, run_id: str, batch: int, now: datetime) -> None:
        """Count an attempt for each rejected id; clear the record of acknowledged ones."""
        rejections = self.t("rejections")
        this_batch = exp.and_(exp.EQ(this=exp.column("sync", table="i"), expression=_s(sync)),
                              exp.EQ(this=exp.column("run_id", table="i"), expression=_s(run_id)),
                              exp.EQ(this=exp.column("batch", table="i"), expression=exp.Literal.number(batch)))
        previous = exp.Coalesce(this=exp.column("attempts", table="old"), expressions=[exp.Literal.number(0)])
        fresh = (
            exp.select(_s(sync), exp.column("id", table="i"), exp.column("op", table="i"), exp.column("reason", table="o"),
                       exp.Add(this=previous, expression=exp.Literal.number(1)), _s(run_id), timestamp_literal(now),
                       exp.column("hash", table="i"))
            .from_(self.t("inflight").as_("i"))
            .join(self.t("outcomes").as_("o"), on=exp.and_(
                exp.EQ(this=exp.column("id", table="o"), expression=exp.column("id", table="i")),
                exp.EQ(this=exp.column("sync", table="o"), expression=_s(sync)),
                exp.EQ(this=exp.column("run_id", table="o"), expression=_s(run_id)),
                exp.EQ(this=exp.column("batch", table="o"), expression=exp.Literal.number(batch))))
            .join(rejections.copy().as_("old"), on=exp.and_(
                exp.EQ(this=exp.column("id", table="old"), expression=exp.column("id", table="i")),
                exp.EQ(this=exp.column("sync", table="old"), expression=_s(sync))), join_type="left")
            .where(this_batch)
        )
        self.wh.execute(exp.insert(fresh, rejections, columns=[
            "sync", "id", "op", "reason", "attempts", "run_id", "rejected_at", "hash"]))
        ids = exp.select("id").from_(self.t("inflight")).where(
            exp.and_(_eq("sync", sync), _eq("run_id", run_id), _eq("batch", batch)))
        self.wh.execute(exp.delete(rejections, where=exp.and_(
            _eq("sync", sync), exp.column("id").isin(query=ids),
            exp.or_(exp.NEQ(this=exp.column("run_id"), expression=_s(run_id)),
                    exp.Is(this=exp.column("run_id"), expression=exp.Null())))))

    # -- plan (read only) -----------------------------------------------------------
    def plan_segment(self, segment: str, stage: exp.Expr) -> tuple[int, int]:
        """Entered / exited counts of a staged query against the committed snapshot."""
        in_snapshot = exp.select("id").from_(self.t("segment_members")).where(_eq("segment", segment))
        staged_ids = exp.select("id").from_(stage)
        entered = exp.select(exp.Count(this=exp.Star())).from_(stage.copy()).where(
            exp.not_(exp.column("id").isin(query=in_snapshot.copy())))
        exited = exp.select(exp.Count(this=exp.Star())).from_(in_snapshot.subquery("x")).where(
            exp.not_(exp.column("id").isin(query=staged_ids)))
        return int(self.scalar(entered)), int(self.scalar(exited))

    def count_delta(self, query: exp.Select) -> dict[str, int]:
        rows = self.wh.fetchall(exp.select("op", exp.Count(this=exp.Star())).from_(query.subquery("d")).group_by("op"))
        return {str(op): int(n) for op, n in rows}

    def count_unidentified(self, query: exp.Select, traits: Any) -> dict[str, int]:
        """Rows to send that have no usable identifier (they would be skipped), per op."""
        empty = _all_empty(traits)
        count = (
            exp.select("op", exp.Count(this=exp.Star())).from_(query.subquery("d"))
            .where(exp.column("op").isin(_s("add"), _s("update"), _s("trigger")))
            .where(exp.and_(*empty))
            .group_by("op")
        )
        return {str(op): int(n) for op, n in self.wh.fetchall(count)}

    def count_unsendable(self, segment: str, sync: str, traits: Any) -> int:
        """Members the sync's destination does not hold for want of an identifier (the
        ``skipped`` of a run whose diff looked only at candidates)."""
        held = exp.select(exp.Literal.number(1)).from_(self.t("sync_members")).where(exp.and_(
            _eq("sync", sync), exp.EQ(this=exp.column("id"), expression=exp.column("id", table="s"))))
        count = (  # NOT EXISTS: an anti join from the few rows without identifiers
            exp.select(exp.Count(this=exp.Star())).from_(exp.alias_(self.stage_table(segment), "s", table=True))
            .where(exp.and_(*_all_empty(traits)))
            .where(exp.not_(exp.Exists(this=held)))
        )
        return int(self.scalar(count))

    # -- run history ----------------------------------------------------------------
    def record_segment_run(self, run_id: str, report: Any, as_of: datetime, definition_hash: str,
                           now: datetime, fingerprint: dict[str, str] | None, last_full_as_of: datetime | None) -> None:
        """A segment's run: a history row and the segment's state row (one transaction); the
        fingerprint is stored as JSON (see revseg.state.watermarks)."""
        stored = None if fingerprint is None else json.dumps(fingerprint, sort_keys=True)
        with self.transaction():
            self.insert_rows("segment_runs", [{
                "run_id": run_id, "segment": report.name, "as_of": as_of, "mode": report.mode,
                "members": report.members, "entered": report.entered, "exited": report.exited,
                "seconds": report.seconds, "definition_hash": definition_hash, "finished_at": now,
                "fingerprint": stored,
            }])
            self.upsert_row("segment_state", {
                "segment": report.name, "as_of": as_of, "definition_hash": definition_hash,
                "fingerprint": stored, "members": report.members, "last_full_as_of": last_full_as_of,
                "finished_at": now,
            }, key="segment")

    def record_sync_run(self, run_id: str, report: Any, as_of: datetime, now: datetime) -> None:
        """A sync's run: a history row and the sync's state row (one transaction)."""
        with self.transaction():
            self.insert_rows("sync_runs", [{
                "run_id": run_id, "segment": report.segment, "sync": report.name, "destination": report.destination,
                "mode": report.mode, "as_of": as_of, "added": report.added, "removed": report.removed,
                "updated": report.updated, "triggered": report.triggered, "rejected": report.rejected,
                "skipped": report.skipped, "status": report.status, "error": report.error,
                "seconds": report.seconds, "finished_at": now,
            }])
            # an interrupted sync is not settled: the next run must send the rest even when no
            # data changed (the probe would otherwise find its segment idle)
            status = "interrupted" if report.interrupted else report.status
            self.upsert_row("sync_state", {"sync": report.name, "as_of": as_of, "status": status,
                                           "finished_at": now}, key="sync")

    def release_run_tables(self, segment: str, syncs: list[str]) -> None:
        """Release this run's scratch tables of the segment (see ``release``); the stage
        (membership with traits) is kept: the next incremental run patches it."""
        for target in [self.delta_table(sync) for sync in syncs] + [self.run_table(segment, k) for k in RUN_TABLES]:
            self.release(target)


def _tableref(schema: str, name: str) -> Any:
    from revseg.warehouse.base import TableRef

    return TableRef(name, schema)


__all__ = ["StateStore", "HASH"]
