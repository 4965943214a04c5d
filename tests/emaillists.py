"""Helpers shared by the email-list destination tests (Iterable, Mailchimp, SendGrid):
operations and batches built by hand, fast delivery settings, and one end-to-end mirror
scenario run through the real ``revseg sync --json`` against an emulator.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import yaml

from revseg.destinations.base import Batch, DeliverySettings, Operation
from revseg.destinations.http import EXTRA_SLEEP

AS_OF = datetime(2026, 3, 1, 12, 0, 0)
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
API_KEY_VAR = "REVSEG_TEST_LIST_API_KEY"


def add(record_id: str, email: str | None, **traits: Any) -> Operation:
    return Operation(
        "add", record_id, {"email": email, **traits}, {"email": email} if email else {}
    )


def update(record_id: str, email: str, **traits: Any) -> Operation:
    return Operation("update", record_id, {"email": email, **traits}, {"email": email})


def remove(record_id: str, email: str | None) -> Operation:
    return Operation("remove", record_id, {}, {"email": email} if email else {})


def batch(*ops: Operation, number: int = 1) -> Batch:
    return Batch("r20260301T120000Z-ab12", "vips.list", "vips", number, number, AS_OF, ops)


def settings(sleeps: list[float] | None = None, max_retries: int = 3) -> DeliverySettings:
    """Retries that record their delays instead of sleeping (unless ``sleeps`` is None)."""
    extra: dict[str, Any] = {} if sleeps is None else {EXTRA_SLEEP: sleeps.append}
    return DeliverySettings(max_retries=max_retries, extra=extra)


# -- the end-to-end mirror scenario ----------------------------------------------------
CUSTOMERS = [
    (1, "ann@example.com", "Ann", 800.0),
    (2, "bob@example.com", "Bob", 900.0),
    (3, "not-an-email", "Cat", 700.0),  # invalid: rejected, then fixed
    (4, None, "Dan", 650.0),  # no email: skipped by the runner
    (5, "eve@example.com", "Eve", 100.0),  # enters at step 2
    (6, "fay@bad", "Fay", 1000.0),  # invalid for good: retried up to max_attempts
    (7, "Gus@Example.com", "Gus", 750.0),
]


def write_project(root: Path, destination: dict[str, Any], max_attempts: int = 2) -> Path:
    files: dict[str, Any] = {
        "revseg.yml": {
            "name": "lists",
            "target": "dev",
            "targets": {"dev": {"type": "duckdb", "path": "wh.duckdb"}},
            "state_schema": "revseg_state",
            "entity": "customers",
            "models": {
                "customers": {
                    "table": "customers",
                    "primary_key": "customer_id",
                    "updated_at": "updated_at",
                }
            },
        },
        "segments/vips.yml": {
            "name": "vips",
            "where": {"column": "lifetime_value", "op": ">=", "value": 500},
            "traits": {"email": "email", "first_name": "first_name", "ltv": "lifetime_value"},
            "syncs": [
                {
                    "destination": "list",
                    "mode": "mirror",
                    "identifiers": {"email": "email"},
                    "max_attempts": max_attempts,
                }
            ],
        },
        "destinations/list.yml": {"name": "list", **destination},
    }
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    with duckdb.connect(str(root / "wh.duckdb")) as conn:
        conn.execute(
            "CREATE TABLE customers (customer_id INTEGER, email TEXT, first_name TEXT,"
            " lifetime_value DOUBLE, updated_at TIMESTAMP)"
        )
        conn.executemany(
            "INSERT INTO customers VALUES (?, ?, ?, ?, ?)",
            [(*c, AS_OF - timedelta(days=1)) for c in CUSTOMERS],
        )
    return root


def change(root: Path, sql: str, at: datetime) -> None:
    """Run an UPDATE and stamp its rows' ``updated_at`` (incremental runs see them)."""
    with duckdb.connect(str(root / "wh.duckdb")) as conn:
        conn.execute(sql.replace("SET ", f"SET updated_at = TIMESTAMP '{at:%Y-%m-%d %H:%M:%S}', "))


def expected(root: Path) -> set[str]:
    """What the list must hold: the members' valid addresses, lower case."""
    with duckdb.connect(str(root / "wh.duckdb")) as conn:
        rows = conn.execute("SELECT email FROM customers WHERE lifetime_value >= 500").fetchall()
    return {e.lower() for (e,) in rows if e and EMAIL.fullmatch(e)}


def sync(root: Path, as_of: datetime, api_key: str) -> dict[str, Any]:
    env = {**os.environ, API_KEY_VAR: api_key, "NO_COLOR": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "revseg",
            "sync",
            "--json",
            "--as-of",
            as_of.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "--project-dir",
            str(root),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.stdout.strip(), f"exit {done.returncode}\n{done.stderr}"
    report: dict[str, Any] = json.loads(done.stdout)
    report["_code"] = done.returncode
    report["_stderr"] = done.stderr
    return report


def rejections(report: dict[str, Any]) -> dict[str, str]:
    return {r["id"]: r["reason"] for r in report.get("rejections", [])}


def the_sync(report: dict[str, Any]) -> dict[str, Any]:
    found = [s for s in report["syncs"] if s["destination"] == "list"]
    return found[0] if found else {}


def mirror_scenario(
    root: Path,
    api_key: str,
    held: Callable[[], set[str]],
    first_name: Callable[[str], Any],
    fault: Callable[[], None],
) -> None:
    """Three syncs with data changes; after each, the list equals the segment's addresses.

    ``held()`` reads the emulator's list; ``first_name(email)`` the profile field the
    destination keeps the ``first_name`` trait in; ``fault()`` programs the emulator to
    misbehave during the second sync, which must still converge.
    """
    first = sync(root, AS_OF, api_key)
    assert first["_code"] == 1, first["_stderr"]  # some records rejected
    assert held() == expected(root) == {"ann@example.com", "bob@example.com", "gus@example.com"}
    report = the_sync(first)
    assert (report["added"], report["rejected"], report["skipped"]) == (3, 2, 1), report
    reasons = rejections(first)
    assert set(reasons) == {"3", "6"}, reasons
    for reason in reasons.values():
        assert "not-an-email" not in reason and "fay@bad" not in reason  # no PII in reasons
        assert reason

    later = AS_OF + timedelta(hours=1)
    change(root, "UPDATE customers SET lifetime_value = 100 WHERE customer_id = 2", later)
    change(root, "UPDATE customers SET lifetime_value = 600 WHERE customer_id = 5", later)
    change(root, "UPDATE customers SET first_name = 'Annie' WHERE customer_id = 1", later)
    change(root, "UPDATE customers SET email = 'cat@example.com' WHERE customer_id = 3", later)
    fault()
    second = sync(root, later + timedelta(minutes=1), api_key)
    assert (
        held()
        == expected(root)
        == {"ann@example.com", "eve@example.com", "cat@example.com", "gus@example.com"}
    )
    report = the_sync(second)
    assert (report["added"], report["removed"], report["updated"], report["rejected"]) == (
        2,
        1,
        1,
        1,
    )
    assert set(rejections(second)) == {"6"}  # retried: attempt 2 of max_attempts 2
    assert first_name("ann@example.com") == "Annie"

    third = sync(root, later + timedelta(hours=1), api_key)
    assert third["_code"] == 0, third
    assert rejections(third) == {}  # "6" reached max_attempts: no longer retried
    assert held() == expected(root)
