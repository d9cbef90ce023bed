"""Where the data goes: DuckDB for development, Snowflake for production.

Builds the dlt destination for a pipeline and checks it before any request to the source
(credentials complete, private key readable, account reachable, DuckDB directory there):
errors name the setting, never its value.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException

DESTINATIONS = ("snowflake", "duckdb")
SNOWFLAKE_ENV = "DESTINATION__SNOWFLAKE__CREDENTIALS__"
DUCKDB_ENV = "DESTINATION__DUCKDB__CREDENTIALS"
SNOWFLAKE_REQUIRED = ("DATABASE", "HOST", "USERNAME")
SNOWFLAKE_AUTH = ("PASSWORD", "PRIVATE_KEY", "PRIVATE_KEY_PATH")
# Parquet keeps types exact on the way in (tz-aware timestamps, booleans, 64-bit ints),
# is compressed for the PUT to the stage, and COPY INTO matches its columns by name.
LOADER_FILE_FORMAT = "parquet"
# Every pipeline's QUERY_TAG names this repository (the platform); `pipeline` says which one.
QUERY_TAG_APP = "chess-pipelines"


class DestinationError(Exception):
    """The destination cannot be used as configured; the message says what to change."""


class DestinationBusy(DestinationError):
    """Another process holds the destination (a locked DuckDB file): try again later."""


def query_tag(pipeline_name: str, execution_id: str | None) -> str:
    """Snowflake QUERY_TAG template: dlt fills in the {placeholders} per operation.

    JSON, so that a DBA can filter QUERY_HISTORY with `try_parse_json(query_tag):pipeline`.
    """
    tag = {
        "app": QUERY_TAG_APP,
        "pipeline": pipeline_name,
        "table": "{table}",
        "load_id": "{load_id}",
    }
    if execution_id:
        tag["kestra_execution_id"] = execution_id
    # Escape braces for str.format, keep dlt's placeholders; drop quotes Snowflake would reject.
    text = json.dumps(tag, separators=(",", ":")).replace("'", "")
    text = text.replace("{", "{{").replace("}", "}}")
    return text.replace("{{table}}", "{table}").replace("{{load_id}}", "{load_id}")


def duckdb_file(pipeline_name: str) -> Path:
    """The local default: `<pipeline name>.duckdb` in the current directory."""
    return Path.cwd() / f"{pipeline_name}.duckdb"


def make_destination(name: str, pipeline_name: str, execution_id: str | None = None) -> Any:
    if name == "duckdb":
        if os.environ.get(DUCKDB_ENV):
            return dlt.destinations.duckdb()
        return dlt.destinations.duckdb(credentials=str(duckdb_file(pipeline_name)))
    return dlt.destinations.snowflake(
        # TIMESTAMP_TZ rather than dlt's default TIMESTAMP_LTZ: the offset is stored with
        # each value, so results do not depend on the session's TIMEZONE.
        use_timestamp_tz=True,
        query_tag=query_tag(pipeline_name, execution_id),
    )


def check_destination(pipeline: dlt.Pipeline) -> None:
    """Fail fast, before any request to the source, with the setting to fix."""
    try:
        client = pipeline.destination_client()
    except ConfigFieldMissingException as exc:
        required = ", ".join(SNOWFLAKE_ENV + f for f in SNOWFLAKE_REQUIRED)
        auth = " or ".join(SNOWFLAKE_ENV + f for f in SNOWFLAKE_AUTH)
        first_line = str(exc).splitlines()[0]
        raise DestinationError(
            f"{pipeline.destination.destination_name} credentials are incomplete "
            f"({first_line}).\n  Set {required} and {auth} "
            "(optionally ...__WAREHOUSE and ...__ROLE),\n"
            "  or load locally with --destination duckdb."
        ) from None
    if pipeline.destination.destination_name == "duckdb":
        _check_duckdb_file(str(client.config.credentials.database))
        return
    if pipeline.destination.destination_name != "snowflake":
        return
    try:
        client.config.credentials.to_connector_params()
    except Exception:
        raise DestinationError(
            f"{SNOWFLAKE_ENV}PRIVATE_KEY (or ..._PRIVATE_KEY_PATH) is not a readable private "
            "key: expected PEM text or base64 of PEM/DER, and "
            f"{SNOWFLAKE_ENV}PRIVATE_KEY_PASSPHRASE if the key is encrypted."
        ) from None
    try:
        with pipeline.sql_client() as sql:
            sql.execute_sql("SELECT 1")
    except Exception as exc:
        raise DestinationError(
            f"cannot connect to Snowflake ({type(exc).__name__}): check the account identifier "
            f"in {SNOWFLAKE_ENV}HOST (e.g. myorg-myaccount, without .snowflakecomputing.com), "
            f"{SNOWFLAKE_ENV}USERNAME and the credentials."
        ) from None


def _check_duckdb_file(database: str) -> None:
    """DuckDB creates the file but not its directory: say so before anything is fetched."""
    if database.startswith(":") or "://" in database:  # :memory:, md:, URLs: not a path
        return
    directory = Path(database).parent
    if not directory.is_dir():
        raise DestinationError(
            f"DuckDB file {database!r}: directory {str(directory)!r} does not exist "
            f"(set {DUCKDB_ENV} to a path in an existing directory, or create it)"
        )
    if not os.access(directory, os.W_OK):
        raise DestinationError(
            f"DuckDB file {database!r}: directory {str(directory)!r} is not writable ({DUCKDB_ENV})"
        )
    if not os.path.lexists(database):
        return  # DuckDB creates it
    import duckdb  # only for this destination

    try:
        duckdb.connect(database).close()
    except duckdb.Error as exc:
        problem = duckdb_problem(str(exc), database, opening=True) or DestinationError(
            f"DuckDB file {database!r} cannot be opened: {exc}"
        )
        raise type(problem)(f"{problem} Nothing was requested or loaded.") from None


# DuckDB names the holder: `Conflicting lock is held in /usr/bin/python3 (PID 4242)`.
_DUCKDB_LOCK = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")


def duckdb_problem(
    message: str, database: str | None = None, opening: bool = False
) -> DestinationError | None:
    """What a DuckDB error on opening its file means, in words an operator can act on (a
    lock held by another process, a file that is not a DuckDB database, or, when `opening`
    the database file itself, one that cannot be read), or None for any other error. dlt
    wraps these in "check if you configured the credentials", which they are not about."""
    path = re.search(r'file "([^"]+)"', message)
    shown = repr(database or (path.group(1) if path else "?"))
    lock = _DUCKDB_LOCK.search(message)
    if "Could not set lock" in message:
        holder = f"PID {lock.group('pid')}, {lock.group('program')}" if lock else "not named"
        return DestinationBusy(
            f"DuckDB file {shown} is locked by another process ({holder}): close that "
            "connection or wait for it to end, then run again."
        )
    if "not a valid DuckDB database file" in message:
        return DestinationError(
            f"DuckDB file {shown} exists but is not a DuckDB database: point {DUCKDB_ENV} "
            "at the pipeline's DuckDB file, or at a new path to start one."
        )
    # Only when opening the database: a load reads other files (its parquet jobs) too.
    unreadable = ("Is a directory", "Permission denied", "Could not read from file")
    if opening and any(marker in message for marker in unreadable):
        reason = next(m for m in unreadable if m in message)
        return DestinationError(
            f"DuckDB file {shown} cannot be read ({reason}): check the path and its "
            f"permissions ({DUCKDB_ENV})."
        )
    return None


def missing_tables(pipeline: dlt.Pipeline) -> list[str]:
    """Tables the pipeline's schemas say were loaded (data tables that have seen data, as
    stored with the state in the destination) that the destination no longer has, e.g.
    dropped by hand. Loading on would skip their data as already done (the state says so)
    and the first new rows would fail on the missing table. Destinations that cannot list
    their tables (no `get_storage_tables`) report none."""
    missing: list[str] = []
    for name in pipeline.schema_names:
        expected = pipeline.schemas[name].data_table_names(seen_data_only=True)
        if not expected:
            continue
        with pipeline.destination_client(name) as client:
            storage_tables = getattr(client, "get_storage_tables", None)
            if storage_tables is None:
                continue
            missing += [table for table, columns in storage_tables(expected) if not columns]
    return sorted(missing)
