"""The file destination: JSON Lines records, appended and fsynced batch by batch."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from revseg.destinations.base import Batch, DeliverySettings, Operation
from revseg.destinations.file import FileDestination, FileOptions
from revseg.errors import DeliveryError

AS_OF = datetime(2026, 11, 28, 17, 0, tzinfo=UTC)


def make_batch(*operations: Operation, number: int = 1, run_id: str = "r1") -> Batch:
    return Batch(run_id, "vip.out", "vip", number, number, AS_OF, operations)


def make_destination(path: str, project_dir: Path | None = None) -> FileDestination:
    extra = {"project_dir": str(project_dir)} if project_dir is not None else {}
    options = FileOptions.model_validate({"path": path})
    return FileDestination("out", options, DeliverySettings(extra=extra))


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_operation_is_one_record(tmp_path: Path) -> None:
    batch = make_batch(
        Operation("add", "c_1", {"email": "a@x", "ltv": Decimal("12.50")}),
        Operation("remove", "c_2"),
        Operation("update", "c_3", {"email": "b@x", "since": datetime(2026, 1, 2, 3, 4, 5)}),
        Operation("trigger", "c_4", {"first_name": "Ann"}, message="Hi Ann"),
        number=2,
    )
    with make_destination("members.jsonl", tmp_path) as destination:
        assert destination.send(batch).rejected == {}
    text = (tmp_path / "members.jsonl").read_text()
    assert text.endswith("\n") and text.count("\n") == 4
    head = {"run_id": "r1", "sync": "vip.out", "segment": "vip", "batch": 2}
    assert read_lines(tmp_path / "members.jsonl") == [
        head | {"op": "add", "id": "c_1", "traits": {"email": "a@x", "ltv": 12.5}},
        head | {"op": "remove", "id": "c_2"},
        head
        | {
            "op": "update",
            "id": "c_3",
            "traits": {"email": "b@x", "since": "2026-01-02T03:04:05Z"},
        },
        head | {"op": "trigger", "id": "c_4", "traits": {"first_name": "Ann"}, "message": "Hi Ann"},
    ]
    first = text.splitlines()[0]
    assert first.startswith('{"run_id":"r1","sync":"vip.out"')  # minified, fields in order


def test_runs_append_and_parents_are_created(tmp_path: Path) -> None:
    for run in ("r1", "r2"):
        with make_destination("out/deep/members.jsonl", tmp_path) as destination:
            destination.send(make_batch(Operation("add", "c_1"), run_id=run))
            destination.send(make_batch(Operation("remove", "c_1"), number=2, run_id=run))
    records = read_lines(tmp_path / "out" / "deep" / "members.jsonl")
    assert [(r["run_id"], r["batch"], r["op"]) for r in records] == [
        ("r1", 1, "add"),
        ("r1", 2, "remove"),
        ("r2", 1, "add"),
        ("r2", 2, "remove"),
    ]


def test_absolute_path_ignores_project_dir(tmp_path: Path) -> None:
    target = tmp_path / "abs.jsonl"
    destination = make_destination(str(target), tmp_path / "elsewhere")
    assert destination.path == target
    destination.send(make_batch(Operation("add", "c_1")))  # send opens lazily
    destination.close()
    assert len(read_lines(target)) == 1


def test_each_batch_is_fsynced_before_it_is_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_size)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with make_destination("m.jsonl", tmp_path) as destination:
        synced.clear()  # opening fsyncs the new file's directory
        destination.send(make_batch(Operation("add", "c_1")))
        size_after_first = (tmp_path / "m.jsonl").stat().st_size
        destination.send(make_batch(Operation("add", "c_2"), number=2))
    assert synced == [size_after_first, (tmp_path / "m.jsonl").stat().st_size]


def test_a_partial_line_left_by_a_crash_is_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"run_id":"r0","op":"add","id":"c_0"}\n{"run_id":"r0","op":"ad')
    with make_destination("m.jsonl", tmp_path) as destination:
        destination.send(make_batch(Operation("add", "c_1")))
    assert [(r["run_id"], r["id"]) for r in read_lines(path)] == [("r0", "c_0"), ("r1", "c_1")]


def test_a_file_that_is_only_a_partial_line_is_emptied(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"x" * 100_000)  # longer than one read-back chunk, no newline
    with make_destination("m.jsonl", tmp_path) as destination:
        destination.send(make_batch(Operation("add", "c_1")))
    assert [r["id"] for r in read_lines(path)] == ["c_1"]


def test_unwritable_path_is_a_delivery_error(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    destination = make_destination("taken", tmp_path)
    with pytest.raises(DeliveryError, match="cannot open"):
        destination.open()
    destination.close()


def test_options() -> None:
    with pytest.raises(ValidationError):
        FileOptions.model_validate({"path": " "})
    with pytest.raises(ValidationError):
        FileOptions.model_validate({"path": "a.jsonl", "mode": "w"})
    with pytest.raises(ValidationError):
        FileOptions.model_validate({})
    assert FileDestination.capabilities.modes == {"mirror", "upsert", "trigger"}
