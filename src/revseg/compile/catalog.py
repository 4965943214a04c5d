"""The warehouse's columns, as the compiler needs them: real names and a type kind.

The runner fills a Catalog from the warehouse adapter; the compiler only reads it, so
compiling stays free of I/O and testable with a hand-made catalog.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from sqlglot import exp


class Kind(Enum):
    NUMBER = "number"
    TEXT = "text"
    BOOL = "boolean"
    TIMESTAMP = "timestamp"
    DATE = "date"
    UUID = "uuid"
    OTHER = "other"


#: numeric type names of the engines (``integer``, ``int8``, ``ubigint``, ``decimal(18,2)``,
#: ``double precision``, ``float64``, ``number(38,0)``), not ``interval`` or ``point``
_NUMBER = re.compile(r"(u?(tiny|small|medium|big|huge)?int(eger)?\d*|numeric|decimal|double|real|float\d*|number)\b")
_COMPOUND = ("struct", "map", "list", "union", "array", "interval", "point", "json")


def classify(type_name: str) -> Kind:
    """Map an engine's type name (``timestamp without time zone``, ``VARCHAR``...) to a Kind."""
    name = type_name.strip().lower()
    if name.endswith("]") or name.startswith(_COMPOUND):  # lists, structs, maps: none of these
        return Kind.OTHER
    if "timestamp" in name or name.startswith("datetime"):
        return Kind.TIMESTAMP
    if name == "date":
        return Kind.DATE
    if name.startswith(("bool",)):
        return Kind.BOOL
    if _NUMBER.match(name):
        return Kind.NUMBER
    if name == "uuid":  # compared as a UUID (any case), ordered as its lowercase text is
        return Kind.UUID
    if any(word in name for word in ("char", "text", "string")):
        return Kind.TEXT
    return Kind.OTHER


@dataclass(frozen=True)
class ColumnInfo:
    name: str  # as the warehouse spells it
    kind: Kind
    type_name: str


@dataclass
class Catalog:
    """Columns per model name; lookups are case-insensitive (engines fold case differently)."""

    models: dict[str, dict[str, ColumnInfo]] = field(default_factory=dict)
    #: collation that orders text by code point (SPEC 2.2), where the engine's default may
    #: not (PostgreSQL columns can carry a locale's collation); None: already binary
    text_collation: str | None = None
    #: a cheap 64-bit hash of any key value, summed over an entity table as a checksum of its
    #: keys (incremental runs look for deleted rows only when it moved); None: always look
    key_hash: Callable[[exp.Expr], exp.Expr] | None = None

    def add(self, model: str, columns: list[ColumnInfo]) -> None:
        self.models[model] = {c.name.lower(): c for c in columns}

    def column(self, model: str, name: str) -> ColumnInfo | None:
        return self.models.get(model, {}).get(name.lower())

    def names(self, model: str) -> list[str]:
        return [c.name for c in self.models.get(model, {}).values()]
