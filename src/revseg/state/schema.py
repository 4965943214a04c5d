"""revseg's own tables in ``state_schema``, created and migrated by numbered migrations.

=====================  =====================================================================
table                  holds
=====================  =====================================================================
schema_version         one row per applied migration
runs                   one row per run: id, as_of, status, times
segment_runs           per run and segment: members, entered, exited, mode, definition hash
sync_runs              per run and sync: added/removed/updated/triggered/rejected/skipped
segment_members        the committed membership snapshot of each segment
sync_members           what each sync's destination is known to hold; ``pending`` marks rows
                       whose state at the destination is unknown (batch in flight at a crash)
inflight               the batch being delivered, recorded before it is sent
outcomes               per-record rejections of the batch being acknowledged (scratch)
rejections             records a destination rejected, with the reason and attempt count
triggers               trigger-mode sends: intent before, outcome after (cooldown, at-most-once)
syncs                  each sync's first run (trigger mode records members without sending)
membership_history     entered_at / exited_at per entity and segment (retention applies)
locks                  one row per segment being run, with a lease
stage_versions         the as_of each segment's stored membership was computed at
segment_state          per segment, what its last run recorded (the watermark every run reads)
sync_state             per sync, the as_of and status of its last run (``interrupted``: stopped
                       before the end of its delta; the next run sends the rest)
=====================  =====================================================================
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

TEXT = "TEXT"
TS = "TIMESTAMP"
BIGINT = "BIGINT"
DOUBLE = "DOUBLE"
BOOL = "BOOLEAN"

TABLES: dict[str, list[tuple[str, str]]] = {
    "schema_version": [("version", BIGINT), ("applied_at", TS)],
    "runs": [("run_id", TEXT), ("command", TEXT), ("as_of", TS), ("status", TEXT),
             ("started_at", TS), ("finished_at", TS)],
    "segment_runs": [("run_id", TEXT), ("segment", TEXT), ("as_of", TS), ("mode", TEXT),
                     ("members", BIGINT), ("entered", BIGINT), ("exited", BIGINT),
                     ("seconds", DOUBLE), ("definition_hash", TEXT), ("finished_at", TS)],
    "sync_runs": [("run_id", TEXT), ("segment", TEXT), ("sync", TEXT), ("destination", TEXT),
                  ("mode", TEXT), ("as_of", TS), ("added", BIGINT), ("removed", BIGINT),
                  ("updated", BIGINT), ("triggered", BIGINT), ("rejected", BIGINT), ("skipped", BIGINT),
                  ("status", TEXT), ("error", TEXT), ("seconds", DOUBLE), ("finished_at", TS)],
    "segment_members": [("segment", TEXT), ("id", TEXT), ("entered_at", TS)],
    "sync_members": [("sync", TEXT), ("id", TEXT), ("hash", TEXT), ("pending", BOOL), ("payload", TEXT),
                     ("updated_at", TS)],
    "inflight": [("sync", TEXT), ("run_id", TEXT), ("batch", BIGINT), ("id", TEXT), ("op", TEXT),
                 ("hash", TEXT), ("payload", TEXT)],
    "outcomes": [("sync", TEXT), ("run_id", TEXT), ("batch", BIGINT), ("id", TEXT), ("reason", TEXT)],
    "rejections": [("sync", TEXT), ("id", TEXT), ("op", TEXT), ("reason", TEXT), ("attempts", BIGINT),
                   ("run_id", TEXT), ("rejected_at", TS)],
    "triggers": [("sync", TEXT), ("id", TEXT), ("run_id", TEXT), ("as_of", TS), ("status", TEXT),
                 ("reason", TEXT)],
    "syncs": [("sync", TEXT), ("first_run_id", TEXT), ("created_at", TS)],
    "membership_history": [("segment", TEXT), ("id", TEXT), ("entered_at", TS), ("exited_at", TS)],
    "locks": [("segment", TEXT), ("run_id", TEXT), ("owner", TEXT), ("expires_at", TS)],
}

#: primary keys: the lock's is what makes two runs exclusive; one state row per segment and sync
PRIMARY_KEYS = {"locks": ["segment"], "segment_state": ["segment"], "sync_state": ["sync"]}


def table(schema: str, name: str) -> exp.Table:
    return exp.table_(name, db=schema, quoted=True)


def create_table(schema: str, name: str) -> exp.Create:
    columns: list[exp.Expr] = [
        exp.ColumnDef(this=exp.to_identifier(column, quoted=True), kind=exp.DataType.build(kind))
        for column, kind in TABLES[name]
    ]
    if name in PRIMARY_KEYS:
        columns.append(exp.PrimaryKey(expressions=[exp.to_identifier(c, quoted=True) for c in PRIMARY_KEYS[name]]))
    return exp.Create(
        this=exp.Schema(this=table(schema, name), expressions=columns),
        kind="TABLE",
        exists=True,
    )


def _v1(schema: str) -> list[exp.Expr]:
    return [create_table(schema, name) for name in TABLES if name != "schema_version"]


def _v2(schema: str) -> list[exp.Expr]:
    """segment_runs.fingerprint: row counts and latest changes of the models a segment read,
    so a run that finds nothing new can skip without evaluating."""
    column = exp.ColumnDef(this=exp.to_identifier("fingerprint", quoted=True), kind=exp.DataType.build(TEXT))
    return [exp.Alter(this=table(schema, "segment_runs"), kind="TABLE", actions=[column])]


def _v3(schema: str) -> list[exp.Expr]:
    """rejections.hash: the traits a rejection was for; a record whose traits changed since
    (say, a fixed email) is retried even after max_attempts."""
    column = exp.ColumnDef(this=exp.to_identifier("hash", quoted=True), kind=exp.DataType.build(TEXT))
    return [exp.Alter(this=table(schema, "rejections"), kind="TABLE", actions=[column])]


def _v4(schema: str) -> list[exp.Expr]:
    """inflight.held: whether the destination held the id before the batch; only those rows
    need the snapshot rewritten on acknowledgement (a first upload writes, never deletes)."""
    column = exp.ColumnDef(this=exp.to_identifier("held", quoted=True), kind=exp.DataType.build(BOOL))
    return [exp.Alter(this=table(schema, "inflight"), kind="TABLE", actions=[column])]


def _v5(schema: str) -> list[exp.Expr]:
    """stage_versions: the as_of each segment's stored membership was computed at. A run
    killed after changing it but before recording itself leaves a version no recorded run
    has; the next run then diffs every sync in full instead of only the candidates."""
    TABLES["stage_versions"] = [("segment", TEXT), ("as_of", TS)]
    return [create_table(schema, "stage_versions")]


def _v6(schema: str) -> list[exp.Expr]:
    """segment_state and sync_state: one row per segment and per sync with what its last run
    recorded, written with the run's history rows. Every run reads them; reading the history
    instead is a scan that grows by a row per run, and a long-running ``revseg run`` records
    one per burst of events. Filled from the history's latest rows."""
    TABLES["segment_state"] = [("segment", TEXT), ("as_of", TS), ("definition_hash", TEXT), ("fingerprint", TEXT),
                               ("members", BIGINT), ("last_full_as_of", TS), ("finished_at", TS)]
    TABLES["sync_state"] = [("sync", TEXT), ("as_of", TS), ("status", TEXT), ("finished_at", TS)]
    latest = _latest_per(exp.select("segment", "as_of", "definition_hash", "fingerprint", "members", "finished_at")
                         .from_(table(schema, "segment_runs")), "segment")
    full = (exp.select("segment", exp.alias_(exp.Max(this=exp.column("as_of")), "last_full_as_of"))
            .from_(table(schema, "segment_runs")).where(exp.EQ(this=exp.column("mode"), expression=exp.Literal.string("full")))
            .group_by("segment"))
    segments = exp.select(*[exp.column(c, table="l") for c in ("segment", "as_of", "definition_hash", "fingerprint",
                                                               "members")],
                          exp.column("last_full_as_of", table="f"), exp.column("finished_at", table="l")) \
        .from_(latest.subquery("l")) \
        .join(full.subquery("f"), on=exp.EQ(this=exp.column("segment", table="f"), expression=exp.column("segment", table="l")),
              join_type="left")
    syncs = _latest_per(exp.select("sync", "as_of", "status", "finished_at").from_(table(schema, "sync_runs")), "sync")
    return [
        create_table(schema, "segment_state"),
        create_table(schema, "sync_state"),
        exp.insert(segments, table(schema, "segment_state"),
                   columns=[exp.to_identifier(c, quoted=True) for c, _ in TABLES["segment_state"]]),
        exp.insert(syncs, table(schema, "sync_state"),
                   columns=[exp.to_identifier(c, quoted=True) for c, _ in TABLES["sync_state"]]),
    ]


def _latest_per(rows: exp.Select, key: str) -> exp.Select:
    """The latest row (by finished_at) of ``rows`` per ``key``, with the same columns."""
    rank = exp.Window(this=exp.RowNumber(), partition_by=[exp.column(key)],
                      order=exp.Order(expressions=[exp.Ordered(this=exp.column("finished_at"), desc=True)]))
    ranked = rows.select(exp.alias_(rank, "rn"))
    return exp.select(*[exp.column(name) for name in rows.named_selects]).from_(ranked.subquery("x")).where(
        exp.EQ(this=exp.column("rn"), expression=exp.Literal.number(1)))


#: numbered migrations; each returns the statements that bring version N-1 to N
MIGRATIONS: list[Callable[[str], list[exp.Expr]]] = [_v1, _v2, _v3, _v4, _v5, _v6]
LATEST = len(MIGRATIONS)
