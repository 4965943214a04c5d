"""The DuckDB target's ``memory_limit``: 192MB unless the target says otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from revseg.errors import WarehouseError
from revseg.project.targets import DuckDBTarget
from revseg.warehouse.duckdb import DuckDBWarehouse


def _limit(config: dict[str, object], tmp_path: Path) -> str:
    warehouse = DuckDBWarehouse(config, tmp_path)
    with warehouse:
        return str(warehouse._run("SELECT current_setting('memory_limit')").fetchone()[0])


def test_default_and_configured_limits(tmp_path: Path) -> None:
    assert DuckDBTarget(type="duckdb").memory_limit == "192MB"
    assert _limit({"path": "a.duckdb"}, tmp_path) == "183.1 MiB"  # 192 * 10^6 bytes
    assert _limit({"path": "b.duckdb", "memory_limit": "1GB"}, tmp_path) == "953.6 MiB"
    unlimited = _limit({"path": "c.duckdb", "memory_limit": None}, tmp_path)
    assert unlimited not in ("183.1 MiB", "953.6 MiB")  # DuckDB's own default


def test_a_bad_limit_is_a_warehouse_error(tmp_path: Path) -> None:
    with pytest.raises(WarehouseError, match="memory_limit"):
        _limit({"path": "d.duckdb", "memory_limit": "lots'; DROP TABLE x; --"}, tmp_path)
