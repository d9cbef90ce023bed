"""Small patches over fakesnow 0.12.1 gaps that dlt's Snowflake destination runs into.

Each fixes how fakesnow parses a statement or argument that real Snowflake accepts; none
changes what the pipeline does. They apply only inside this test lane.
"""

from __future__ import annotations

import copy
import os
import re
import threading
from typing import Any

import fakesnow.conn
import fakesnow.copy_into
import fakesnow.cursor
import sqlglot


def _unqualified_schema(schema: str | None) -> str | None:
    # dlt connects with schema='"CHESS"."CHESS"' (database-qualified, quoted); Snowflake
    # accepts it, fakesnow would create a schema literally named that.
    if schema and "." in schema:
        schema = schema.rsplit(".", 1)[-1]
    return schema.strip('"') if schema else schema


def _patch_connect_schema() -> None:
    original = fakesnow.conn.FakeSnowflakeConnection.__init__

    def init(self: Any, duck_conn: Any, results_cache: Any, database: Any = None,
             schema: Any = None, *args: Any, **kwargs: Any) -> None:  # fmt: skip
        original(
            self, duck_conn, results_cache, database, _unqualified_schema(schema), *args, **kwargs
        )

    fakesnow.conn.FakeSnowflakeConnection.__init__ = init  # type: ignore[method-assign]


def _patch_destination_capabilities() -> None:
    # In process, fakesnow runs one statement per execute(): tell dlt not to batch statements.
    # dlt's own state table goes as parquet too, as this lane was first proven (JSON by column
    # name now works as well: _patch_json_match_by_column_name, which the server relies on).
    # dlt is imported here: the server (serve.py) needs no dlt.
    import dlt

    original = dlt.destinations.snowflake

    def snowflake(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("supports_multiple_statements", False)
        kwargs.setdefault("preferred_loader_file_format", "parquet")
        return original(*args, **kwargs)

    dlt.destinations.snowflake = snowflake  # type: ignore[misc]


QUERY_TAG = re.compile(
    r"^\s*ALTER SESSION (UN)?SET QUERY_TAG(\s*=\s*'(?P<tag>.*)')?\s*;?\s*$", re.I | re.S
)


# PUT 'file://...' '@"SCHEMA"."%TABLE"/"load_id"': Snowflake takes the stage as a quoted
# string, fakesnow only as a bare @stage with an unquoted path.
PUT_STAGE = re.compile(r"^(PUT\s+'[^']+'\s+)'(@[^/']+)/\"([^\"']+)\"'", re.I)


# COPY INTO ... FROM '@"S"."%T"/"load_id"/file': the same stage path, as PUT stored it.
COPY_FROM = re.compile(r"(FROM\s+'@[^/']+)/\"([^\"']+)\"/", re.I)
# FILE_FORMAT = (TYPE = 'JSON', BINARY_FORMAT = 'BASE64'): fakesnow wants no commas.
FILE_FORMAT = re.compile(r"FILE_FORMAT\s*=\s*\(([^)]*)\)", re.I)
# MATCH_BY_COLUMN_NAME='CASE_INSENSITIVE': fakesnow wants the keyword unquoted.
MATCH_BY = re.compile(r"MATCH_BY_COLUMN_NAME\s*=\s*'(\w+)'", re.I)


def rewrite(command: str) -> str:
    """Snowflake SQL that dlt emits -> the equivalent fakesnow parses."""
    command = PUT_STAGE.sub(r"\1\2/\3", command)
    command = COPY_FROM.sub(r"\1/\2/", command)
    command = FILE_FORMAT.sub(lambda m: f"FILE_FORMAT = ({m.group(1).replace(',', ' ')})", command)
    return MATCH_BY.sub(r"MATCH_BY_COLUMN_NAME = \1", command)


def _patch_execute() -> None:
    # fakesnow does not implement session query tags: accept them, and append each tag to
    # $FAKESNOW_QUERY_TAG_LOG so tests can check what a DBA would see in QUERY_HISTORY.
    original = fakesnow.cursor.FakeSnowflakeCursor.execute

    def execute(self: Any, command: str, *args: Any, **kwargs: Any) -> Any:
        match = QUERY_TAG.match(command)
        if not match:
            return original(self, rewrite(command), *args, **kwargs)
        log = os.environ.get("FAKESNOW_QUERY_TAG_LOG")
        if log and match.group("tag") is not None:
            with open(log, "a") as out:
                out.write(match.group("tag") + "\n")
        return original(self, "SELECT 'Statement executed successfully.' AS status")

    fakesnow.cursor.FakeSnowflakeCursor.execute = execute  # type: ignore[method-assign]


class _JsonMatchByName(threading.local):
    """The COPY in progress on this thread, when it loads JSON by column name."""

    columns: list[str] | None = None
    case_sensitive = False
    duck_conn: Any = None


_json_copy = _JsonMatchByName()


def _patch_json_match_by_column_name() -> None:
    # COPY INTO t FROM @stage FILE_FORMAT = (TYPE = JSON) MATCH_BY_COLUMN_NAME = ...: Snowflake
    # loads each object's keys into the columns of the same name; fakesnow 0.12.1 only knows
    # JSON into one VARIANT column (copy_into.py: ReadJSON, _inserts). dlt's own state table
    # goes as JSON unless the client is told otherwise, which a real client is not (serve.py).
    original_copy_into = fakesnow.cursor.copy_into
    original_inserts = fakesnow.copy_into._inserts

    def copy_into(duck_conn: Any, database: Any, schema: Any, expr: Any, *args: Any) -> Any:
        # A copy of the bound params: _params pops a placeholder, the real COPY reads them again.
        cparams = fakesnow.copy_into._params(
            expr, copy.copy(args[1]) if len(args) > 1 else None, duck_conn=duck_conn,
            current_database=database, current_schema=schema,
        )  # fmt: skip
        match = fakesnow.copy_into.MatchByColumnName
        by_name = cparams.match_by_column_name != match.NONE
        subquery = isinstance(expr.args["files"][0], sqlglot.exp.Subquery)
        if (
            by_name
            and not subquery
            and isinstance(cparams.file_format, fakesnow.copy_into.ReadJSON)
        ):
            table = fakesnow.copy_into._extract_table(expr.this)
            _json_copy.columns = fakesnow.copy_into._get_table_columns(
                table, duck_conn, database, table.db or schema
            )
            _json_copy.case_sensitive = cparams.match_by_column_name == match.CASE_SENSITIVE
            _json_copy.duck_conn = duck_conn
        try:
            return original_copy_into(duck_conn, database, schema, expr, *args)
        finally:
            _json_copy.columns = _json_copy.duck_conn = None

    def inserts(expr: Any, params: Any, urls: list[str], *args: Any) -> Any:
        if _json_copy.columns is None:
            return original_inserts(expr, params, urls, *args)
        return [_json_insert(expr.this, url, _json_copy.columns) for url in urls]

    fakesnow.cursor.copy_into = copy_into
    fakesnow.copy_into._inserts = inserts


def _json_insert(target: Any, url: str, columns: list[str]) -> Any:
    """INSERT BY NAME of the keys matching the table's columns (dlt asks CASE_INSENSITIVE);
    the values as JSON text, cast by DuckDB to each column's type."""
    source = fakesnow.copy_into.ReadJSON().read_expression(url).sql(dialect="duckdb")
    keys = [
        k
        for (k,) in _json_copy.duck_conn.execute(
            f"SELECT DISTINCT unnest(json_keys(json)) FROM {source}"
        ).fetchall()
    ]
    fold = str if _json_copy.case_sensitive else str.upper
    by_name = {fold(k): k for k in keys}
    matched = [(c, by_name[fold(c)]) for c in columns if fold(c) in by_name]
    if not matched:
        raise NotImplementedError(f"JSON COPY by column name with no key matching {columns}")
    select = ", ".join(
        f'json_extract_string(json, {_json_path(key)}) AS "{column}"' for column, key in matched
    )
    return sqlglot.parse_one(
        f"INSERT INTO {target.sql(dialect='duckdb')} BY NAME SELECT {select} FROM {source}",
        read="duckdb",
    )


def _json_path(key: str) -> str:
    return "'$.\"" + key.replace("'", "''").replace('"', '\\"') + "\"'"


def install_sql_shims() -> None:
    """The SQL-side fixes alone: what fakesnow's server needs (serve.py); the client is real."""
    _patch_connect_schema()
    _patch_execute()
    _patch_json_match_by_column_name()


def install_shims() -> None:
    install_sql_shims()
    _patch_destination_capabilities()
