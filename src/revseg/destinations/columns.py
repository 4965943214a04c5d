"""A batch's operations held as columns: one list per field, row ``i`` is operation ``i``.

The runner cuts the delta into pages of up to 10,000 rows that arrive as one list per
column; turning each row into an :class:`~revseg.destinations.base.Operation` with a traits
and an identifiers dict was most of the runner's per-row cost. :class:`OperationColumns`
keeps the lists instead and is still a ``Sequence[Operation]``: indexing or iterating it
builds each Operation on demand, so a destination written against operations works
unchanged, while one that works a column at a time (Meta hashes each identifier kind as a
column) reads the lists and builds nothing per row.

>>> ops = OperationColumns(["add", "remove"], ["1", "2"], {"email": ["a@b.co", "c@d.co"]},
...                        {"email": ["a@b.co", None]})
>>> ops[0]
Operation(op='add', id='1', traits={'email': 'a@b.co'}, identifiers={'email': 'a@b.co'}, message=None)
>>> ops[1].traits, ops[1].identifiers
({}, {'email': 'c@d.co'})
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload

from revseg.destinations.base import Operation

_new, _set = object.__new__, object.__setattr__


class OperationColumns(Sequence[Operation]):
    """Operations as columns. ``identifiers`` holds one column per kind, None where an
    operation has no value of that kind; ``traits`` one column per trait (ignored for
    removes, whose traits are ``{}``); ``message`` the rendered template of triggers."""

    __slots__ = ("op", "id", "identifiers", "traits", "message")

    def __init__(
        self,
        op: list[str],
        id: list[str],  # noqa: A002 - Operation's own field name
        identifiers: Mapping[str, list[str | None]] | None = None,
        traits: Mapping[str, list[Any]] | None = None,
        message: list[str | None] | None = None,
    ) -> None:
        self.op = op
        self.id = id
        self.identifiers = dict(identifiers or {})
        self.traits = dict(traits or {})
        self.message = message

    @classmethod
    def of(cls, operations: Sequence[Operation]) -> OperationColumns:
        """``operations`` as columns (themselves if they already are)."""
        if isinstance(operations, OperationColumns):
            return operations
        kinds = dict.fromkeys(kind for op in operations for kind in op.identifiers)
        names = dict.fromkeys(name for op in operations for name in op.traits)
        return cls(
            [op.op for op in operations],
            [op.id for op in operations],
            {kind: [op.identifiers.get(kind) for op in operations] for kind in kinds},
            {name: [op.traits.get(name) for op in operations] for name in names},
            [op.message for op in operations],
        )

    @classmethod
    def concat(cls, first: OperationColumns, second: OperationColumns) -> OperationColumns:
        """``first``'s operations, then ``second``'s (a column one lacks is None there)."""
        if not first:
            return second
        if not second:
            return first

        def joined(a: Mapping[str, list[Any]], b: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
            pad_a, pad_b = [None] * len(first), [None] * len(second)
            return {name: a.get(name, pad_a) + b.get(name, pad_b) for name in dict.fromkeys([*a, *b])}

        message = None
        if first.message is not None or second.message is not None:
            message = (first.message or [None] * len(first)) + (second.message or [None] * len(second))
        return cls(first.op + second.op, first.id + second.id, joined(first.identifiers, second.identifiers),
                   joined(first.traits, second.traits), message)

    def take(self, rows: Sequence[int]) -> OperationColumns:
        """The operations at ``rows``, in that order."""

        def pick(values: list[Any]) -> list[Any]:
            return [values[i] for i in rows]

        return OperationColumns(
            pick(self.op),
            pick(self.id),
            {kind: pick(values) for kind, values in self.identifiers.items()},
            {name: pick(values) for name, values in self.traits.items()},
            pick(self.message) if self.message is not None else None,
        )

    def __len__(self) -> int:
        return len(self.id)

    @overload
    def __getitem__(self, index: int) -> Operation: ...

    @overload
    def __getitem__(self, index: slice) -> OperationColumns: ...

    def __getitem__(self, index: int | slice) -> Operation | OperationColumns:
        if isinstance(index, slice):
            return self.take(range(len(self))[index])
        op = self.op[index]
        traits = {} if op == "remove" else {name: values[index] for name, values in self.traits.items()}
        identifiers = {kind: v for kind, values in self.identifiers.items() if (v := values[index]) is not None}
        message = self.message[index] if self.message is not None else None
        # one write of the instance's dict instead of the frozen dataclass's five guarded
        # attribute writes; tests/test_operations.py checks the result equals Operation(...)
        operation = _new(Operation)
        _set(operation, "__dict__", {"op": op, "id": self.id[index], "traits": traits,
                                     "identifiers": identifiers, "message": message})
        return operation

    def __iter__(self) -> Iterator[Operation]:
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"OperationColumns({list(self)!r})"
