"""``runner/operations.py`` builds a page's operations as columns; they must be exactly
the operations (and in-flight rows) of the one-row-at-a-time definition below."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import jinja2
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revseg.destinations.base import Operation
from revseg.destinations.columns import OperationColumns
from revseg.runner.operations import inflight_rows, prepare_page

AS_OF = datetime(2026, 11, 28, 17, 0, tzinfo=UTC)


class Quiet:
    """Quiet hours for recipients whose ``tz`` trait is ``"night"``."""

    timezone_trait = "tz"

    def active(self, as_of: datetime, zone: str | None) -> bool:
        return zone == "night"


def reference(sync: Any, page: dict[str, list[Any]], template: jinja2.Template | None, supports_update: bool,
              ) -> tuple[list[Operation], dict[str, list[Any]], dict[str, str], int, int]:
    """One row at a time: operations, in-flight columns, failed, skipped, deferred."""
    operations: list[Operation] = []
    removes: list[Operation] = []
    state: dict[str, list[Any]] = {"id": [], "op": [], "hash": [], "payload": [], "held": []}
    failed: dict[str, str] = {}
    skipped = deferred = 0
    names = [n for n in page if n not in ("rn", "op", "id", "hash", "held", "held_payload")]
    for i in range(len(page["id"])):
        op, record_id, payload = str(page["op"][i]), str(page["id"][i]), page["held_payload"][i]
        traits = {} if op == "remove" else {n: page[n][i] for n in names}
        if op == "remove":
            identifiers = orjson.loads(payload) if payload else {}
        else:
            identifiers = {kind: str(page[t][i]) for kind, t in sync.identifiers.items()
                           if t in page and page[t][i] is not None and page[t][i] != ""}
        if sync.identifiers and not identifiers and op != "remove":
            skipped += 1
            continue
        message = None
        if op == "trigger":
            if sync.quiet_hours is not None and sync.quiet_hours.active(AS_OF, traits.get("tz")):
                deferred += 1
                continue
            if template is not None:
                try:
                    message = template.render(id=record_id, **traits)
                except Exception as exc:  # noqa: BLE001
                    failed[record_id] = f"template error: {type(exc).__name__}: {exc}"
                    continue
        operation: Operation | None = Operation(op, record_id, traits, identifiers, message)  # type: ignore[arg-type]
        if op == "update" and sync.identifiers:
            previous = orjson.loads(payload) if payload else {}
            if previous != identifiers:
                if previous:
                    removes.append(Operation("remove", record_id, {}, previous))
                operation = Operation("add", record_id, traits, identifiers)
            elif not supports_update:
                operation = None
        elif op == "update" and not supports_update:
            operation = None
        if operation is not None:
            operations.append(operation)
        state["id"].append(record_id)
        state["op"].append(op)
        state["hash"].append(page["hash"][i])
        state["payload"].append(payload if op == "remove" else
                                orjson.dumps(identifiers, option=orjson.OPT_SORT_KEYS).decode() if identifiers else None)
        state["held"].append(bool(page["held"][i]))
    return removes + operations, state, failed, skipped, deferred


emails = st.sampled_from([None, "", "a@x.co", "b@x.co"])
held = st.sampled_from([None, '{"email":"a@x.co"}', '{"email":"b@x.co","phone":"1415"}', '{"madid":"m"}'])
rows = st.tuples(st.sampled_from(["add", "remove", "update", "trigger"]), emails,
                 st.sampled_from([None, 14155552671, "+1 415"]), held, st.booleans(),
                 st.sampled_from([None, "Ann", "night"]))


def page_of(drawn: list[tuple[Any, ...]]) -> dict[str, list[Any]]:
    columns = ["op", "email", "phone", "held_payload", "held", "tz"]
    page: dict[str, list[Any]] = {"rn": list(range(1, len(drawn) + 1)), "id": [str(n) for n in range(len(drawn))],
                                  "hash": [f"h{n}" for n in range(len(drawn))]}
    for name, values in zip(columns, zip(*drawn, strict=True) if drawn else [()] * len(columns), strict=True):
        page[name] = list(values)
    return page


@settings(deadline=None, max_examples=300)
@given(st.lists(rows, max_size=12), st.sampled_from([{}, {"email": "email"}, {"email": "email", "phone": "phone"}]),
       st.booleans(), st.booleans(), st.sampled_from([None, "Hi {{ tz }}", "{{ tz + '!' }}"]))
def test_columns_equal_the_row_at_a_time_definition(drawn: list[tuple[Any, ...]], identifiers: dict[str, str],
                                                   supports_update: bool, quiet: bool, source: str | None) -> None:
    sync = SimpleNamespace(identifiers=identifiers, quiet_hours=Quiet() if quiet else None)
    template = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(source) if source else None
    page = page_of(drawn)
    expected = reference(sync, {k: list(v) for k, v in page.items()}, template, supports_update)
    prepared = prepare_page(sync, page, template, supports_update, AS_OF, 7)  # type: ignore[arg-type]
    got = (list(prepared.operations), prepared.state, prepared.failed, prepared.skipped, prepared.deferred)
    assert got == expected
    assert [repr(op) for op in prepared.operations] == [repr(op) for op in expected[0]]
    assert prepared.done == 7
    assert len(inflight_rows(prepared)["id"]) == len(expected[1]["id"]) + len(expected[2])


def test_a_built_operation_equals_the_dataclass() -> None:
    columns = OperationColumns(["add"], ["7"], {"email": ["a@b.co"], "phone": [None]}, {"email": ["a@b.co"]})
    [fast] = columns
    slow = Operation("add", "7", {"email": "a@b.co"}, {"email": "a@b.co"}, None)
    assert fast == slow and repr(fast) == repr(slow)
    assert vars(fast) == {f.name: getattr(slow, f.name) for f in dataclasses.fields(Operation)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.op = "remove"  # type: ignore[misc]


def test_columns_of_operations_round_trip() -> None:
    operations = [
        Operation("remove", "1", {}, {"email": "a@b.co"}),
        Operation("add", "2", {"name": "Ann"}, {"phone": "1415"}),
        Operation("trigger", "3", {"name": "Bo"}, {}, "hi"),
    ]
    columns = OperationColumns.of(operations)
    assert list(columns) == operations and len(columns) == 3
    assert OperationColumns.of(columns) is columns
    assert list(columns[1:]) == operations[1:] and columns[-1] == operations[-1]
    assert list(OperationColumns.concat(columns[:1], columns[1:])) == operations
    assert columns.identifiers == {"email": ["a@b.co", None, None], "phone": [None, "1415", None]}
