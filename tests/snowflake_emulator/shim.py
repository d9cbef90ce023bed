"""Small patches over fakesnow 0.12.1 gaps that dlt's Snowflake destination runs into.

Each fixes how fakesnow parses a statement or argument that real Snowflake accepts; none
changes what the pipeline does. They apply only inside this test lane. Besides:
  * every statement is logged as sent ($FAKESNOW_SQL_LOG, JSON lines), so tests check the
    SQL itself (fakesnow reports any tz-aware column as TIMESTAMP_TZ, whatever the DDL said);
  * session query tags are read as Snowflake reads the literal (literals.py) and logged
    ($FAKESNOW_QUERY_TAG_LOG); a malformed literal fails the statement, as on Snowflake;
  * REMOVE deletes staged files (fakesnow has no REMOVE);
  * with an account (account.py, DB_DIR/account.json from the bootstrap) the connection is
    strict: the login is checked, nothing is created on connect, CREATE SCHEMA needs its
    grant, and CURRENT_ROLE()/CURRENT_WAREHOUSE()/CURRENT_DATABASE() answer as granted.
    Without one, those functions answer what the connection asked for.
"""

from __future__ import annotations

import copy
import json
import os
import re
import threading
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import fakesnow.conn
import fakesnow.copy_into
import fakesnow.cursor
import snowflake.connector.errors
import sqlglot
from account import Account, AccountError, Session
from fakesnow.transforms import stage
from literals import decode, read_literal


def _unqualified_schema(schema: str | None) -> str | None:
    # dlt connects with schema='"CHESS"."CHESS"' (database-qualified, quoted); Snowflake
    # accepts it, fakesnow would create a schema literally named that.
    if schema and "." in schema:
        schema = schema.rsplit(".", 1)[-1]
    return schema.strip('"') if schema else schema


# The lane's DB_DIR (install_sql_shims): where DB_DIR/account.json makes the emulator strict.
DB_DIR: Path | None = None
# serve.py's login, for the connection fakesnow's login_request opens in the same request:
# {"user", "role", "warehouse", "password": bool, "key_error": str | None}.
PENDING_LOGIN: ContextVar[dict[str, Any] | None] = ContextVar("pending_login", default=None)


def _login_of(kwargs: dict[str, Any]) -> dict[str, Any]:
    """An in-process login (snowflake.connector.connect's kwargs, as dlt passes them)."""
    key = kwargs.get("private_key")
    return {
        "user": kwargs.get("user"),
        "role": kwargs.get("role"),
        "warehouse": kwargs.get("warehouse"),
        "password": key is None,
        "private_key": key,
    }


def _key_error(account: Account, login: dict[str, Any]) -> str | None:
    """In process there is no JWT: compare the private key's public half with the user's
    RSA_PUBLIC_KEY (what verifying the JWT's signature establishes)."""
    if "key_error" in login:
        return login["key_error"]
    from cryptography.hazmat.primitives import serialization as s

    registered = account.public_key(login["user"])
    key = login.get("private_key")
    if registered is None or key is None:
        return "no key"
    if isinstance(key, str):
        private = s.load_pem_private_key(key.encode(), None)
    elif isinstance(key, bytes):
        private = s.load_der_private_key(key, None)
    else:
        private = key
    public = private.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo)
    same = public.decode().split() == registered.split()
    return None if same else "the private key is not the pair of the user's RSA_PUBLIC_KEY"


def _patch_connect_schema() -> None:
    original = fakesnow.conn.FakeSnowflakeConnection.__init__

    def init(self: Any, duck_conn: Any, results_cache: Any, database: Any = None,
             schema: Any = None, *args: Any, **kwargs: Any) -> None:  # fmt: skip
        account = Account.load(DB_DIR) if DB_DIR else None
        login = PENDING_LOGIN.get() or _login_of(kwargs)
        wanted = database and database.strip('"').upper()
        if login.get("admin"):  # an administrator's session (run_on_fakesnow --admin/--query)
            if account is not None:
                kwargs["create_database"] = (
                    bool(wanted) and (Path(DB_DIR) / f"{wanted}.db").exists()
                )
                kwargs["create_schema"] = False
            account, session = None, None
        elif account is not None:
            # Strict: nothing is created on connect; a database exists if CREATE DATABASE
            # made its file (fakesnow attaches it only when told it may create it).
            exists = bool(wanted) and (Path(DB_DIR) / f"{wanted}.db").exists()
            kwargs["create_database"] = exists
            kwargs["create_schema"] = False
            try:
                session = account.login(
                    login["user"], role=login["role"], warehouse=login["warehouse"],
                    database=database, database_exists=exists, password=login["password"],
                    key_error=None if login["password"] else _key_error(account, login),
                )  # fmt: skip
            except AccountError as exc:
                raise snowflake.connector.errors.DatabaseError(
                    msg=exc.message, errno=exc.errno, sqlstate=exc.sqlstate
                ) from None
        else:
            upper = lambda v: v and v.strip('"').upper()  # noqa: E731
            session = Session(
                upper(login["user"] or ""), upper(login["role"]) or "PUBLIC",
                upper(login["warehouse"]), wanted or None,
            )  # fmt: skip
        self._fs_account = account
        self._fs_session = session
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


QUERY_TAG = re.compile(r"^\s*ALTER SESSION (?P<unset>UN)?SET QUERY_TAG\b(?P<rest>.*)$", re.I | re.S)
CURRENT = re.compile(r"\bCURRENT_(?P<what>ROLE|WAREHOUSE|DATABASE)\s*\(\s*\)", re.I)
CREATE_SCHEMA = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:TRANSIENT\s+)?SCHEMA\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r'(?P<name>(?:"[^"]+"|[\w$]+)(?:\.(?:"[^"]+"|[\w$]+))?)',
    re.I,
)
REMOVE = re.compile(r"^\s*(?:REMOVE|RM)\s+(?P<target>'.*'|@\S+)\s*;?\s*$", re.I | re.S)


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


def query_tag_value(command: str) -> str | None:
    """The tag an `ALTER SESSION SET QUERY_TAG = '…'` gives the session, read as Snowflake
    reads the literal (literals.py: `\\"` is `"`, `''` is `'`); None for UNSET. ValueError
    if the statement is not well-formed (an unbalanced quote ends the literal early)."""
    match = QUERY_TAG.match(command)
    if match is None:
        raise ValueError("not a QUERY_TAG statement")
    if match.group("unset"):
        return None
    rest = match.group("rest")
    equals = re.match(r"\s*=\s*", rest)
    if not equals:
        raise ValueError(f"QUERY_TAG without a value: {command!r}")
    value, end = read_literal(rest, equals.end())
    if rest[end:].strip().rstrip(";").strip():
        raise ValueError(f"text after the QUERY_TAG literal: {rest[end:]!r}")
    return value


_LOG_LOCK = threading.Lock()  # dlt loads from several threads: one line at a time


def _log(variable: str, line: str) -> None:
    path = os.environ.get(variable)
    if path:
        with _LOG_LOCK, open(path, "a") as out:
            out.write(line + "\n")


def _current(session: Session | None, command: str) -> str:
    """CURRENT_ROLE()/CURRENT_WAREHOUSE()/CURRENT_DATABASE() as the session has them
    (fakesnow answers DuckDB's user and catalog, and has no CURRENT_WAREHOUSE)."""
    if session is None:
        return command

    def value(match: re.Match[str]) -> str:
        found = getattr(session, match.group("what").lower())
        return "CAST(NULL AS VARCHAR)" if found is None else "'" + found.replace("'", "''") + "'"

    return CURRENT.sub(value, command)


def _remove(cursor: Any, command: str) -> str:
    """REMOVE '@"S"."%T"/"path"' (https://docs.snowflake.com/en/sql-reference/sql/remove):
    delete the files of that stage under the path prefix; fakesnow has no REMOVE. Returns the
    statement that gives Snowflake's result (one row per file: name, result)."""
    target = REMOVE.match(command).group("target")  # type: ignore[union-attr]
    location = decode(target) if target.startswith("'") else target
    stage_ref, _, path = location.removeprefix("@").partition("/")
    conn = cursor._conn
    catalog, schema, stage_name = stage.parts_from_var(stage_ref, conn.database, conn._schema)
    root = Path(stage.internal_dir(f"{catalog}.{schema}.{stage_name}"))
    prefix = "/".join(part.strip('"') for part in path.split("/")) if path else ""
    removed = []
    if root.is_dir():
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            relative = file.relative_to(root).as_posix()
            if relative.startswith(prefix):
                file.unlink()
                removed.append(relative)
    if not removed:
        return "SELECT 'x' AS \"name\", 'removed' AS \"result\" WHERE FALSE"
    rows = " UNION ALL ".join(
        f"SELECT '{name.replace(chr(39), chr(39) * 2)}' AS \"name\", 'removed' AS \"result\""
        for name in removed
    )
    return rows


def _patch_execute() -> None:
    # fakesnow does not implement session query tags: accept them, and append each tag (as
    # Snowflake would store it) to $FAKESNOW_QUERY_TAG_LOG, for what a DBA would see in
    # QUERY_HISTORY. $FAKESNOW_SQL_LOG gets every statement as sent (JSON lines), so tests
    # check the SQL itself (e.g. the DDL's types) rather than what fakesnow makes of it.
    original = fakesnow.cursor.FakeSnowflakeCursor.execute

    def execute(self: Any, command: str, *args: Any, **kwargs: Any) -> Any:
        _log("FAKESNOW_SQL_LOG", json.dumps({"sql": command}))
        session: Session | None = getattr(self._conn, "_fs_session", None)
        account: Account | None = getattr(self._conn, "_fs_account", None)
        if QUERY_TAG.match(command):
            try:
                tag = query_tag_value(command)
            except ValueError as exc:
                raise snowflake.connector.errors.ProgrammingError(
                    msg=f"SQL compilation error: {exc}", errno=1003, sqlstate="42000"
                ) from None
            if tag is not None:
                _log("FAKESNOW_QUERY_TAG_LOG", tag.replace("\n", "\\n"))
            return original(self, "SELECT 'Statement executed successfully.' AS status")
        if REMOVE.match(command):
            return original(self, _remove(self, command))
        if account is not None and session is not None and (match := CREATE_SCHEMA.match(command)):
            parts = match.group("name").split(".")
            database = parts[0].strip('"') if len(parts) == 2 else (self._conn.database or "")
            error = account.create_schema_error(session, database.upper())
            if error is not None:
                raise snowflake.connector.errors.ProgrammingError(
                    msg=error.message, errno=error.errno, sqlstate=error.sqlstate
                )
        return original(self, rewrite(_current(session, command)), *args, **kwargs)

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


def install_sql_shims(db_dir: Path | None = None) -> None:
    """The SQL-side fixes alone: what fakesnow's server needs (serve.py); the client is real.
    `db_dir`: the lane's DB_DIR, whose account.json (account.py) makes the emulator strict."""
    global DB_DIR
    DB_DIR = Path(db_dir) if db_dir else None
    _patch_connect_schema()
    _patch_execute()
    _patch_json_match_by_column_name()


def install_shims(db_dir: Path | None = None) -> None:
    install_sql_shims(db_dir)
    _patch_destination_capabilities()
