"""The warehouse adapter interface: the only place a sqlglot tree becomes a SQL string.

An adapter knows one engine: how to connect (drivers are imported inside ``connect`` so
``revseg --help`` stays fast), its sqlglot dialect, the session settings that make results
independent of the machine (UTC), and how to read column types. Everything else in revseg
hands it expression trees.
"""

from __future__ import annotations

import logging
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sqlglot import exp

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("revseg.warehouse")


def create_statement(target: exp.Table, query: exp.Query, *, temporary: bool, replace: bool) -> exp.Create:
    properties = exp.Properties(expressions=[exp.TemporaryProperty()]) if temporary else None
    return exp.Create(this=target.copy(), kind="TABLE", expression=query, properties=properties, replace=replace)


#: results and inserts of more rows move as Arrow (see Warehouse.prefers_arrow)
ARROW_ROWS = 20_000


def by_column(names: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> dict[str, list[Any]]:
    """Rows (tuples in the order of ``names``) as one list per column."""
    if not rows:
        return {name: [] for name in names}
    return {name: list(values) for name, values in zip(names, zip(*rows), strict=True)}


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # the engine's own type name


@dataclass(frozen=True)
class TableRef:
    """A table the user named: ``schema.table`` or just ``table`` (the target's schema)."""

    name: str
    schema: str | None = None
    catalog: str | None = None

    def to_exp(self) -> exp.Table:
        return exp.table_(self.name, db=self.schema, catalog=self.catalog, quoted=True)


class Warehouse(ABC):
    """A connection to one engine. Use as a context manager."""

    #: sqlglot dialect name used to render every tree.
    dialect: ClassVar[str]
    #: the target type name in revseg.yml (``duckdb``, ``postgres`` ...).
    type_name: ClassVar[str]
    #: collation that orders text by code point, when columns may carry another one
    text_collation: ClassVar[str | None] = None

    #: a cheap 64-bit hash of a key value of any type (see Catalog.key_hash); None: none
    key_hash: ClassVar[Callable[[exp.Expr], exp.Expr] | None] = None
    #: one process at a time holds the database (an embedded file): no run in another
    #: process can take a lock over while this one lives, so a lease needs no heartbeat
    single_process: ClassVar[bool] = False
    #: ``revseg serve`` may write ingested calls here (SPEC 5.1): sessions cloned in one
    #: process insert and update the user's tables in transactions
    accepts_ingest: ClassVar[bool] = False

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)
        #: a transaction is open (begin without commit or rollback yet)
        self.in_transaction = False

    # -- connection ----------------------------------------------------------------
    @abstractmethod
    def connect(self) -> None:
        """Open the connection and set the session to UTC. Raise WarehouseError on failure."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Warehouse:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def clone(self) -> Warehouse:
        """Another connected session on the same database, for another thread (``revseg serve``
        answers HTTP requests while the scheduler works). The caller closes it. Adapters whose
        connections cannot be shared across threads override this; the default refuses."""
        raise NotImplementedError(f"the {self.type_name} adapter cannot open a second session")

    # -- rendering -----------------------------------------------------------------
    def render(self, expression: exp.Expr) -> str:
        """Render a tree in this engine's dialect (identifiers quoted by sqlglot)."""
        return expression.sql(dialect=self.dialect, identify=False)

    # -- execution -----------------------------------------------------------------
    @abstractmethod
    def execute(self, expression: exp.Expr | str) -> None:
        """Run a statement for its effect. Strings are only for driver pragmas."""

    @abstractmethod
    def fetchall(self, expression: exp.Expr) -> list[tuple[Any, ...]]:
        """Run a query and return all rows (small results only)."""

    @abstractmethod
    def fetch_batches(self, expression: exp.Expr, batch_size: int) -> Iterator[pa.RecordBatch]:
        """Stream a query's result as Arrow record batches of at most ``batch_size`` rows."""

    @abstractmethod
    def columns(self, table: TableRef) -> list[Column] | None:
        """The table's columns in order, or None when it does not exist."""

    @abstractmethod
    def query_columns(self, query: exp.Query) -> list[Column]:
        """The output columns of a query (runs it with LIMIT 0)."""

    @abstractmethod
    def insert_arrow(self, table: exp.Table, data: pa.Table) -> None:
        """Append ``data`` (columns named as the table's) through the driver's bulk path."""

    @abstractmethod
    def fetch_columns(self, expression: exp.Expr) -> dict[str, list[Any]]:
        """Run a query; its result as one list per column, by name (a small result: no Arrow)."""

    @abstractmethod
    def insert_columns(self, table: exp.Table, columns: Mapping[str, list[Any]], constants: Mapping[str, Any]) -> None:
        """Append rows given as one list per column (equal lengths), plus ``constants``: columns
        with the same value in every row (as Arrow where ``prefers_arrow``)."""

    @abstractmethod
    def schema_exists(self, schema: str) -> bool: ...

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A transaction: committed when the block ends, rolled back when it raises; inside
        another one it joins it (the outermost commits)."""
        if self.in_transaction:
            yield
            return
        self.begin()
        try:
            yield
        except BaseException:
            self.rollback()
            raise
        self.commit()

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Hold ``name`` against every other session on this database while the block runs:
        creating and migrating the state schema, which two first runs would otherwise race on.
        The default holds nothing: an embedded file is opened by one process at a time."""
        yield

    def begin(self) -> None:
        self._begin()
        self.in_transaction = True

    def commit(self) -> None:
        self.in_transaction = False
        self._commit()

    def rollback(self) -> None:
        self.in_transaction = False
        self._rollback()

    @abstractmethod
    def _begin(self) -> None: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None: ...

    def prefers_arrow(self, rows: int) -> bool:
        """Whether ``rows`` rows move better as Arrow than as lists per column: binding lists
        costs ~3 us a row, Arrow ~1 us, plus importing pyarrow (60-90 ms) when not done yet,
        so a one-shot sync of a small delta never imports it."""
        return rows > ARROW_ROWS or "pyarrow" in sys.modules

    def execute_count(self, expression: exp.Expr) -> int | None:
        """Run an INSERT, UPDATE or DELETE; the number of rows it changed when the driver
        reports it."""
        self.execute(expression)
        return None

    def create_table_as(self, target: exp.Table, query: exp.Query, *, temporary: bool) -> int | None:
        """(Re)create ``target`` from ``query``; the number of rows written when the driver
        reports it (None: count them yourself)."""
        self.execute(exp.Drop(tables=[target.copy()], kind="TABLE", exists=True))
        return self.execute_count(create_statement(target, query, temporary=temporary, replace=False))

    def execute_many(self, statements: Sequence[exp.Expr]) -> None:
        for statement in statements:
            self.execute(statement)

    @property
    def default_schema(self) -> str | None:
        """The schema unqualified tables resolve to (the target's ``schema``)."""
        value = self.config.get("schema")
        return str(value) if value else None
