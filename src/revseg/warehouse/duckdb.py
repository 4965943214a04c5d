"""Embedded DuckDB, the default engine. A relative ``path`` is relative to the project dir."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlglot import exp

if TYPE_CHECKING:
    import pyarrow as pa

from revseg.errors import LockError, WarehouseError
from revseg.warehouse.base import Column, TableRef, Warehouse, by_column, create_statement
from revseg.warehouse.duckdb_memory import raised

#: how long to wait for another process to release the database file
LOCK_WAIT_SECONDS = 30.0
#: DuckDB's automatic checkpoint threshold while revseg holds the file, and the WAL size from
#: which closing it checkpoints. Every open replays the WAL, ~20 ms per MiB of revseg's
#: writes; a checkpoint on close costs 40-250 ms. Runs that add ~0.5 MiB each (1% churn of a
#: 240k-member segment) paid 145 ms per open+close on average at 16 MiB and 90-95 ms at
#: 2-4 MiB when nothing else checkpoints the file.
RUN_WAL_LIMIT = "256MB"
CLOSE_CHECKPOINT_BYTES = 4 * 2**20
#: DuckDB keeps freed buffers cached up to its memory limit (80% of RAM by default), so a
#: 1M-member sync held 700+ MB; with 192 MB it holds about 450 MB (the rest is Python and
#: imports; 256 MB still peaked above 500): sorts, joins and in-memory tables spill to the
#: temp directory. Raise it (target option `memory_limit`) for heavy segment queries; a
#: statement that still runs out of memory runs again under a higher one (duckdb_memory).
DEFAULT_MEMORY_LIMIT = "192MB"

logger = logging.getLogger(__name__)


class DuckDBWarehouse(Warehouse):
    dialect = "duckdb"
    type_name = "duckdb"
    #: DuckDB lets one process open a file for writing (see connect's wait)
    single_process = True
    accepts_ingest = True

    @staticmethod
    def key_hash(value: exp.Expr) -> exp.Expr:  # type: ignore[override]
        return exp.Anonymous(this="hash", expressions=[value])

    def __init__(self, config: dict[str, Any], project_dir: Path) -> None:
        super().__init__(config)
        raw = str(config.get("path") or "warehouse.duckdb")
        self.path = raw if raw == ":memory:" else str((project_dir / raw).resolve())
        self.project_dir = project_dir
        self._conn: Any = None
        #: the memory_limit set on the connection (None: DuckDB's default)
        self._memory_limit: str | None = None

    def connect(self) -> None:
        import duckdb

        fresh = self.path != ":memory:" and not Path(self.path).exists()
        if fresh:  # a WAL left beside a deleted file belongs to that file: never replay it here
            Path(f"{self.path}.wal").unlink(missing_ok=True)
        deadline = time.monotonic() + float(self.config.get("lock_timeout", LOCK_WAIT_SECONDS))
        while True:
            try:
                self._conn = duckdb.connect(self.path, read_only=bool(self.config.get("read_only")))
                self._conn.execute("SET TimeZone = 'UTC'")
                # DuckDB draws its progress bar on stdout, even into a file: it would corrupt
                # `sync --json > out.json` on a slow query
                self._conn.execute("SET enable_progress_bar = false")
                if not self.config.get("read_only"):
                    # Every commit is durable in the WAL. Folding a run's few changed rows into
                    # the file on each close cost more than the run (0.2-0.4 s at 1M members),
                    # and a large run hit the 16 MiB auto-checkpoint again and again (a tenth
                    # of a 1M-member sync): checkpoint once, on close, when the WAL is big.
                    self._conn.execute("PRAGMA disable_checkpoint_on_shutdown")
                    self._conn.execute(f"SET checkpoint_threshold = '{RUN_WAL_LIMIT}'")
                limit = self.config.get("memory_limit", DEFAULT_MEMORY_LIMIT)
                if limit:
                    try:
                        self._set_memory_limit(str(limit))
                    except WarehouseError:
                        self._conn.close()
                        self._conn = None
                        raise
                break
            except duckdb.IOException as exc:
                # DuckDB lets one process write a file at a time: wait for the other run
                if "lock" not in str(exc).lower():
                    raise WarehouseError(f"cannot open DuckDB database {self.path}: {exc}") from None
                if time.monotonic() >= deadline:
                    raise LockError(
                        f"the DuckDB file {self.path} is in use by another process (another revseg "
                        f"run, or a `revseg serve`): {str(exc).splitlines()[0]}"
                    ) from None
                time.sleep(0.2)
            except duckdb.Error as exc:
                raise WarehouseError(f"cannot open DuckDB database {self.path}: {exc}") from None
        if fresh:
            self._seed()
        self._use_schema()

    def _use_schema(self) -> None:
        if self.config.get("schema"):
            self.execute(exp.Use(this=exp.to_identifier(str(self.config["schema"]))))

    def clone(self) -> DuckDBWarehouse:
        """A cursor: DuckDB's own thread-safe duplicate connection to the same database (one
        process owns the file, so serve's HTTP threads cannot open it again). A cursor starts
        with default settings, so UTC and the schema are set again; closing the original closes
        its cursors too."""
        twin = DuckDBWarehouse.__new__(DuckDBWarehouse)
        Warehouse.__init__(twin, self.config)
        twin.path, twin.project_dir = self.path, self.project_dir
        twin._memory_limit = self._memory_limit  # the limit is the database's
        twin._conn = self._conn.cursor()
        twin._conn.execute("SET TimeZone = 'UTC'")
        twin._use_schema()
        return twin

    def _seed(self) -> None:
        """Run the target's ``seed:`` scripts once, when the database file is new (demo data).

        A seed script is the user's own DuckDB SQL file, run as written, in one transaction;
        if it fails the new file is removed so the next run seeds again.
        """
        for script in self.config.get("seed") or []:
            path = self.project_dir / script
            try:
                text = path.read_text(encoding="utf-8")
                self._conn.execute("BEGIN")
                self._conn.execute(text)
                self._conn.execute("COMMIT")
            except Exception as exc:
                self.close()
                Path(self.path).unlink(missing_ok=True)
                raise WarehouseError(f"seed script {script} failed: {exc}") from None

    def close(self) -> None:
        if self._conn is not None:
            wal = Path(f"{self.path}.wal")
            if not self.config.get("read_only") and wal.exists() and wal.stat().st_size > CLOSE_CHECKPOINT_BYTES:
                try:
                    self._conn.execute("CHECKPOINT")
                except Exception:  # noqa: BLE001 - the WAL stays valid; the next open replays it
                    logger.debug("checkpoint on close failed", exc_info=True)
            self._conn.close()
            self._conn = None

    def _run(self, expression: exp.Expr | str, params: list[Any] | None = None) -> Any:
        import duckdb

        sql = expression if isinstance(expression, str) else self.render(expression)
        while True:
            try:
                return self._conn.execute(sql, params) if params is not None else self._conn.execute(sql)
            except duckdb.OutOfMemoryException as exc:
                if not self._raise_memory_limit():
                    raise WarehouseError(
                        f"query failed on DuckDB: {exc}\n  fix: raise the DuckDB target's memory_limit "
                        f"(now {self._memory_limit or 'DuckDB default'}), e.g. `memory_limit: 4GB`\n  query: {sql[:500]}"
                    ) from None
            except duckdb.Error as exc:
                raise WarehouseError.query_failed("DuckDB", exc, sql) from None

    def _set_memory_limit(self, limit: str) -> None:
        self._run(_setting("memory_limit", limit))
        self._memory_limit = limit

    def _raise_memory_limit(self) -> bool:
        """After an Out of Memory error: raise the limit so the statement can run again, unless
        it ran in a transaction (DuckDB aborted it) or the limit is at its ceiling."""
        higher = raised(self._memory_limit) if self._memory_limit and not self.in_transaction else None
        if higher is None:
            return False
        logger.warning("DuckDB ran out of memory under memory_limit %s: running the statement again under %s "
                       "(set the target's memory_limit to skip this)", self._memory_limit, higher)
        self._set_memory_limit(higher)
        return True

    def execute(self, expression: exp.Expr | str) -> None:
        self._run(expression)

    def fetchall(self, expression: exp.Expr) -> list[tuple[Any, ...]]:
        return list(self._run(expression).fetchall())

    def execute_count(self, expression: exp.Expr) -> int | None:
        row = self._run(expression).fetchone()
        return int(row[0]) if row else None

    def create_table_as(self, target: exp.Table, query: exp.Query, *, temporary: bool) -> int | None:
        """One statement (CREATE OR REPLACE), which answers with the number of rows."""
        return self.execute_count(create_statement(target, query, temporary=temporary, replace=True))

    def fetch_batches(self, expression: exp.Expr, batch_size: int) -> Iterator[pa.RecordBatch]:
        import duckdb

        sql = self.render(expression)
        try:
            reader = self._conn.sql(sql).to_arrow_reader(batch_size)
        except duckdb.Error as exc:
            raise WarehouseError.query_failed("DuckDB", exc, sql) from None
        yield from reader

    def columns(self, table: TableRef) -> list[Column] | None:
        query = (
            exp.select("column_name", "data_type")
            .from_("information_schema.columns")
            .where(exp.EQ(this=exp.column("table_name"), expression=exp.Literal.string(table.name)))
            .order_by("ordinal_position")
        )
        schema = table.schema or self.config.get("schema")
        if schema:
            query = query.where(exp.EQ(this=exp.column("table_schema"), expression=exp.Literal.string(schema)))
        else:
            query = query.where(exp.EQ(this=exp.column("table_schema"), expression=exp.func("current_schema")))
        if table.catalog:
            query = query.where(exp.EQ(this=exp.column("table_catalog"), expression=exp.Literal.string(table.catalog)))
        rows = self.fetchall(query)
        return [Column(name, type_name) for name, type_name in rows] or None

    def query_columns(self, query: exp.Query) -> list[Column]:
        limited = exp.select("*").from_(exp.Subquery(this=query.copy(), alias=exp.TableAlias(this=exp.to_identifier("q")))).limit(0)
        cursor = self._run(limited)
        return [Column(d[0], str(d[1])) for d in cursor.description]

    def fetch_columns(self, expression: exp.Expr) -> dict[str, list[Any]]:
        cursor = self._run(expression)
        return by_column([d[0] for d in cursor.description], cursor.fetchall())

    def insert_columns(self, table: exp.Table, columns: Mapping[str, list[Any]], constants: Mapping[str, Any]) -> None:
        count = len(next(iter(columns.values()), []))
        if count == 0:
            return
        if self.prefers_arrow(count):
            import pyarrow as pa

            data = pa.table({**columns, **{name: [value] * count for name, value in constants.items()}})
            self.insert_arrow(table, data)
            return
        names = [*columns, *constants]
        values = [exp.Unnest(expressions=[exp.Placeholder()]) for _ in columns] + [exp.Placeholder() for _ in constants]
        insert = exp.Insert(this=exp.Schema(this=table.copy(), expressions=[exp.to_identifier(n, quoted=True) for n in names]),
                            expression=exp.select(*values))
        self._run(insert, [*columns.values(), *constants.values()])

    def insert_arrow(self, table: exp.Table, data: pa.Table) -> None:
        view = "revseg_arrow_input"
        self._conn.register(view, data)
        try:
            columns = [exp.to_identifier(name, quoted=True) for name in data.column_names]
            insert = exp.Insert(
                this=exp.Schema(this=table.copy(), expressions=columns),
                expression=exp.select(*columns).from_(view),
            )
            self._run(insert)
        finally:
            self._conn.unregister(view)

    def schema_exists(self, schema: str) -> bool:
        query = exp.select("1").from_("information_schema.schemata").where(
            exp.EQ(this=exp.column("schema_name"), expression=exp.Literal.string(schema))
        )
        return bool(self.fetchall(query))

    def _begin(self) -> None:
        self._conn.execute("BEGIN TRANSACTION")

    def _commit(self) -> None:
        self._conn.execute("COMMIT")

    def _rollback(self) -> None:
        self._conn.execute("ROLLBACK")


def _setting(name: str, value: str) -> exp.Set:
    """``SET name = 'value'``, the value quoted by sqlglot."""
    return exp.Set(expressions=[exp.SetItem(this=exp.EQ(this=exp.to_identifier(name), expression=exp.Literal.string(value)))])

