"""`revseg compile`: golden SQL per dialect for every condition form (sqlglot validate_all style).

Regenerate after an intended change with ``REVSEG_UPDATE_GOLDEN=1 pytest tests/test_compile_golden.py``
and review the diff.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlglot
import yaml
from conftest import AS_OF, revseg

GOLDEN = Path(__file__).parent / "golden"
DIALECTS = ["duckdb", "postgres", "snowflake", "bigquery", "databricks"]
SEGMENTS = [s["name"] for s in yaml.safe_load((GOLDEN / "segments.yml").read_text())]

pytestmark = pytest.mark.duckdb


@pytest.fixture(scope="module")
def golden_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import duckdb
    from conftest import PROJECT, SAMPLE_SQL, write_files

    root = tmp_path_factory.mktemp("golden")
    conn = duckdb.connect(str(root / "wh.duckdb"))
    conn.execute(SAMPLE_SQL)
    conn.close()
    write_files(root, {"revseg.yml": PROJECT, "segments/all.yml": (GOLDEN / "segments.yml").read_text()})
    return root


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("segment", SEGMENTS)
def test_golden(golden_project: Path, segment: str, dialect: str) -> None:
    result = revseg("compile", segment, "--dialect", dialect, "--as-of", AS_OF, "--project-dir", str(golden_project))
    assert result.returncode == 0, result.stderr
    sql = result.stdout
    sqlglot.parse_one(sql, read=dialect)  # it must parse in its own dialect
    path = GOLDEN / f"{segment}.{dialect}.sql"
    if os.environ.get("REVSEG_UPDATE_GOLDEN") or not path.exists():
        path.write_text(sql)
        if not os.environ.get("REVSEG_UPDATE_GOLDEN"):
            pytest.fail(f"wrote missing golden file {path.name}; review and commit it")
    assert sql == path.read_text(), f"compiled SQL changed for {segment} in {dialect}"


def test_preview_runs_every_golden_segment(golden_project: Path, project: Callable[..., Path]) -> None:
    """The golden segments also execute on DuckDB (they are not just text)."""
    for segment in SEGMENTS:
        result = revseg("preview", segment, "--all", "--format", "jsonl", "--as-of", AS_OF,
                        "--project-dir", str(golden_project))
        assert result.returncode == 0, (segment, result.stderr)


def test_compile_incremental_prints_candidates_then_membership(golden_project: Path) -> None:
    result = revseg("compile", "cart_abandoners", "--incremental", "--as-of", AS_OF, "--project-dir", str(golden_project))
    assert result.returncode == 0, result.stderr
    statements = [s for s in sqlglot.parse(result.stdout, read="duckdb") if s is not None]
    assert len(statements) == 2
    assert 'CREATE TEMPORARY TABLE "candidates"' in result.stdout
    assert '"candidates"' in statements[1].sql(dialect="duckdb")
    full = revseg("compile", "sql_segment", "--incremental", "--project-dir", str(golden_project))
    assert full.returncode == 2 and "always evaluated in full" in full.stderr
