"""A trigger-mode project for the Twilio tests: customers who are ``active`` or not, a segment
``engaged`` (the active ones) whose trigger syncs text them through ``twilio`` destinations,
and helpers to move customers in and out of it between syncs at chosen as_of steps.

Membership is driven by the ``active`` column, with ``updated_at`` moved to the step's time so
incremental runs see the change. The auth token reaches the project through ``env_var``
(a secret): runs get it from :data:`TOKEN_VAR`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
from syncproject import write_files

AS_OF = datetime(2026, 3, 1, 12, 0, 0)
TOKEN_VAR = "REVSEG_TEST_TWILIO_TOKEN"
#: (id, phone, first_name, active at AS_OF)
Customer = tuple[int, str | None, str | None, bool]


def twilio(emu_url: str, account_sid: str, **options: Any) -> dict[str, Any]:
    """A twilio destination file's content (``rate_limit`` etc. may ride in ``options``)."""
    extra = {k: options.pop(k) for k in ("rate_limit", "batch_size", "max_retries") if k in options}
    return {"type": "twilio", "options": {"account_sid": account_sid, "base_url": emu_url,
                                          "auth_token": f"{{{{ env_var('{TOKEN_VAR}') }}}}", **options},
            **extra}


def write_project(root: Path, syncs: list[dict[str, Any]], destinations: Mapping[str, dict[str, Any]],
                  customers: Iterable[Customer]) -> Path:
    files: dict[str, Any] = {
        "revseg.yml": {
            "name": "texts", "target": "dev",
            "targets": {"dev": {"type": "duckdb", "path": "wh.duckdb"}},
            "state_schema": "revseg_state", "entity": "customers",
            "models": {"customers": {"table": "customers", "primary_key": "customer_id",
                                     "updated_at": "updated_at"}},
        },
        "segments/engaged.yml": {
            "name": "engaged",
            "where": {"column": "active", "op": "=", "value": True},
            "traits": {"phone": "phone", "first_name": "first_name", "wave": "wave"},
            "syncs": syncs,
        },
    }
    for name, spec in destinations.items():
        files[f"destinations/{name}.yml"] = {"name": name, **spec}
    write_files(root, files)
    conn = duckdb.connect(str(root / "wh.duckdb"))
    try:
        conn.execute("CREATE TABLE customers (customer_id INTEGER, phone TEXT, first_name TEXT,"
                     " active BOOLEAN, wave INTEGER, updated_at TIMESTAMP)")
        rows = [(i, phone, name, active, 0, AS_OF - timedelta(days=1)) for i, phone, name, active in customers]
        if rows:
            conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?)", rows)
    finally:
        conn.close()
    return root


def set_active(root: Path, at: datetime, active: Iterable[int] = (), inactive: Iterable[int] = (),
               wave: int | None = None) -> None:
    """Move customers in (``active``) or out of the segment, as of ``at``; entering ones may
    get a new ``wave`` (a trait the crash test puts in the message to tell entries apart)."""
    conn = duckdb.connect(str(root / "wh.duckdb"))
    try:
        for ids, flag in ((list(active), True), (list(inactive), False)):
            if not ids:
                continue
            marks = ",".join("?" * len(ids))
            conn.execute(f"UPDATE customers SET active = ?, updated_at = ?,"
                         f" wave = coalesce(?, wave) WHERE customer_id IN ({marks})",
                         [flag, at - timedelta(seconds=1), wave if flag else None, *ids])
    finally:
        conn.close()


def add_customers(root: Path, at: datetime, customers: Iterable[Customer], wave: int = 0) -> None:
    conn = duckdb.connect(str(root / "wh.duckdb"))
    try:
        rows = [(i, phone, name, active, wave, at - timedelta(seconds=1)) for i, phone, name, active in customers]
        if rows:
            conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?)", rows)
    finally:
        conn.close()
