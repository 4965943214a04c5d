"""Read-only queries over the state tables for ``status`` and ``history``."""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from revseg.state.store import StateStore


def _s(value: str) -> exp.Literal:
    return exp.Literal.string(value)


def _rows(store: StateStore, query: exp.Select, names: list[str]) -> list[dict[str, Any]]:
    return [dict(zip(names, row, strict=True)) for row in store.wh.fetchall(query)]


def _latest(store: StateStore, table: str, key: str, columns: list[str]) -> dict[str, dict[str, Any]]:
    """The most recent row per ``key`` of a run table (by finish time)."""
    ranked = exp.select(
        *columns,
        exp.alias_(exp.Window(
            this=exp.RowNumber(),
            partition_by=[exp.column(key)],
            order=exp.Order(expressions=[exp.Ordered(this=exp.column("finished_at"), desc=True)]),
        ), "rn"),
    ).from_(store.t(table))
    query = exp.select(*columns).from_(ranked.subquery("x")).where(exp.EQ(this=exp.column("rn"), expression=exp.Literal.number(1)))
    return {row[key]: row for row in _rows(store, query, columns)}


def segment_status(store: StateStore) -> dict[str, dict[str, Any]]:
    columns = ["segment", "run_id", "as_of", "mode", "members", "entered", "exited", "seconds", "finished_at"]
    return _latest(store, "segment_runs", "segment", columns)


def sync_status(store: StateStore) -> dict[str, dict[str, Any]]:
    columns = ["sync", "segment", "destination", "run_id", "as_of", "added", "removed", "updated", "triggered",
               "rejected", "skipped", "status", "error", "finished_at"]
    return _latest(store, "sync_runs", "sync", columns)


def held_counts(store: StateStore) -> dict[str, int]:
    query = exp.select("sync", exp.Count(this=exp.Star())).from_(store.t("sync_members")).group_by("sync")
    return {str(sync): int(n) for sync, n in store.wh.fetchall(query)}


def member_counts(store: StateStore) -> dict[str, int]:
    query = exp.select("segment", exp.Count(this=exp.Star())).from_(store.t("segment_members")).group_by("segment")
    return {str(segment): int(n) for segment, n in store.wh.fetchall(query)}


def open_rejections(store: StateStore, limit: int = 100) -> dict[str, list[dict[str, Any]]]:
    """Outstanding rejections per sync (first ``limit`` of each, by id)."""
    query = (
        exp.select("sync", "id", "reason", "attempts")
        .from_(store.t("rejections"))
        .order_by("sync", "id")
    )
    out: dict[str, list[dict[str, Any]]] = {}
    for row in _rows(store, query, ["sync", "id", "reason", "attempts"]):
        bucket = out.setdefault(row.pop("sync"), [])
        if len(bucket) < limit:
            bucket.append(row)
    return out


def segment_history(store: StateStore, segment: str, limit: int = 200) -> list[dict[str, Any]]:
    """Past runs of a segment, oldest first (at most the last ``limit``)."""
    columns = ["run_id", "as_of", "mode", "members", "entered", "exited", "seconds", "finished_at"]
    query = (
        exp.select(*columns).from_(store.t("segment_runs"))
        .where(exp.EQ(this=exp.column("segment"), expression=_s(segment)))
        .order_by(exp.Ordered(this=exp.column("finished_at"), desc=True))
        .limit(limit)
    )
    return list(reversed(_rows(store, query, columns)))
