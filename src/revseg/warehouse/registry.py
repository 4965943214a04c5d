"""Adapters by target type. Built-ins are listed here; others come from the
``revseg.warehouses`` entry-point group (loaded only when asked for)."""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from revseg.errors import UsageError, WarehouseError, did_you_mean
from revseg.warehouse.base import Warehouse

_BUILTIN = {
    "duckdb": "revseg.warehouse.duckdb:DuckDBWarehouse",
    "postgres": "revseg.warehouse.postgres:PostgresWarehouse",
}


def warehouse_for(config: dict[str, Any], project_dir: Path) -> Warehouse:
    """An (unconnected) adapter for a validated target config."""
    kind = str(config.get("type"))
    target = _BUILTIN.get(kind)
    if target is not None:
        module, _, name = target.partition(":")
        cls = getattr(import_module(module), name)
    else:
        found = [ep for ep in entry_points(group="revseg.warehouses") if ep.name == kind]
        if not found:
            known = sorted(_BUILTIN)
            if kind in ("snowflake", "bigquery", "databricks"):
                raise WarehouseError(f"the {kind} adapter is not available in this build (built in: {', '.join(known)})")
            raise UsageError(f"unknown target type '{kind}'{did_you_mean(kind, known)}")
        cls = found[0].load()
    if kind == "duckdb":
        return cls(config, project_dir)  # type: ignore[no-any-return]
    return cls(config)  # type: ignore[no-any-return]
