"""End to end: ``revseg sync --json`` (the real CLI, in a subprocess) mirroring a segment into a
Customer Match list of the Google Ads emulator, over several steps with data changes, on
both Google paths. After each step the emulator's list must hold exactly the hashed
identifiers of the segment's identifiable members; members without any identifier are
counted as ``skipped`` and members whose identifiers cannot be normalized come back as
per-record rejections, then go through once their data is fixed.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from revseg.sandbox.google_ads_emulator import ACCESS_TOKEN, DEVELOPER_TOKEN, GoogleAdsEmulator

pytestmark = [pytest.mark.duckdb, pytest.mark.http]

LIST = "4242"


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


#: customer id -> the identifiers Google must hold for them, normalized by hand
EMAIL = {
    1: "ann@example.com",
    2: "bob.smith@gmail.com",  # Bob.Smith@GMail.com: lowercased (gmail dots kept, see google_ads_identifiers)
    4: "dan@example.com",  # gets an email in step 2
    5: "five@example.com",  # fixed in step 2
    6: "dee@example.com",
    7: "eve@example.com",
}
PHONE = {1: "+12125550101", 3: "+442079460958", 7: "+16465550199"}


def member(cid: int) -> frozenset[str]:
    keys = set()
    if cid in EMAIL:
        keys.add(f"email={h(EMAIL[cid])}")
    if cid in PHONE:
        keys.add(f"phone={h(PHONE[cid])}")
    return frozenset(keys)


SEED = """
CREATE TABLE customers (customer_id INTEGER, email TEXT, phone TEXT, ltv DOUBLE, updated_at TIMESTAMP);
INSERT INTO customers VALUES
  (1, 'ann@example.com',     '+1 (212) 555-0101',   800,  '2026-03-01 00:00:00'),
  (2, ' Bob.Smith@GMail.com', NULL,                 900,  '2026-03-01 00:00:00'),
  (3, NULL,                  '+44 (0)20 7946 0958', 700,  '2026-03-01 00:00:00'),
  (4, NULL,                  NULL,                  1000, '2026-03-01 00:00:00'),
  (5, 'not-an-email',        NULL,                  600,  '2026-03-01 00:00:00'),
  (6, 'dee@example.com',     '555-0100',            550,  '2026-03-01 00:00:00'),
  (7, 'eve@example.com',     '+1 646 555 0199',     100,  '2026-03-01 00:00:00');
"""


def write_project(root: Path, api: str, base_url: str) -> None:
    files: dict[str, Any] = {
        "revseg.yml": {
            "name": "shop",
            "target": "dev",
            "targets": {"dev": {"type": "duckdb", "path": "warehouse.duckdb"}},
            "entity": "customers",
            "models": {
                "customers": {
                    "table": "customers",
                    "primary_key": "customer_id",
                    "updated_at": "updated_at",
                }
            },
        },
        "segments/high_value.yml": {
            "name": "high_value",
            "where": {"column": "ltv", "op": ">=", "value": 500},
            "traits": {"email": "email", "phone": "phone"},
            "syncs": [
                {
                    "destination": "gads",
                    "mode": "mirror",
                    "identifiers": {"email": "email", "phone": "phone"},
                }
            ],
        },
        "destinations/gads.yml": {
            "name": "gads",
            "type": "google_ads",
            "options": {
                "customer_id": "123-456-7890",
                "user_list_id": LIST,
                "access_token": "{{ env_var('GADS_ACCESS_TOKEN') }}",
                "developer_token": "{{ env_var('GADS_DEVELOPER_TOKEN') }}",
                "api": api,
                "base_url": base_url,
                "timeout": "5s",
            },
            "max_retries": 3,
        },
    }
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    conn = duckdb.connect(str(root / "warehouse.duckdb"))
    conn.execute(SEED)
    conn.close()


def sync(root: Path, as_of: str) -> tuple[int, dict[str, Any]]:
    env = {
        **os.environ,
        "GADS_ACCESS_TOKEN": ACCESS_TOKEN,
        "GADS_DEVELOPER_TOKEN": DEVELOPER_TOKEN,
        "NO_COLOR": "1",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "revseg",
            "sync",
            "--json",
            "--as-of",
            as_of,
            "--project-dir",
            str(root),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.stdout.strip(), done.stderr
    assert ACCESS_TOKEN not in done.stdout + done.stderr
    [report] = json.loads(done.stdout)["syncs"]
    return done.returncode, report


def execute(root: Path, sql: str) -> None:
    conn = duckdb.connect(str(root / "warehouse.duckdb"))
    conn.execute(sql)
    conn.close()


@pytest.fixture
def emu() -> Iterator[GoogleAdsEmulator]:
    with GoogleAdsEmulator() as running:
        yield running


@pytest.mark.parametrize("api", ["data_manager", "offline_user_data_jobs"])
def test_mirror_sync_converges(tmp_path: Path, emu: GoogleAdsEmulator, api: str) -> None:
    write_project(
        tmp_path, api, emu.data_manager_url if api == "data_manager" else emu.google_ads_url
    )

    # step 1: 1, 2, 3 and 6 go through (6 without its phone, which has no country code);
    # 4 has no identifier at all (skipped), 5 none that normalizes (rejected, with the reason)
    code, report = sync(tmp_path, "2026-03-02T00:00:00Z")
    assert code == 1 and report["status"] == "partial"
    assert (report["added"], report["removed"], report["skipped"], report["rejected"]) == (
        4,
        0,
        1,
        1,
    )
    [rejection] = report["rejections"]
    assert rejection["id"] == "5"
    assert (
        rejection["reason"]
        == "no usable identifier for Google Customer Match (email: not an email address)"
    )
    assert emu.members(LIST) == {
        member(1),
        member(2),
        member(3),
        frozenset({f"email={h(EMAIL[6])}"}),
    }

    # step 2: 1 leaves, 7 enters, 4 gains an email, 5's email is fixed; Google rate-limits once
    execute(
        tmp_path,
        """
        UPDATE customers SET ltv = 100, updated_at = '2026-03-02 01:00:00' WHERE customer_id = 1;
        UPDATE customers SET ltv = 700, updated_at = '2026-03-02 01:00:00' WHERE customer_id = 7;
        UPDATE customers SET email = 'Dan@Example.com', updated_at = '2026-03-02 01:00:00' WHERE customer_id = 4;
        UPDATE customers SET email = 'five@example.com', updated_at = '2026-03-02 01:00:00' WHERE customer_id = 5;
    """,
    )
    emu.fail_next(status=429, retry_delay="0s")
    code, report = sync(tmp_path, "2026-03-02T02:00:00Z")
    assert code == 0 and report["status"] == "success", report
    assert (report["added"], report["removed"], report["skipped"], report["rejected"]) == (
        3,
        1,
        0,
        0,
    )
    assert emu.members(LIST) == {
        member(2),
        member(3),
        member(4),
        member(5),
        frozenset({f"email={h(EMAIL[6])}"}),
        member(7),
    }

    # step 3: 3 (phone only) and 6 leave; removes use the identifiers sent when they joined
    execute(
        tmp_path,
        """
        UPDATE customers SET ltv = 0, updated_at = '2026-03-03 01:00:00' WHERE customer_id IN (3, 6);
    """,
    )
    code, report = sync(tmp_path, "2026-03-03T02:00:00Z")
    assert code == 0 and (report["added"], report["removed"]) == (0, 2)
    assert emu.members(LIST) == {member(2), member(4), member(5), member(7)}
    assert emu.identifiers(LIST, "phone") == {h(PHONE[7])}

    # step 4: nothing changed, nothing sent
    sent = len(emu.requests())
    code, report = sync(tmp_path, "2026-03-03T03:00:00Z")
    assert code == 0 and (report["added"], report["removed"], report["rejected"]) == (0, 0, 0)
    assert len(emu.requests()) == sent


def validate(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GADS_ACCESS_TOKEN": ACCESS_TOKEN, "GADS_DEVELOPER_TOKEN": DEVELOPER_TOKEN}
    return subprocess.run(
        [sys.executable, "-m", "revseg", "validate", "--project-dir", str(root)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def edit(path: Path, change: Any) -> None:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(document)
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")


def test_validate_rejects_what_google_ads_cannot_do(tmp_path: Path) -> None:
    write_project(tmp_path, "data_manager", "https://datamanager.googleapis.com/v1")
    edit(
        tmp_path / "segments/high_value.yml",
        lambda s: s.update(
            syncs=[
                {
                    "destination": "gads",
                    "mode": "trigger",
                    "template": "hi",
                    "identifiers": {"email": "email"},
                },
                {"destination": "gads", "mode": "mirror", "identifiers": {"external_id": "email"}},
            ]
        ),
    )
    done = validate(tmp_path)
    assert done.returncode == 2
    assert (
        "destination type 'google_ads' does not support mode 'trigger' (it supports: mirror, upsert)"
        in done.stderr
    )
    assert (
        "'google_ads' has no identifier kind 'external_id' (it knows: country, email, first_name, "
        "last_name, phone, postal_code)" in done.stderr
    )
    assert done.stderr.startswith("segments/high_value.yml:")
    edit(
        tmp_path / "destinations/gads.yml",
        lambda d: d["options"].update(api="offline_user_data_jobs"),
    )
    edit(tmp_path / "destinations/gads.yml", lambda d: d["options"].pop("developer_token"))
    done = validate(tmp_path)
    assert done.returncode == 2 and "destinations/gads.yml:" in done.stderr
    assert "needs developer_token" in done.stderr
