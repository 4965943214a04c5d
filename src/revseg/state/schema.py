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

#: primary keys: the lock's is what makes two runs exclusive
PRIMARY_KEYS = {"locks": ["segment"]}


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


#: numbered migrations; each returns the statements that bring version N-1 to N
MIGRATIONS: list[Callable[[str], list[exp.Expr]]] = [_v1, _v2, _v3, _v4, _v5]
LATEST = len(MIGRATIONS)
