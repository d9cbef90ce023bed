"""Small patches over fakesnow 0.12.1 gaps that dlt's Snowflake destination runs into.

Each fixes how fakesnow parses a statement or argument that real Snowflake accepts; none
changes what the pipeline does. They apply only inside this test lane.
"""

from __future__ import annotations

import os
import re
from typing import Any

import dlt
import fakesnow.conn
import fakesnow.cursor


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
    # fakesnow runs one statement per execute(): tell dlt not to batch statements. Its JSON
    # COPY ignores MATCH_BY_COLUMN_NAME, so dlt's own state table goes as parquet too (the
    # pipeline's tables already do).
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


def install_shims() -> None:
    _patch_connect_schema()
    _patch_destination_capabilities()
    _patch_execute()
