"""Read every model's columns from the warehouse into a Catalog (one query per model), and
check each segment against it."""

from __future__ import annotations

from datetime import datetime

from revseg.compile.catalog import Catalog, ColumnInfo, Kind, classify
from revseg.compile.membership import Fragment, check_segment, fragments, membership_query
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
                                        f"model '{model.name}' sql: {exc.reason}", "sql"))
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
    """Every column and value problem of every segment. What the compiler cannot see into is
    bound by the warehouse with LIMIT 0 (nothing runs): a ``sql:`` segment's query, whose
    tables and columns may not exist, and each ``sql:`` leaf and trait expression, whose types
    may not fit (``lifetime_value + 1`` is no condition; ``email > 1`` compares text with a
    number). Each is a located validation error (exit 2), not a query failing mid-sync."""
    problems: list[Problem] = []
    for segment in project.segments.values():
        found = check_segment(project, catalog, segment, as_of)
        problems.extend(found)
        if found:
            continue
        if segment.query is not None:
            try:
                warehouse.query_columns(membership_query(project, catalog, segment.name, as_of))
            except WarehouseError as exc:
                problems.append(Problem(segment.sql_position or segment.position,
                                        f"segment '{segment.name}' sql: {exc.reason}", "sql"))
        for fragment in fragments(project, catalog, segment):
            problems.extend(_check_fragment(warehouse, segment.name, fragment))
    return problems


def _check_fragment(warehouse: Warehouse, segment: str, fragment: Fragment) -> list[Problem]:
    try:
        columns = warehouse.query_columns(fragment.query)
    except WarehouseError as exc:
        return [Problem(fragment.position, f"segment '{segment}' {fragment.what}: {exc.reason}", "sql")]
    kind = classify(columns[0].type) if columns else Kind.BOOL
    if fragment.boolean and kind is not Kind.BOOL:
        return [Problem(fragment.position, f"segment '{segment}' {fragment.what}: the expression is a "
                        f"{columns[0].type.lower()}, not true or false: make it a comparison "
                        "(e.g. `lifetime_value + 1 > 100`)", "sql")]
    return []


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
