"""PostgreSQL through psycopg 3 (imported in ``connect``). Sessions run in UTC."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from sqlglot import exp

if TYPE_CHECKING:
    import pyarrow as pa

from revseg.errors import WarehouseError
from revseg.warehouse.base import Column, TableRef, Warehouse, by_column


class PostgresWarehouse(Warehouse):
    dialect = "postgres"
    type_name = "postgres"
    #: a database or column created with a locale (en_US, ICU) orders 'us' before 'US'
    text_collation = "C"
    accepts_ingest = True

    @staticmethod
    def key_hash(value: exp.Expr) -> exp.Expr:  # type: ignore[override]
        return exp.Anonymous(this="hashtextextended", expressions=[
            exp.cast(value, exp.DataType.build("TEXT")), exp.Literal.number(0)])

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self._conn: Any = None

    def connect(self) -> None:
        try:
            import psycopg
        except ImportError:
            raise WarehouseError("the postgres target needs psycopg: pip install 'revseg[postgres]'") from None
        params = {
            "host": self.config.get("host"),
            "port": self.config.get("port"),
            "user": self.config.get("user"),
            "password": self.config.get("password"),
            "dbname": self.config.get("database"),
            "sslmode": self.config.get("sslmode"),
            "connect_timeout": self.config.get("connect_timeout", 10),
        }
        try:
            self._conn = psycopg.connect(**{k: v for k, v in params.items() if v is not None}, autocommit=True)
            self._conn.execute("SET TIME ZONE 'UTC'")
            if self.config.get("schema"):
                from psycopg import sql

                schema = sql.Identifier(str(self.config["schema"]))
                self._conn.execute(sql.SQL("SET search_path TO {}").format(schema))
        except psycopg.Error as exc:
            where = f"{params['host']}:{params['port']}/{params['dbname']}"
            raise WarehouseError(f"cannot connect to PostgreSQL at {where}: {str(exc).strip()}") from None

    def clone(self) -> PostgresWarehouse:
        """A second connection with the same settings (psycopg connections are not shared
        across threads)."""
        twin = PostgresWarehouse(self.config)
        twin.connect()
        return twin

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _run(self, expression: exp.Expr | str) -> Any:
        import psycopg

        sql = expression if isinstance(expression, str) else self.render(expression)
        try:
            return self._conn.execute(sql)
        except psycopg.Error as exc:
            raise WarehouseError.query_failed("PostgreSQL", exc, sql) from None

    def execute(self, expression: exp.Expr | str) -> None:
        self._run(expression)

    def fetchall(self, expression: exp.Expr) -> list[tuple[Any, ...]]:
        return list(self._run(expression).fetchall())

    def execute_count(self, expression: exp.Expr) -> int | None:
        count = self._run(expression).rowcount
        return count if count is not None and count >= 0 else None

    def prefers_arrow(self, rows: int) -> bool:
        """Never: the driver moves rows one by one either way (COPY, cursors)."""
        return False

    def fetch_batches(self, expression: exp.Expr, batch_size: int) -> Iterator[pa.RecordBatch]:
        import psycopg
        import pyarrow as pa

        sql = self.render(expression)
        # A server-side cursor needs a transaction, and the connection is in autocommit
        # outside the state's own transactions: WITH HOLD lets it live outside one.
        with self._conn.cursor(name="revseg_stream", withhold=True) as cursor:
            try:
                cursor.execute(sql)
            except psycopg.Error as exc:
                raise WarehouseError.query_failed("PostgreSQL", exc, sql) from None
            names = [d.name for d in cursor.description]
            while rows := cursor.fetchmany(batch_size):
                columns: list[Any] = list(zip(*rows, strict=True)) if rows else [[] for _ in names]
                yield pa.RecordBatch.from_arrays([pa.array(list(c)) for c in columns], names=names)

    def columns(self, table: TableRef) -> list[Column] | None:
        schema: exp.Expr = (
            exp.Literal.string(table.schema or str(self.config["schema"]))
            if (table.schema or self.config.get("schema"))
            else exp.func("current_schema")
        )
        query = (
            exp.select("column_name", "data_type")
            .from_("information_schema.columns")
            .where(exp.EQ(this=exp.column("table_name"), expression=exp.Literal.string(table.name)))
            .where(exp.EQ(this=exp.column("table_schema"), expression=schema))
            .order_by("ordinal_position")
        )
        rows = self.fetchall(query)
        return [Column(name, type_name) for name, type_name in rows] or None

    def query_columns(self, query: exp.Query) -> list[Column]:
        limited = exp.select("*").from_(
            exp.Subquery(this=query.copy(), alias=exp.TableAlias(this=exp.to_identifier("q")))
        ).limit(0)
        cursor = self._run(limited)
        return [Column(d.name, _type_name(self._conn, d.type_code)) for d in cursor.description]

    def insert_arrow(self, table: exp.Table, data: pa.Table) -> None:
        self._copy(table, data.column_names, zip(*(column.to_pylist() for column in data.columns), strict=True))

    def fetch_columns(self, expression: exp.Expr) -> dict[str, list[Any]]:
        cursor = self._run(expression)
        return by_column([d.name for d in cursor.description], cursor.fetchall())

    def insert_columns(self, table: exp.Table, columns: Mapping[str, list[Any]], constants: Mapping[str, Any]) -> None:
        fixed = tuple(constants.values())
        self._copy(table, [*columns, *constants], (row + fixed for row in zip(*columns.values(), strict=True)))

    def _copy(self, table: exp.Table, names: list[str], rows: Iterable[tuple[Any, ...]]) -> None:
        """COPY ``rows`` (tuples in the order of ``names``) into ``table``."""
        from psycopg import sql

        target = sql.SQL(self.render(table))
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(target, sql.SQL(", ").join(map(sql.Identifier, names)))
        try:
            with self._conn.cursor() as cursor, cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
        except Exception as exc:
            raise WarehouseError(f"bulk insert into {self.render(table)} failed: {str(exc).strip()}") from None

    def schema_exists(self, schema: str) -> bool:
        query = exp.select("1").from_("information_schema.schemata").where(
            exp.EQ(this=exp.column("schema_name"), expression=exp.Literal.string(schema))
        )
        return bool(self.fetchall(query))

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """A session-level advisory lock keyed by a hash of ``name`` (concurrent ``CREATE ... IF NOT
        EXISTS`` of one table fails on PostgreSQL's catalog, and an ALTER would run twice)."""
        key = exp.Anonymous(this="hashtextextended", expressions=[exp.Literal.string(name), exp.Literal.number(0)])
        self.execute(exp.select(exp.Anonymous(this="pg_advisory_lock", expressions=[key])))
        try:
            yield
        except BaseException:
            with suppress(WarehouseError):  # a broken session releases it anyway; keep the first error
                self.execute(exp.select(exp.Anonymous(this="pg_advisory_unlock", expressions=[key.copy()])))
            raise
        self.execute(exp.select(exp.Anonymous(this="pg_advisory_unlock", expressions=[key.copy()])))

    def _begin(self) -> None:
        self._conn.execute("BEGIN")

    def _commit(self) -> None:
        self._conn.execute("COMMIT")

    def _rollback(self) -> None:
        self._conn.execute("ROLLBACK")


def _type_name(conn: Any, oid: int) -> str:
    from psycopg.types import TypeInfo

    info = conn.adapters.types.get(oid)
    if info is None:
        fetched = TypeInfo.fetch(conn, oid) if isinstance(oid, str) else None
        return fetched.name if fetched else "unknown"
    return str(info.name)
