"""A small project for the ad-audience end-to-end tests: customers with emails, phones and
names (some missing, some malformed), a ``vips`` segment synced in mirror mode to one
destination, and helpers to change the data between ``revseg sync`` runs.

The expected audience is computed from the rows here with hashlib and the documented
normalization (lowercase, E.164 digits), not with revseg's own helpers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from syncproject import connect, iso, write_files

from revseg.cli.main import main as revseg_main

T0 = datetime(2026, 3, 1, 12, 0, 0)


@dataclass(frozen=True)
class Customer:
    id: int
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    vip: bool


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def customers(n: int = 40) -> list[Customer]:
    """Every 7th customer has no email and no phone, every 11th a malformed email only."""
    rows = []
    for i in range(1, n + 1):
        email: str | None = f"  Person{i}@Example.com " if i % 3 else f"p{i}@example.org"
        phone: str | None = f"+1 (415) 555-{i:04d}" if i % 2 else None
        if i % 7 == 0:
            email = phone = None
        elif i % 11 == 0:
            email, phone = "not-an-email", None
        rows.append(Customer(i, email, phone, f"First{i}", f"Last-{i}", i % 4 != 0))
    return rows


def write_project(
    root: Path, destination: dict[str, Any], identifiers: dict[str, str], people: Iterable[Customer]
) -> Path:
    traits = {
        "email": "email",
        "phone": "phone",
        "first_name": "first_name",
        "last_name": "last_name",
    }
    write_files(
        root,
        {
            "revseg.yml": {
                "name": "ads",
                "target": "dev",
                "targets": {"dev": {"type": "duckdb", "path": "warehouse.duckdb"}},
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
                "where": {"column": "is_vip", "op": "=", "value": True},
                "traits": traits,
                "syncs": [{"destination": "ads", "identifiers": identifiers}],
            },
            "destinations/ads.yml": {"name": "ads", **destination},
        },
    )
    with connect(root / "warehouse.duckdb") as conn:
        conn.execute(
            "CREATE TABLE customers (customer_id INTEGER, email TEXT, phone TEXT,"
            " first_name TEXT, last_name TEXT, is_vip BOOLEAN, updated_at TIMESTAMP)"
        )
        upsert(root, people, T0 - timedelta(days=1))
    return root


def upsert(root: Path, people: Iterable[Customer], at: datetime) -> None:
    """Insert or replace customers, stamped ``updated_at = at``."""
    with connect(root / "warehouse.duckdb") as conn:
        for c in people:
            conn.execute("DELETE FROM customers WHERE customer_id = ?", [c.id])
            conn.execute(
                "INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?)",
                [c.id, c.email, c.phone, c.first_name, c.last_name, c.vip, at],
            )


def email_hash(c: Customer) -> str | None:
    """The documented email rule: trim, lowercase; None when it is no address."""
    if c.email is None or "@" not in c.email:
        return None
    return sha(c.email.strip().lower())


def phone_hash(c: Customer) -> str | None:
    """The documented phone rule: digits only, no leading zeros, country code included."""
    if c.phone is None:
        return None
    return sha("".join(ch for ch in c.phone if ch.isdigit()).lstrip("0"))


def cli(project: Path, *args: str) -> Result:
    """The CLI in-process (no interpreter start-up), for the tests that need no subprocess."""
    return CliRunner().invoke(revseg_main, [*args, "--project-dir", str(project)])


def sync_in_process(project: Path, as_of: datetime) -> Result:
    return cli(project, "sync", "--json", "--as-of", iso(as_of))
