"""Read every model's columns from the warehouse into a Catalog (one query per model)."""

from __future__ import annotations

from revseg.compile.catalog import Catalog, ColumnInfo, classify
from revseg.errors import Problem
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
            columns = warehouse.query_columns(model.query)
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
