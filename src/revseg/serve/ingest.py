"""Ingest compatible with Segment's HTTP tracking API: ``track``, ``identify`` and ``batch``.

A request is parsed and every value converted to its column's type first (:meth:`Ingest.parse`),
so a malformed call is refused whole with a precise reason and nothing is written; then its
rows are written in one transaction (:meth:`Ingest.write`), so a 200 means committed.

Mapping (SPEC 5.1):

- ``track`` appends a row to the default event model (``events``, else the only model with
  ``name:``): ``userId`` -> ``entity_key``, ``event`` -> ``name``, ``timestamp`` (or the time
  of receipt) -> ``timestamp``, ``properties.X`` -> column X when the model has one (an exact
  name first, else case-insensitively; others are ignored), ``loaded_at`` -> time of receipt.
- ``identify`` upserts the entity model's row: ``traits.X`` -> column X, ``updated_at`` -> the
  time of receipt; the row is created when no row has that key.

``userId`` is required: it is the entity key. Segment also accepts ``anonymousId``-only
calls, but revseg could not attribute them to an entity, so they are refused with 400.
``page``, ``screen``, ``group`` and ``alias`` calls in a batch map to no model: they are
acknowledged and not written, so the valid calls beside them are not lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import orjson
import pyarrow as pa
from sqlglot import exp

from revseg.compile.catalog import Catalog, ColumnInfo, Kind
from revseg.compile.values import timestamp_literal
from revseg.serve.convert import ConversionError, arrow_type, convert, describe
from revseg.spec.project import Model, Project
from revseg.warehouse.base import Warehouse

KB = 1024
#: Segment's limits: 32 KB per call, 500 KB per batch request
MAX_CALL_BYTES = 32 * KB
MAX_BATCH_BYTES = 500 * KB
KINDS = ("track", "identify")
#: Segment calls that map to no model of revseg: acknowledged in a batch and not written, so
#: the official clients, which batch every call they are given, do not lose the rest
IGNORED_KINDS = ("page", "screen", "group", "alias")


class BadCall(ValueError):
    """The request is malformed (400); the message says exactly what and where."""


class Unavailable(Exception):
    """This project cannot take this kind of call (501); the message says why."""


@dataclass(frozen=True)
class Table:
    """A model ingest writes to, with its columns as the warehouse spells them."""

    model: Model
    table: exp.Table
    key: ColumnInfo
    columns: dict[str, ColumnInfo]  # by exact name
    folded: dict[str, ColumnInfo]  # by lower-case name

    def column(self, name: str) -> ColumnInfo | None:
        return self.columns.get(name) or self.folded.get(name.lower())

    def mapped(self, name: str | None) -> ColumnInfo | None:
        return self.column(name) if name else None


@dataclass
class Track:
    row: dict[str, Any]


@dataclass
class Identify:
    key: Any
    values: dict[str, Any] = field(default_factory=dict)


Call = Track | Identify


def _table(model: Model, catalog: Catalog, key_name: str) -> Table:
    assert model.table is not None
    infos = list(catalog.models.get(model.name, {}).values())
    key = catalog.column(model.name, key_name)
    assert key is not None  # the session validated the project against the warehouse
    return Table(model, model.table, key, {c.name: c for c in infos}, {c.name.lower(): c for c in infos})


def default_event_model(project: Project) -> Model | None:
    """SPEC 2.2: the model named ``events``, else the only model with ``name:``."""
    if "events" in project.models:
        return project.models["events"]
    named = [m for m in project.models.values() if m.is_event_model]
    return named[0] if len(named) == 1 else None


class Ingest:
    """Parses and writes calls for one project; built once the catalog is known."""

    def __init__(self, project: Project, catalog: Catalog, target_type: str, *, writable: bool) -> None:
        self.target_type = target_type
        self.writable = writable
        self.events: Table | None = None
        self.entity: Table | None = None
        self._no_events = self._no_entity = ""
        model = default_event_model(project)
        if model is None:
            self._no_events = ("track needs a default event model: a model named 'events', or exactly one "
                               "model with name: (see SPEC 2.2 'Event models')")
        elif model.table is None or not (model.entity_key and model.event_name and model.timestamp):
            self._no_events = (f"track writes to the default event model '{model.name}', which must be a table: "
                               "model with entity_key, name and timestamp")
        else:
            self.events = _table(model, catalog, model.entity_key)
        entity = project.models.get(project.entity or "")
        if entity is None or entity.primary_key is None:
            self._no_entity = "identify needs the project's entity model (entity: in revseg.yml)"
        elif entity.table is None:
            self._no_entity = f"identify writes to the entity model '{entity.name}', which must be a table: model"
        else:
            self.entity = _table(entity, catalog, entity.primary_key)

    # -- parsing ----------------------------------------------------------------------
    def parse(self, kind: str, body: bytes, received: datetime) -> list[Call]:
        """The calls of one request body (``kind``: track, identify or batch); raise BadCall."""
        if not self.writable:
            raise Unavailable(self.unavailable_reason())
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadCall(f"the body is not valid JSON: {exc}") from None
        if not isinstance(document, dict):
            raise BadCall("the body must be a JSON object")
        if kind != "batch":
            return [self._call(kind, document, received, "")]
        items = document.get("batch")
        if not isinstance(items, list):
            raise BadCall("'batch' must be a list of track and identify calls")
        calls = []
        for index, item in enumerate(items):
            where = f"batch[{index}]: "
            if not isinstance(item, dict):
                raise BadCall(f"{where}each call must be a JSON object")
            size = len(orjson.dumps(item))
            if size > MAX_CALL_BYTES:
                raise BadCall(f"{where}the call is {size} bytes, more than the 32 KB allowed per call")
            kind_of = item.get("type")
            if kind_of in IGNORED_KINDS:
                continue
            if kind_of not in KINDS:
                shown = "missing" if kind_of is None else f"{kind_of!r}, which is not supported"
                raise BadCall(f"{where}type is {shown}: revseg ingests track and identify calls")
            calls.append(self._call(str(kind_of), item, received, where))
        return calls

    def _call(self, kind: str, call: dict[str, Any], received: datetime, where: str) -> Call:
        target = self.events if kind == "track" else self.entity
        if target is None:
            raise Unavailable(self._no_events if kind == "track" else self._no_entity)
        key = self._user_id(call, target, where)
        if kind == "track":
            return self._track(call, target, key, received, where)
        return self._identify(call, target, key, received, where)

    def unavailable_reason(self) -> str:
        return (f"ingest cannot write to this {self.target_type} target (its adapter does not accept ingest): "
                "load events with your pipeline; the read API works here")

    def _user_id(self, call: dict[str, Any], target: Table, where: str) -> Any:
        user = call.get("userId")
        if user is None or user == "":
            anonymous = " (an anonymousId alone is not enough)" if call.get("anonymousId") not in (None, "") else ""
            raise BadCall(f"{where}userId is required{anonymous}: revseg maps userId to the entity key "
                          f"'{target.key.name}' of model '{target.model.name}', so a call without one cannot "
                          "be attributed to an entity")
        if isinstance(user, bool) or not isinstance(user, (str, int, float)):
            raise BadCall(f"{where}userId must be a string or a number")
        try:
            return convert(user, target.key)
        except ConversionError as exc:
            raise BadCall(f"{where}userId {_short(user)} does not convert to the entity key "
                          f"{describe(target.key)} of model '{target.model.name}': {exc}") from None

    def _track(self, call: dict[str, Any], table: Table, key: Any, received: datetime, where: str) -> Track:
        model = table.model
        event = call.get("event")
        if not isinstance(event, str) or not event.strip():
            raise BadCall(f"{where}event is required: a non-empty string (the event's name)")
        name, stamp = table.mapped(model.event_name), table.mapped(model.timestamp)
        loaded = table.mapped(model.loaded_at)
        assert name is not None and stamp is not None
        row: dict[str, Any] = {table.key.name: key, name.name: self._value(event, name, f"{where}event")}
        raw = call.get("timestamp")
        if raw is None:
            row[stamp.name] = received.date() if stamp.kind is Kind.DATE else received
        elif not isinstance(raw, str):
            raise BadCall(f"{where}timestamp must be an ISO-8601 string (e.g. 2026-11-28T17:00:00.000Z), "
                          f"not {_short(raw)}")
        else:
            row[stamp.name] = self._value(raw, stamp, f"{where}timestamp")
        if loaded is not None:
            row[loaded.name] = received
        row.update(self._columns(call, "properties", table, set(row), where))
        return Track(row)

    def _identify(self, call: dict[str, Any], table: Table, key: Any, received: datetime,
                  where: str) -> Identify:
        updated = table.mapped(table.model.updated_at)
        reserved = {table.key.name} | ({updated.name} if updated else set())
        values = self._columns(call, "traits", table, reserved, where)
        if updated is not None:
            values[updated.name] = received
        return Identify(key, values)

    def _columns(self, call: dict[str, Any], field_name: str, table: Table, reserved: set[str],
                 where: str) -> dict[str, Any]:
        """``properties`` / ``traits`` onto the model's columns; exact names win over folded ones."""
        given = call.get(field_name)
        if given is None:
            return {}
        if not isinstance(given, dict):
            raise BadCall(f"{where}{field_name} must be a JSON object")
        out: dict[str, Any] = {}
        exact = sorted(given, key=lambda k: k not in table.columns)
        for name in exact:
            info = table.column(name)
            if info is None or info.name in reserved or info.name in out:
                continue
            out[info.name] = self._value(given[name], info, f"{where}{field_name}.{name}")
        return out

    @staticmethod
    def _value(value: Any, info: ColumnInfo, what: str) -> Any:
        try:
            return convert(value, info)
        except ConversionError as exc:
            raise BadCall(f"{what}: {exc} (column {describe(info)})") from None

    # -- writing ----------------------------------------------------------------------
    def write(self, warehouse: Warehouse, calls: list[Call]) -> None:
        """Write every call in one transaction: all or nothing."""
        tracks = [c.row for c in calls if isinstance(c, Track)]
        identifies = [c for c in calls if isinstance(c, Identify)]
        if not calls:
            return
        with warehouse.transaction():
            if tracks:
                assert self.events is not None
                warehouse.insert_arrow(self.events.table, _arrow(self.events, tracks))
            for call in identifies:
                assert self.entity is not None
                _upsert(warehouse, self.entity, call)


def _arrow(table: Table, rows: list[dict[str, Any]]) -> pa.Table:
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    schema = pa.schema([(n, arrow_type(table.columns[n])) for n in names])
    return pa.Table.from_pylist(rows, schema=schema)


def _ident(name: str) -> exp.Column:
    return exp.column(exp.to_identifier(name, quoted=True))


def _literal(value: Any) -> exp.Expr:
    """A literal the engine assigns to its column (values are already of the column's type)."""
    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, (int, float)):
        return exp.Literal.number(repr(value))
    if isinstance(value, datetime):
        return timestamp_literal(value)
    if isinstance(value, date):
        return exp.cast(exp.Literal.string(value.isoformat()), exp.DataType.build("DATE"))
    return exp.Literal.string(str(value))


def _upsert(warehouse: Warehouse, table: Table, call: Identify) -> None:
    match = exp.EQ(this=_ident(table.key.name), expression=_literal(call.key))
    found = warehouse.fetchall(exp.select(exp.Literal.number(1)).from_(table.table.copy()).where(match).limit(1))
    if found:
        if call.values:
            sets = [exp.EQ(this=_ident(n), expression=_literal(v)) for n, v in call.values.items()]
            warehouse.execute(exp.Update(this=table.table.copy(), expressions=sets, where=exp.Where(this=match.copy())))
        return
    row = {table.key.name: call.key, **call.values}
    warehouse.execute(exp.insert(
        exp.values([tuple(_literal(v) for v in row.values())]),
        table.table.copy(),
        columns=[exp.to_identifier(n, quoted=True) for n in row],
    ))


def _short(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."
