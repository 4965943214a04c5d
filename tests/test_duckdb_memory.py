"""The DuckDB target's ``memory_limit``: 192MB unless the target says otherwise, raised for a
statement that runs out of memory under it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlglot import exp

from revseg.errors import WarehouseError
from revseg.project.targets import DuckDBTarget
from revseg.warehouse.duckdb import DuckDBWarehouse
from revseg.warehouse.duckdb_memory import ceiling, parse_size, raised


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


HEAVY = "CREATE OR REPLACE TEMP TABLE t AS SELECT s, COUNT(*) AS n FROM big GROUP BY s"


def _big(warehouse: DuckDBWarehouse) -> None:
    warehouse.execute("CREATE OR REPLACE TABLE big AS SELECT i, 'x' || i AS s FROM range(300000) r(i)")


def test_a_statement_out_of_memory_runs_again_under_a_higher_limit(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Under 2MB this aggregation runs out of memory; it runs again under four times the
    limit until it fits, saying so, instead of failing for a limit the user may never have set."""
    with DuckDBWarehouse({"path": "e.duckdb", "memory_limit": "64MB"}, tmp_path) as warehouse:
        _big(warehouse)
        warehouse._set_memory_limit("2MB")
        with caplog.at_level("WARNING", logger="revseg.warehouse.duckdb"):
            warehouse.execute(HEAVY)
        assert warehouse.fetchall(exp.select("COUNT(*)").from_("t")) == [(300000,)]
        assert warehouse._memory_limit is not None and parse_size(warehouse._memory_limit) >= 7 * 2**20
        assert "out of memory under memory_limit 2MB: running the statement again under 7MiB" in caplog.text


def test_out_of_memory_inside_a_transaction_names_the_fix(tmp_path: Path) -> None:
    """DuckDB aborts the transaction: the statement cannot run again alone."""
    with DuckDBWarehouse({"path": "f.duckdb", "memory_limit": "64MB"}, tmp_path) as warehouse:
        _big(warehouse)
        warehouse._set_memory_limit("2MB")
        warehouse.begin()
        with pytest.raises(WarehouseError, match="raise the DuckDB target's memory_limit"):
            warehouse.execute(HEAVY)
        warehouse.rollback()


def test_raised_limits() -> None:
    assert parse_size("192MB") == 192_000_000 and parse_size("2 GiB") == 2 * 2**30
    assert parse_size("lots") is None and raised("lots") is None
    assert raised("192MB") == f"{192_000_000 * 4 // 2**20}MiB"
    assert raised(f"{ceiling()}B") is None
