"""Read every model's columns from the warehouse into a Catalog (one query per model), and
check each segment against it."""

from __future__ import annotations

from datetime import datetime

from revseg.compile.catalog import Catalog, ColumnInfo, classify
from revseg.compile.membership import check_segment, membership_query
from revseg.errors import Problem, WarehouseError
from revseg.spec.project import Project
from revseg.warehouse.base import TableRef, Warehouse


def read_catalog(project: Project, warehouse: Warehouse) -> tuple[Catalog, list[Problem]]:
    catalog = Catalog(text_collation=warehouse.text_collation, key_hash=warehouse.key_hash)
    problems: list[Problem] = []
    for model in project.models.values():
        if model.table is not None:
            ref = TableRef(model.table.name, model.table.db or None, model.table.catalog or None)
            columns = warehouse.columns(ref)
            if columns is None:
                where = f"schema '{ref.schema or warehouse.default_schema or 'default'}'"
                problems.append(Problem(
                    model.key_positions.get("table", model.position),
                    f"table '{model.table.sql()}' of model '{model.name}' does not exist in target "
                    f"'{project.target_name}' ({where}): create it or fix table:",
                    "unknown-table",
                ))
                continue
        else:
            assert model.query is not None
            try:
                columns = warehouse.query_columns(model.query)
            except WarehouseError as exc:
                problems.append(Problem(model.key_positions.get("sql", model.position),
                                        f"model '{model.name}' sql: {_reason(exc)}", "sql"))
                continue
        catalog.add(model.name, [ColumnInfo(c.name, classify(c.type), c.type) for c in columns])
        for key, column in _column_keys(model).items():
            if catalog.column(model.name, column) is None:
                problems.append(Problem(
                    model.key_positions.get(key, model.position),
                    f"model '{model.name}': {key} '{column}' is not a column of it "
                    f"(columns: {', '.join(catalog.names(model.name))})",
                    "unknown-column",
                ))
    return catalog, problems


def check_segments(project: Project, catalog: Catalog, warehouse: Warehouse, as_of: datetime) -> list[Problem]:
    """Every column and value problem of every segment. A ``sql:`` segment is opaque to the
    compiler, so its membership query runs with LIMIT 0: a table or column it names that does
    not exist is a located validation error (exit 2), not a query failing mid-sync."""
    problems: list[Problem] = []
    for segment in project.segments.values():
        found = check_segment(project, catalog, segment, as_of)
        problems.extend(found)
        if segment.query is None or found:
            continue
        try:
            warehouse.query_columns(membership_query(project, catalog, segment.name, as_of))
        except WarehouseError as exc:
            problems.append(Problem(segment.sql_position or segment.position,
                                    f"segment '{segment.name}' sql: {_reason(exc)}", "sql"))
    return problems


def _reason(exc: WarehouseError) -> str:
    """The engine's own message: the first line, without the query it quotes."""
    first = str(exc).splitlines()[0] if str(exc) else "the query failed"
    return first.split(": ", 1)[1] if first.startswith("query failed") and ": " in first else first


def _column_keys(model: object) -> dict[str, str]:
    keys = {
        "primary_key": "primary_key",
        "entity_key": "entity_key",
        "timestamp": "timestamp",
        "name": "event_name",
        "updated_at": "updated_at",
        "loaded_at": "loaded_at",
    }
    return {key: getattr(model, attr) for key, attr in keys.items() if getattr(model, attr)}
