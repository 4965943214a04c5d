"""Shared fixtures: a project written from a dict of files, over a small DuckDB warehouse."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

SAMPLE_SQL = """
CREATE TABLE customers (customer_id INTEGER, email VARCHAR, country VARCHAR, lifetime_value DOUBLE,
                        is_vip BOOLEAN, signup_at TIMESTAMP, updated_at TIMESTAMP);
INSERT INTO customers VALUES
  (1, 'ann@example.com', 'US', 800, true,  '2026-01-05 10:00:00', '2026-11-01 00:00:00'),
  (2, 'bob@example.com', NULL, 120, false, '2026-03-01 00:00:00', '2026-11-01 00:00:00'),
  (3, NULL,              'DE', 560, NULL,  NULL,                  '2026-11-01 00:00:00'),
  (4, 'dee@example.com', 'FR', NULL, false, '2026-11-27 12:00:00', '2026-11-01 00:00:00');
CREATE TABLE events (customer_id INTEGER, event_name VARCHAR, ts TIMESTAMP, category VARCHAR, amount DOUBLE);
INSERT INTO events VALUES
  (1, 'added_to_cart',   '2026-11-28 10:00:00', 'shoes', 90),
  (1, 'order_completed', '2026-11-28 11:00:00', NULL, 90),
  (3, 'added_to_cart',   '2026-11-28 09:00:00', 'hats', 20),
  (3, 'added_to_cart',   '2026-11-28 12:30:00', 'hats', 25),
  (4, 'product_viewed',  '2026-11-28 11:59:59', 'socks', NULL),
  (2, 'added_to_cart',   NULL,                  'shoes', 10),
  (2, 'added_to_cart',   '2026-11-28 13:00:00', 'shoes', 10);
CREATE TABLE orders (customer_id INTEGER, ordered_at TIMESTAMP, amount DOUBLE, status VARCHAR);
INSERT INTO orders VALUES
  (1, '2026-11-20 10:00:00', 300, 'paid'),
  (1, '2026-11-27 10:00:00', 500, 'paid'),
  (3, '2026-10-01 10:00:00', 560, 'refunded'),
  (4, NULL,                  999, 'paid');
"""

#: the as_of the sample data is written around
AS_OF = "2026-11-28T12:00:00Z"

PROJECT: dict[str, Any] = {
    "name": "shop",
    "target": "dev",
    "targets": {"dev": {"type": "duckdb", "path": "wh.duckdb"}},
    "entity": "customers",
    "models": {
        "customers": {"table": "customers", "primary_key": "customer_id", "updated_at": "updated_at"},
        "events": {"table": "events", "entity_key": "customer_id", "timestamp": "ts", "name": "event_name"},
        "orders": {"table": "orders", "entity_key": "customer_id", "timestamp": "ordered_at"},
    },
    "vars": {"high_value": 500},
}


def write_files(root: Path, files: dict[str, Any]) -> None:
    """Write each file; dicts and lists are dumped as YAML, strings written as they are."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False, allow_unicode=True)
        path.write_text(text, encoding="utf-8")


@pytest.fixture
def project(tmp_path: Path) -> Callable[..., Path]:
    """``project({"segments/x.yml": {...}})``: a project over the sample DuckDB warehouse."""

    def make(files: dict[str, Any] | None = None, *, config: dict[str, Any] | None = None,
             data: str = SAMPLE_SQL) -> Path:
        conn = duckdb.connect(str(tmp_path / "wh.duckdb"))
        conn.execute(data)
        conn.close()
        write_files(tmp_path, {"revseg.yml": config or PROJECT, **(files or {})})
        return tmp_path

    return make


def revseg(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "revseg", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, check=False)
