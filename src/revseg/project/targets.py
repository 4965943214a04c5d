"""The keys each warehouse type accepts under ``targets:`` (checked for the target in use)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Target(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class DuckDBTarget(_Target):
    type: Literal["duckdb"]
    path: str = "warehouse.duckdb"
    schema_: str | None = Field(default=None, alias="schema")
    #: SQL scripts run once, when the database file does not exist yet (demo data)
    seed: list[str] = Field(default_factory=list)
    read_only: bool = False
    #: seconds to wait when another process has the database file open
    lock_timeout: float = 30.0
    #: DuckDB's ``memory_limit`` for revseg's connection (e.g. ``2GB``); null: DuckDB's own
    #: default, 80% of the machine's memory. Above it DuckDB spills to its temp directory.
    memory_limit: str | None = "192MB"


class PostgresTarget(_Target):
    type: Literal["postgres"]
    host: str = "127.0.0.1"
    port: int = 5432
    user: str | None = None
    password: str | None = None
    database: str = Field(default="postgres", alias="database")
    schema_: str | None = Field(default=None, alias="schema")
    sslmode: str | None = None
    connect_timeout: int = 10


class SnowflakeTarget(_Target):
    type: Literal["snowflake"]
    account: str
    user: str | None = None
    password: str | None = None
    database: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    warehouse: str | None = None
    role: str | None = None


class BigQueryTarget(_Target):
    type: Literal["bigquery"]
    project: str
    dataset: str
    location: str | None = None
    api_endpoint: str | None = None
    credentials_path: str | None = None


class DatabricksTarget(_Target):
    type: Literal["databricks"]
    schema_: str | None = Field(default=None, alias="schema")
    catalog: str | None = None
    host: str | None = None
    http_path: str | None = None
    token: str | None = None
    master: str | None = None


TARGET_TYPES: dict[str, type[_Target]] = {
    "duckdb": DuckDBTarget,
    "postgres": PostgresTarget,
    "snowflake": SnowflakeTarget,
    "bigquery": BigQueryTarget,
    "databricks": DatabricksTarget,
}

#: the sqlglot dialect of each target type (the default ``sql_dialect``)
DIALECTS = {
    "duckdb": "duckdb",
    "postgres": "postgres",
    "snowflake": "snowflake",
    "bigquery": "bigquery",
    "databricks": "databricks",
}


def target_config(model: _Target) -> dict[str, Any]:
    """The validated target as a plain dict, keyed as the user wrote it."""
    return model.model_dump(by_alias=True)
