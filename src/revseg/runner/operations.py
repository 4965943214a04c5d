"""A page of a sync's delta turned into the operations a destination is sent, and the rows
recorded in flight for them (step 1 of the protocol in :mod:`revseg.state.store`)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from revseg.destinations.base import Operation
from revseg.spec.project import Sync

if TYPE_CHECKING:
    import jinja2


@dataclass
class PreparedBatch:
    """A page of the delta turned into operations, not yet recorded or sent."""

    operations: list[Operation]
    state: dict[str, list[Any]]  # the inflight columns: id, op, hash, payload, held
    failed: dict[str, str]  # id -> reason, rejected before sending (templates)
    done: int  # delta rows read up to and including this page
    skipped: int = 0  # members with no usable identifier
    deferred: int = 0  # trigger sends held back by quiet hours


def prepare_page(sync: Sync, page: dict[str, list[Any]], template: jinja2.Template | None, supports_update: bool,
                 as_of: datetime, done: int) -> PreparedBatch:
    """Rows of the delta as operations, plus the columns recorded in flight for them
    (id, op, hash, payload = the identifiers sent, held). Members with no usable
    identifier are skipped; a template that fails to render rejects its record.

    An update whose identifiers changed (a new email) becomes a remove of the held
    identifiers and an add of the new ones, removes first in the batch, so the old email
    does not stay in the audience; one whose identifiers did not change is sent as an
    update, or, where the API has no update, acknowledged without sending.

    The page is one list per column (no dict per row); each row's traits become the
    operation's own dict.
    """
    operations: list[Operation] = []
    removes: list[Operation] = []  # held identifiers of updates whose identifiers changed
    state: dict[str, list[Any]] = {"id": [], "op": [], "hash": [], "payload": [], "held": []}
    skipped = deferred = 0
    failed: dict[str, str] = {}
    size = page_rows(page)
    columns = dict(page)

    def take(name: str, default: Any) -> list[Any]:
        return columns.pop(name) if name in columns else [default] * size

    op_column, id_column = take("op", None), take("id", None)
    held_payloads, held_column, hashes = take("held_payload", None), take("held", False), take("hash", None)
    columns.pop("rn", None)
    names = list(columns)
    trait_rows = zip(*columns.values(), strict=True) if names else itertools.repeat((), size)
    identifier_columns = [(kind, columns[t]) for kind, t in sync.identifiers.items() if t in columns]
    rows = zip(op_column, id_column, held_payloads, held_column, hashes, trait_rows, strict=True)
    for i, (op, raw_id, held_payload, raw_held, row_hash, values) in enumerate(rows):
        op = str(op)
        record_id = str(raw_id)
        held = bool(raw_held)
        if op == "remove":
            traits: dict[str, Any] = {}
            identifiers = orjson.loads(held_payload) if held_payload else {}
        else:
            traits = dict(zip(names, values))  # noqa: B905 - one value per trait column
            identifiers = {}
            for kind, column in identifier_columns:
                value = column[i]
                if value is not None and value != "":
                    identifiers[kind] = value if type(value) is str else str(value)
        if sync.identifiers and not identifiers and op != "remove":
            skipped += 1
            continue
        if op == "trigger" and sync.quiet_hours is not None:
            zone = traits.get(sync.quiet_hours.timezone_trait) if sync.quiet_hours.timezone_trait else None
            if sync.quiet_hours.active(as_of, str(zone) if zone else None):
                deferred += 1  # not sent, not recorded: the next run after quiet hours sends it
                continue
        message = None
        if op == "trigger" and template is not None:
            try:
                message = template.render(id=record_id, **traits)
            except Exception as exc:  # noqa: BLE001 - one record's data must not stop the run
                failed[record_id] = f"template error: {type(exc).__name__}: {exc}"
                continue
        operation: Operation | None = _operation(op, record_id, traits, identifiers, message)
        if op == "update" and sync.identifiers:
            previous = orjson.loads(held_payload) if held_payload else {}
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
        state["hash"].append(row_hash)
        state["payload"].append(held_payload if op == "remove" else _payload_of(identifiers))
        state["held"].append(held)
    return PreparedBatch(removes + operations, state, failed, done, skipped, deferred)


def page_rows(page: dict[str, list[Any]]) -> int:
    return len(next(iter(page.values()), []))


def inflight_rows(prepared: PreparedBatch) -> dict[str, list[Any]]:
    """The rows a batch records in flight (id, op, hash, payload, held): its operations' and
    its failed records'."""
    state = prepared.state
    for record_id in prepared.failed:
        for column, value in (("id", record_id), ("op", "trigger"), ("hash", None), ("payload", None),
                              ("held", False)):
            state[column].append(value)
    return state


_new, _set = object.__new__, object.__setattr__


def _operation(op: str, record_id: str, traits: dict[str, Any], identifiers: dict[str, str],
               message: str | None) -> Operation:
    """``Operation(op, record_id, traits, identifiers, message)``, with one write of the
    instance's dict instead of the frozen dataclass's five guarded attribute writes (they
    were a third of preparing a 10,000-row page). ``tests/test_operations.py`` checks that
    both are equal."""
    operation = _new(Operation)
    _set(operation, "__dict__", {"op": op, "id": record_id, "traits": traits, "identifiers": identifiers,
                                 "message": message})
    return operation


def _payload_of(identifiers: dict[str, str]) -> str | None:
    return orjson.dumps(identifiers, option=orjson.OPT_SORT_KEYS).decode() if identifiers else None
