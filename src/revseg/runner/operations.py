"""A page of a sync's delta turned into the operations a destination is sent, and the rows
recorded in flight for them (step 1 of the protocol in :mod:`revseg.state.store`).

The page arrives as one list per column and the operations leave as columns too
(:class:`~revseg.destinations.columns.OperationColumns`): per row there is only the
decision what to send (a few comparisons), the identifiers' JSON recorded in flight, and,
for triggers and changed updates, the work only they need (traits of the row, a template).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from revseg.destinations.columns import OperationColumns
from revseg.spec.project import Sync

if TYPE_CHECKING:
    import jinja2

#: a column of the page, one value per row
Column = list[Any]


@dataclass
class PreparedBatch:
    """A page of the delta turned into operations, not yet recorded or sent."""

    operations: OperationColumns
    state: dict[str, list[Any]]  # the inflight columns: id, op, hash, payload, held
    failed: dict[str, str]  # id -> reason, rejected before sending (templates)
    done: int  # delta rows read up to and including this page
    skipped: int = 0  # members with no usable identifier
    deferred: int = 0  # trigger sends held back by quiet hours


@dataclass
class _Page:
    """The delta's bookkeeping columns of a page, apart from its traits."""

    op: list[str]
    id: list[str]
    hash: Column
    held: Column
    held_payload: Column

    def __len__(self) -> int:
        return len(self.id)


def prepare_page(sync: Sync, page: dict[str, list[Any]], template: jinja2.Template | None, supports_update: bool,
                 as_of: datetime, done: int) -> PreparedBatch:
    """Rows of the delta as operations, plus the columns recorded in flight for them
    (id, op, hash, payload = the identifiers sent, held). Members with no usable
    identifier are skipped; a template that fails to render rejects its record.

    An update whose identifiers changed (a new email) becomes a remove of the held
    identifiers and an add of the new ones, removes first in the batch, so the old email
    does not stay in the audience; one whose identifiers did not change is sent as an
    update, or, where the API has no update, acknowledged without sending.
    """
    rows, traits = _split(page)
    identifiers = _identifier_columns(sync, traits, rows)
    held = _held_identifiers(rows, bool(sync.identifiers))
    usable = _has_identifier(identifiers, len(rows)) if sync.identifiers else None
    sent: list[int] = []  # rows sent, in page order
    sent_as: list[str] = []  # ... and the op each is sent as
    replaced: list[int] = []  # updates whose held identifiers are removed first
    recorded: list[int] = []  # rows recorded in flight
    messages: dict[int, str] = {}
    failed: dict[str, str] = {}
    skipped = deferred = 0
    for i, op in enumerate(rows.op):
        if usable is not None and op != "remove" and not usable[i]:
            skipped += 1
            continue
        send_as: str | None = op
        if op == "trigger":
            if _quiet(sync, traits, i, as_of):
                deferred += 1  # not sent, not recorded: the next run after quiet hours sends it
                continue
            if template is not None:
                try:
                    messages[i] = template.render(id=rows.id[i], **_row(traits, i))
                except Exception as exc:  # noqa: BLE001 - one record's data must not stop the run
                    failed[rows.id[i]] = f"template error: {type(exc).__name__}: {exc}"
                    continue
        elif op == "update" and sync.identifiers:
            previous = held[i]
            if previous != _row_identifiers(identifiers, i):
                if previous:
                    replaced.append(i)
                send_as = "add"
            elif not supports_update:
                send_as = None
        elif op == "update" and not supports_update:
            send_as = None
        if send_as is not None:
            sent.append(i)
            sent_as.append(send_as)
        recorded.append(i)
    operations = _operations(rows, identifiers, traits, sent, sent_as, messages)
    removes = _removes(rows, held, replaced)
    state = _state(rows, identifiers, recorded)
    return PreparedBatch(OperationColumns.concat(removes, operations), state, failed, done, skipped, deferred)


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


# -- columns of the page -------------------------------------------------------------
def _split(page: dict[str, list[Any]]) -> tuple[_Page, dict[str, Column]]:
    """The bookkeeping columns and the trait columns (``rn`` dropped)."""
    size = page_rows(page)
    traits = dict(page)

    def take(name: str, default: Any) -> Column:
        return traits.pop(name) if name in traits else [default] * size

    op, record_id = take("op", None), take("id", None)
    rows = _Page([str(v) for v in op], [str(v) for v in record_id], take("hash", None), take("held", False),
                 take("held_payload", None))
    traits.pop("rn", None)
    return rows, traits


def _identifier_columns(sync: Sync, traits: dict[str, Column], rows: _Page) -> dict[str, list[str | None]]:
    """One column per identifier kind, as text, None where empty; a remove's are the
    identifiers held for it (its ``held_payload``), which may name kinds the sync no
    longer maps."""
    columns = {
        kind: [None if v is None or v == "" else v if type(v) is str else str(v) for v in traits[trait]]
        for kind, trait in sync.identifiers.items()
        if trait in traits
    }
    for i, op in enumerate(rows.op):
        if op != "remove":
            continue
        for values in columns.values():
            values[i] = None
        payload = rows.held_payload[i]
        for kind, value in (orjson.loads(payload) if payload else {}).items():
            columns.setdefault(kind, [None] * len(rows))[i] = value
    return columns


def _held_identifiers(rows: _Page, compared: bool) -> dict[int, dict[str, str]]:
    """The identifiers held for each update (``compared``: the sync has identifiers)."""
    if not compared:
        return {}
    return {
        i: orjson.loads(payload) if payload else {}
        for i, (op, payload) in enumerate(zip(rows.op, rows.held_payload, strict=True))
        if op == "update"
    }


def _has_identifier(identifiers: dict[str, list[str | None]], size: int) -> list[bool]:
    usable = [False] * size
    for values in identifiers.values():
        usable = [u or v is not None for u, v in zip(usable, values, strict=True)]
    return usable


def _row(columns: dict[str, Column], i: int) -> dict[str, Any]:
    return {name: values[i] for name, values in columns.items()}


def _row_identifiers(identifiers: dict[str, list[str | None]], i: int) -> dict[str, str]:
    return {kind: v for kind, values in identifiers.items() if (v := values[i]) is not None}


def _quiet(sync: Sync, traits: dict[str, Column], i: int, as_of: datetime) -> bool:
    """Whether trigger row ``i`` falls in the recipient's quiet hours."""
    quiet = sync.quiet_hours
    if quiet is None:
        return False
    zone = traits[quiet.timezone_trait][i] if quiet.timezone_trait and quiet.timezone_trait in traits else None
    return quiet.active(as_of, str(zone) if zone else None)


# -- what is sent and recorded -------------------------------------------------------
def _operations(rows: _Page, identifiers: dict[str, list[str | None]], traits: dict[str, Column],
                sent: list[int], sent_as: list[str], messages: dict[int, str]) -> OperationColumns:
    every = OperationColumns(rows.op, rows.id, identifiers, traits)
    operations = every if len(sent) == len(rows) else every.take(sent)
    operations.op = sent_as
    if messages:
        operations.message = [messages.get(i) for i in sent]
    return operations


def _removes(rows: _Page, held: dict[int, dict[str, str]], replaced: list[int]) -> OperationColumns:
    """Removes of the held identifiers of updates whose identifiers changed."""
    kinds = dict.fromkeys(kind for i in replaced for kind in held[i])
    return OperationColumns(["remove"] * len(replaced), [rows.id[i] for i in replaced],
                            {kind: [held[i].get(kind) for i in replaced] for kind in kinds})


def _state(rows: _Page, identifiers: dict[str, list[str | None]], recorded: list[int]) -> dict[str, list[Any]]:
    """The inflight columns of the recorded rows; ``payload`` is the JSON of the
    identifiers sent (a remove keeps the payload it was held with)."""
    every = len(recorded) == len(rows)

    def pick(values: Column) -> Column:
        return list(values) if every else [values[i] for i in recorded]

    payload = _payloads({kind: pick(values) for kind, values in identifiers.items()}, len(recorded))
    for n, i in enumerate(recorded):
        if rows.op[i] == "remove":
            payload[n] = rows.held_payload[i]
    return {"id": pick(rows.id), "op": pick(rows.op), "hash": pick(rows.hash), "payload": payload,
            "held": [bool(v) for v in pick(rows.held)]}


def _payloads(identifiers: dict[str, list[str | None]], size: int) -> list[str | None]:
    """Each of ``size`` rows' identifiers as JSON with sorted keys, as ``orjson.dumps``
    writes a dict (None: the row has none)."""
    kinds = sorted(identifiers)
    columns = [identifiers[kind] for kind in kinds]
    if not kinds:
        return [None] * size
    if all(None not in values for values in columns):
        # every row has every kind: one object template, each value encoded on its own
        # (a third of the time of a dict per row)
        template = "{" + ",".join(_json(kind).replace("%", "%%") + ":%s" for kind in kinds) + "}"
        encoded = [[_json(v) for v in values] for values in columns]
        return [template % values for values in zip(*encoded, strict=True)]
    return [_json(present) if (present := {k: v for k, v in zip(kinds, values) if v is not None}) else None  # noqa: B905
            for values in zip(*columns, strict=True)]


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()
