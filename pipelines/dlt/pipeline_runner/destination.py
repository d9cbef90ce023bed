"""Where the data goes: DuckDB for development, Snowflake for production.

Builds the dlt destination for a pipeline and checks it before any request to the source
(credentials complete, private key readable, login accepted, role, warehouse and database
usable; DuckDB directory there): errors name the setting, never a secret's value.
"""

from __future__ import annotations

import base64
import binascii
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
SNOWFLAKE_AUTH = ("PRIVATE_KEY", "PRIVATE_KEY_PATH", "PASSWORD")
# The one-time account setup (role, service user, grants), relative to pipelines/dlt/.
BOOTSTRAP_SQL = "snowflake/bootstrap.sql"
# What the preflight reads; none of it needs a warehouse (it runs before one is known usable).
PREFLIGHT_SQL = "SELECT CURRENT_ROLE(), CURRENT_WAREHOUSE(), CURRENT_DATABASE()"
# Parquet keeps types exact on the way in (tz-aware timestamps, booleans, 64-bit ints),
# is compressed for the PUT to the stage, and COPY INTO matches its columns by name.
LOADER_FILE_FORMAT = "parquet"
# Every pipeline's QUERY_TAG names this repository (the platform); `pipeline` says which one.
QUERY_TAG_APP = "chess-pipelines"


HISTORY_SCHEMA = "pipeline_runs"  # pipeline_runner.history's own schema


class DestinationError(Exception):
    """The destination cannot be used as configured; the message says what to change."""


class DestinationBusy(DestinationError):
    """Another process holds the destination (a locked DuckDB file): try again later."""


def query_tag(pipeline_name: str, execution_id: str | None) -> str:
    """Snowflake QUERY_TAG template: dlt fills in the {placeholders} per operation.

    JSON, so that a DBA can filter QUERY_HISTORY with `try_parse_json(query_tag):pipeline`.
    dlt 1.31 formats it and puts it between single quotes as it is (snowflake/sql_client.py
    `_tag_session`: `ALTER SESSION SET QUERY_TAG = '{tag}'`), and Snowflake reads backslash
    escapes in such a literal (https://docs.snowflake.com/en/sql-reference/data-types-text
    #escape-sequences-in-single-quoted-string-constants): so the template is written as the
    literal's body, backslashes and single quotes doubled, and Snowflake stores the JSON as
    json.dumps wrote it. dlt's own values ({table}: a normalized table name, {load_id}: digits
    and a dot) need no escaping.
    """
    tag = {
        "app": QUERY_TAG_APP,
        "pipeline": pipeline_name,
        "table": "{table}",
        "load_id": "{load_id}",
    }
    if execution_id:
        tag["kestra_execution_id"] = execution_id
    text = json.dumps(tag, separators=(",", ":"))
    text = text.replace("\\", "\\\\").replace("'", "''")
    # Escape braces for str.format, keep dlt's placeholders.
    text = text.replace("{", "{{").replace("}", "}}")
    return text.replace("{{table}}", "{table}").replace("{{load_id}}", "{load_id}")


def tag_session(sql: Any, pipeline_name: str) -> None:
    """Tag a session the script opens itself (the preflight, the views) with the same
    QUERY_TAG as dlt's own sessions, no table and no load id. dlt's SQL client runs the
    ALTER SESSION on Snowflake; on DuckDB it only stores the values."""
    sql.set_query_tags(
        {"source": "", "resource": "", "table": "", "load_id": "", "pipeline_name": pipeline_name}
    )


def duckdb_file(pipeline_name: str) -> Path:
    """The local default: `<pipeline name>.duckdb` in the current directory."""
    return Path.cwd() / f"{pipeline_name}.duckdb"


def duckdb_dataset_clash(pipeline_name: str, dataset: str) -> str | None:
    """What is wrong when the dataset is named like the DuckDB file, else None.

    DuckDB names a file's catalog after the file: a dataset (schema) of the same name makes
    every table reference ambiguous ("Binder Error: Ambiguous reference to catalog or
    schema") and the first load fails after the whole extract."""
    if os.environ.get(DUCKDB_ENV):
        return None
    catalog = duckdb_file(pipeline_name).stem
    if dataset.lower() != catalog.lower():
        return None
    return (
        f"dataset {dataset!r} is also the name of the DuckDB file {catalog}.duckdb: DuckDB "
        "cannot tell the schema from the file's catalog; give the pipeline (run_pipeline "
        "name=) or the dataset (--dataset) another name"
    )


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
        # Remove each file from the table stage once COPY INTO has loaded it (dlt runs REMOVE
        # in the load's transaction): staged files are billed storage, dlt's default keeps
        # them forever, and nothing reads them again (COPY's load metadata would even skip a
        # file already loaded). The local copy goes too (delete_completed_jobs, config.toml).
        keep_staged_files=False,
    )


def check_destination(pipeline: dlt.Pipeline) -> None:
    """Fail fast, before any request to the source, with the setting to fix."""
    snowflake = pipeline.destination.destination_name == "snowflake"
    if snowflake:
        _hand_private_key_to_dlt()
    try:
        client = pipeline.destination_client()
    except ConfigFieldMissingException as exc:
        required = ", ".join(SNOWFLAKE_ENV + f for f in SNOWFLAKE_REQUIRED)
        auth = " or ".join(SNOWFLAKE_ENV + f for f in SNOWFLAKE_AUTH)
        first_line = str(exc).splitlines()[0]
        raise DestinationError(
            f"{pipeline.destination.destination_name} credentials are incomplete "
            f"({first_line}).\n  Set {required} and {auth} (a key pair; PASSWORD only "
            "for a programmatic access token), ...__WAREHOUSE and ...__ROLE,\n"
            "  or load locally with --destination duckdb."
        ) from None
    except ValueError:  # dlt reads PRIVATE_KEY_PATH while resolving the credentials
        raise DestinationError(_key_problem("")) from None
    if pipeline.destination.destination_name == "duckdb":
        _check_duckdb_file(str(client.config.credentials.database))
        return
    if not snowflake:
        return
    credentials = client.config.credentials
    try:
        credentials.to_connector_params()
    except Exception as exc:
        raise DestinationError(_key_problem(str(exc))) from None
    sql = pipeline.sql_client()
    try:
        sql.open_connection()
    except Exception as exc:
        raise DestinationError(login_problem(exc, credentials)) from None
    try:
        tag_session(sql, pipeline.pipeline_name)
        ((role, warehouse, database),) = sql.execute_sql(PREFLIGHT_SQL)
        problems = session_problems(credentials, role, warehouse, database)
        if not problems:
            problems = dataset_problems(sql, role or "PUBLIC", database)
    except Exception as exc:
        raise DestinationError(
            f"the Snowflake preflight ({PREFLIGHT_SQL}) failed: {str(exc).splitlines()[0]}"
        ) from None
    finally:
        sql.close_connection()
    if problems:
        raise DestinationError(
            "Snowflake is not set up for this pipeline (nothing was requested or loaded):\n  - "
            + "\n  - ".join(problems)
            + f"\n  The setup is {BOOTSTRAP_SQL} (pipelines/snowflake.md)."
        )


# -- Snowflake: private key ---------------------------------------------------------------

KEY_FORMS = (
    "PEM (PKCS#8 `BEGIN PRIVATE KEY` or `BEGIN ENCRYPTED PRIVATE KEY`, or traditional `BEGIN "
    "RSA PRIVATE KEY`, encrypted or not) as text, on one line with literal \\n, or base64 of "
    "it; or base64 of DER"
)


def _setting(key: str) -> Any:
    """A Snowflake credential as dlt would resolve it (env, then secrets.toml/config.toml)."""
    name = f"destination.snowflake.credentials.{key}"
    return dlt.secrets.get(name) or dlt.config.get(name)


def private_key_for_dlt(raw: bytes) -> str | None:
    """The private key in the form dlt 1.31 reads whatever form it came in: base64 of its PEM
    or DER bytes (dlt base64-decodes it, then loads DER or PEM: common/libs/cryptography.py
    `decode_private_key`). As given, dlt fails on a traditional encrypted PEM (its PEM_REGEX
    allows no `Proc-Type:`/`DEK-Info:` header), on PEM with literal `\\n` (a one-line
    secret), on base64 with line breaks (`validate=True`) and on a DER file (it reads the
    file as ASCII). None: `raw` is not recognisably a key (dlt's own error follows)."""
    if b"-----BEGIN" in raw:
        try:
            pem = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            return None
        pem = pem.replace("\\r\\n", "\n").replace("\\n", "\n").replace("\r\n", "\n")
        return base64.b64encode(pem.encode("ascii") + b"\n").decode()
    compact = re.sub(rb"\s+", b"", raw)
    if compact and re.fullmatch(rb"[A-Za-z0-9+/]+={0,2}", compact):
        try:
            inner = base64.b64decode(compact, validate=True)
        except binascii.Error:
            return None
        return private_key_for_dlt(inner) if b"-----BEGIN" in inner else compact.decode()
    if raw[:1] == b"\x30":  # DER: an ASN.1 SEQUENCE
        return base64.b64encode(raw).decode()
    return None


def _hand_private_key_to_dlt() -> None:
    """Before dlt resolves the credentials: read the key (PRIVATE_KEY_PATH's file, which
    wins as in dlt, or PRIVATE_KEY) and pass it on in dlt's form through the env var dlt
    reads first, PRIVATE_KEY (PRIVATE_KEY_PATH then set empty)."""
    path = _setting("private_key_path")
    if path:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise DestinationError(
                f"{SNOWFLAKE_ENV}PRIVATE_KEY_PATH: the key file cannot be read "
                f"({exc.strerror or type(exc).__name__})."
            ) from None
    else:
        value = _setting("private_key")
        if not value:
            return
        raw = str(value).encode("utf-8")
    key = private_key_for_dlt(raw)
    if key is None:
        return
    os.environ[SNOWFLAKE_ENV + "PRIVATE_KEY"] = key
    if path:
        os.environ[SNOWFLAKE_ENV + "PRIVATE_KEY_PATH"] = ""


def _key_problem(error: str) -> str:
    """Why the key cannot be used, from the cryptography error dlt passes on."""
    where = f"{SNOWFLAKE_ENV}PRIVATE_KEY (or ..._PRIVATE_KEY_PATH)"
    passphrase = f"{SNOWFLAKE_ENV}PRIVATE_KEY_PASSPHRASE"
    # cryptography's words, as dlt quotes them.
    if "Password was not given but private key is encrypted" in error:
        return f"{where} is an encrypted private key: set {passphrase}."
    if "Incorrect password" in error or "Bad decrypt" in error:
        return f"{passphrase} does not decrypt {where}."
    if "private key is not encrypted" in error:
        return f"{where} is not encrypted: leave {passphrase} unset."
    return (
        f"{where} is not a readable private key, or {passphrase} does not open it. "
        f"Accepted: {KEY_FORMS}; a key file may be PEM or DER."
    )


# -- Snowflake: login and session -----------------------------------------------------------

ROLE_NOT_GRANTED = re.compile(
    r"role '[^']*' .*(not granted|does not exist or not authorized)", re.I
)
MFA = re.compile(r"\bMFA\b|multi-factor|TOTP|Duo Security|passcode", re.I)


def _dbapi_error(exc: BaseException) -> BaseException:
    """The connector's own error inside dlt's wrappers (the one with an `errno`)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop(0)
        if item is None or item in seen:
            continue
        if getattr(item, "errno", None) is not None:
            return item
        seen.append(item)
        todo += [
            getattr(item, "dbapi_exception", None), getattr(item, "inner_exc", None),
            item.__cause__, item.__context__,
        ]  # fmt: skip
    return exc


def login_problem(exc: BaseException, credentials: Any) -> str:
    """What a refused or failed login means, in the settings to change. Snowflake's codes:
    390144 JWT token is invalid (key pair: wrong key for the user), 390100 incorrect username
    or password, 390189 role not granted; an MFA demand is worded, not numbered."""
    error = _dbapi_error(exc)
    errno, text = getattr(error, "errno", None), str(error)
    by_key = bool(getattr(credentials, "private_key", None))
    by_password = bool(getattr(credentials, "password", None)) and not by_key
    if errno == 390144 or "JWT token is invalid" in text:
        return (
            f"Snowflake refused the key pair: {SNOWFLAKE_ENV}PRIVATE_KEY is not the private "
            f"half of the RSA_PUBLIC_KEY set for the user in {SNOWFLAKE_ENV}USERNAME (or that "
            f"user has none, or does not exist). Set the public key with ALTER USER … SET "
            f"RSA_PUBLIC_KEY ({BOOTSTRAP_SQL}), or fix the key or {SNOWFLAKE_ENV}USERNAME."
        )
    if errno == 390189 or ROLE_NOT_GRANTED.search(text):
        return (
            f"Snowflake refused the role: {SNOWFLAKE_ENV}ROLE (or the user's DEFAULT_ROLE) is "
            f"not granted to the user in {SNOWFLAKE_ENV}USERNAME. GRANT ROLE … TO USER … "
            f"({BOOTSTRAP_SQL}), or fix {SNOWFLAKE_ENV}ROLE."
        )
    if by_password and (errno == 390100 or MFA.search(text) or "password" in text.lower()):
        return (
            f"Snowflake refused the password login of the user in {SNOWFLAKE_ENV}USERNAME. "
            "Snowflake blocks single-factor password sign-ins "
            "(https://docs.snowflake.com/en/user-guide/security-mfa-rollout) and a TYPE = "
            "SERVICE user cannot log in with a password at all: use a key pair "
            f"({SNOWFLAKE_ENV}PRIVATE_KEY, ..._PRIVATE_KEY_PASSPHRASE; {BOOTSTRAP_SQL}, pipelines/snowflake.md, "
            f'"Configure Snowflake"). If {SNOWFLAKE_ENV}PASSWORD holds a programmatic access '
            "token, check that it has not expired and that the user is subject to a network "
            "policy (required for a service user's token); otherwise the user or password is "
            "wrong."
        )
    if errno == 390100:
        return (
            f"Snowflake refused the login of the user in {SNOWFLAKE_ENV}USERNAME: unknown user "
            "or wrong credentials."
        )
    code = f" {errno}" if errno is not None else ""
    return (
        f"cannot connect to Snowflake ({type(error).__name__}{code}): check the account "
        f"identifier in {SNOWFLAKE_ENV}HOST (e.g. myorg-myaccount, without "
        f".snowflakecomputing.com), {SNOWFLAKE_ENV}USERNAME and the credentials."
    )


def dataset_problems(sql: Any, role: str, database: str) -> list[str]:
    """The dataset's schema, created now if it is not there yet (the first run), as dlt's load
    would create it first thing (`CREATE SCHEMA`, which needs CREATE SCHEMA on the database):
    a missing grant is then said before anything is downloaded, not as a failed load after
    every request was made. Its staging twin needs the same grant."""
    if sql.has_dataset():
        return []
    try:
        sql.create_dataset()
    except Exception as exc:
        reason = " ".join(str(_dbapi_error(exc)).split())
        return [
            f"role {role} cannot create the dataset's schema in database {database} ({reason}) "
            f"(GRANT CREATE SCHEMA ON DATABASE {database} TO ROLE {role})"
        ]
    return []


def _identifier(name: str) -> str:
    """As Snowflake resolves it: quoted as written, unquoted upper-cased."""
    if len(name) > 1 and name.startswith('"') and name.endswith('"'):
        return name[1:-1]
    return name.upper()


def session_problems(
    credentials: Any, role: str | None, warehouse: str | None, database: str | None
) -> list[str]:
    """What the session lacks for loading, from CURRENT_ROLE(), CURRENT_WAREHOUSE() and
    CURRENT_DATABASE(). The connector does not check the warehouse or database it is given
    (`validate_default_parameters` is off): a session whose warehouse does not exist or is
    not usable by its role has none (CURRENT_WAREHOUSE() is NULL), and its first query that
    needs one fails ("No active warehouse selected", snowflakedb/snowflake-jdbc#657), in the
    middle of a load; likewise a database without USAGE. Each problem names the setting
    and the GRANT of the bootstrap that provides it."""
    problems = []
    current_role = role or "PUBLIC"
    wanted_role = getattr(credentials, "role", None)
    if wanted_role and _identifier(wanted_role) != current_role:
        problems.append(
            f"the session's role is {current_role}, not {SNOWFLAKE_ENV}ROLE ({wanted_role})"
        )
    wanted_warehouse = getattr(credentials, "warehouse", None)
    if warehouse is None and wanted_warehouse:
        name = _identifier(wanted_warehouse)
        problems.append(
            f"no usable warehouse: {SNOWFLAKE_ENV}WAREHOUSE ({wanted_warehouse}) does not exist "
            f"or role {current_role} has no USAGE on it "
            f"(GRANT USAGE ON WAREHOUSE {name} TO ROLE {current_role})"
        )
    elif warehouse is None:
        problems.append(
            f"no warehouse: set {SNOWFLAKE_ENV}WAREHOUSE (or the user's DEFAULT_WAREHOUSE)"
        )
    if database is None:
        wanted_database = getattr(credentials, "database", None) or "?"
        name = _identifier(wanted_database)
        problems.append(
            f"database {wanted_database} ({SNOWFLAKE_ENV}DATABASE) does not exist or role "
            f"{current_role} has no USAGE on it "
            f"(GRANT USAGE ON DATABASE {name} TO ROLE {current_role})"
        )
    return problems


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
        if name == HISTORY_SCHEMA:  # the run history: a --full-refresh would not recreate it
            continue
        expected = pipeline.schemas[name].data_table_names(seen_data_only=True)
        if not expected:
            continue
        with pipeline.destination_client(name) as client:
            storage_tables = getattr(client, "get_storage_tables", None)
            if storage_tables is None:
                continue
            missing += [table for table, columns in storage_tables(expected) if not columns]
    return sorted(missing)
