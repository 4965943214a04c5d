"""Trigger mode: quiet hours in the recipient's time zone hold messages back until they end."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import PROJECT, revseg

pytestmark = pytest.mark.duckdb

DATA = """
CREATE TABLE customers (customer_id INTEGER, first_name VARCHAR, tz VARCHAR, updated_at TIMESTAMP);
INSERT INTO customers VALUES (1, 'Ann', 'Europe/Paris', '2026-11-01'), (2, 'Bob', 'America/New_York', '2026-11-01'),
                             (3, 'Cy', NULL, '2026-11-01');
CREATE TABLE events (customer_id INTEGER, event_name VARCHAR, ts TIMESTAMP, category VARCHAR, amount DOUBLE);
CREATE TABLE orders (customer_id INTEGER, ordered_at TIMESTAMP, amount DOUBLE, status VARCHAR);
"""

SEGMENT = {
    "name": "welcome",
    "where": {"column": "customer_id", "op": ">", "value": 0},
    "traits": {"first_name": "first_name", "tz": "tz"},
    "syncs": [{
        "destination": "outbox", "mode": "trigger", "backfill": True, "template": "Hi {{ first_name }}",
        "quiet_hours": {"start": "21:00", "end": "08:00", "timezone": "Europe/Paris", "timezone_trait": "tz"},
    }],
}


def _sent(root: Path) -> list[str]:
    path = root / "out" / "outbox.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_quiet_hours_defer_until_morning_in_the_recipients_zone(project: Callable[..., Path]) -> None:
    root = project({
        "segments/welcome.yml": SEGMENT,
        "destinations/outbox.yml": {"name": "outbox", "type": "file", "options": {"path": "out/outbox.jsonl"}},
    }, data=DATA)
    # 22:00 UTC: 23:00 in Paris (quiet; Cy has no zone, so the default Paris applies), 17:00 in New York
    first = revseg("sync", "--json", "--as-of", "2026-11-28T22:00:00Z", "--project-dir", str(root))
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)["syncs"][0]
    assert (report["triggered"], report["deferred"]) == (1, 2)
    assert _sent(root) == ["2"]
    # 07:59 Paris: still quiet
    again = json.loads(revseg("sync", "--json", "--as-of", "2026-11-29T06:59:00Z", "--project-dir", str(root)).stdout)
    assert again["syncs"][0]["deferred"] == 2
    # 09:30 Paris: the held messages go out, once
    later = json.loads(revseg("sync", "--json", "--as-of", "2026-11-29T08:30:00Z", "--project-dir", str(root)).stdout)
    assert later["syncs"][0]["triggered"] == 2
    assert sorted(_sent(root)) == ["1", "2", "3"]


def test_quiet_hours_validation(project: Callable[..., Path]) -> None:
    bad = dict(SEGMENT, syncs=[dict(SEGMENT["syncs"][0], quiet_hours={"start": "25:00", "end": "08:00",
                                                                      "timezone": "Mars/Olympus",
                                                                      "timezone_trait": "zone"})])
    root = project({
        "segments/welcome.yml": bad,
        "destinations/outbox.yml": {"name": "outbox", "type": "file", "options": {"path": "out/outbox.jsonl"}},
    }, config=PROJECT, data=DATA)
    result = revseg("validate", "--project-dir", str(root))
    assert result.returncode == 2
    assert "bad time '25:00'" in result.stderr
    assert "unknown time zone 'Mars/Olympus'" in result.stderr
