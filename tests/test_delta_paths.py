"""A sync reads its delta and records batches in flight one of two ways (SPEC 4's protocol is
the same): a small delta as plain lists (a one-shot sync then never imports pyarrow), a large
one through Arrow. Every other test's deltas are small; here the same mirror runs with the
threshold forced to zero, and both ways must deliver exactly the membership."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from syncproject import T0, jsonl_file, replay, seed, shop_files, write_files

from revseg.runner import Runner

pytestmark = pytest.mark.duckdb


@pytest.mark.parametrize("way", ["lists", "arrow"])
def test_both_ways_deliver_the_membership(tmp_path: Path, way: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # pyarrow is loaded in this test process: the warehouse is told which way to go
    monkeypatch.setattr("revseg.warehouse.duckdb.DuckDBWarehouse.prefers_arrow", lambda self, rows: way == "arrow")
    files = shop_files(syncs={"active_vip": [{"destination": "audit", "batch_size": 7}]},
                       destinations={"audit": jsonl_file("out/audit.jsonl")})
    write_files(tmp_path, files)
    seed(tmp_path / "warehouse.duckdb", 200)
    runner = Runner(tmp_path)
    removed = 0
    for as_of in (T0, T0 + timedelta(days=1), T0 + timedelta(days=3)):
        report = runner.sync(as_of=as_of)
        members = {m.id: m.traits for m in runner.preview("active_vip", as_of=as_of).members}
        assert replay(tmp_path / "out" / "audit.jsonl", "active_vip.audit") == members
        [sync] = [s for s in report.syncs if s.segment == "active_vip"]
        assert sync.status == "success" and sync.batches == -(-(sync.added + sync.removed + sync.updated) // 7)
        removed += sync.removed
    assert len(members) > 20 and removed > 0  # members came and went
