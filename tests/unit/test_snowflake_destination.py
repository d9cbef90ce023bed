"""The Snowflake destination as the pipeline configures it, checked without a connection:
the DDL types dlt's own type mapper produces, the query tag as Snowflake reads the literal,
every private key form through the Kestra `secret()` path, and the preflight's and login's
messages. The same behaviour end to end: tests/e2e/test_snowflake_emulator.py and
tests/e2e/test_snowflake_server.py."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import dlt
import pytest
import sqlglot
from dlt.common.configuration.container import Container
from dlt.common.pipeline import PipelineContext

from pipeline_runner.destination import (
    KEY_FORMS,
    SNOWFLAKE_ENV,
    DestinationError,
    _hand_private_key_to_dlt,
    check_destination,
    login_problem,
    make_destination,
    private_key_for_dlt,
    query_tag,
    session_problems,
)
from tests.kestra import twin
from tests.snowflake_emulator.keys import FORMS, KeyPair
from tests.snowflake_emulator.literals import decode

KEY = KeyPair.generate()


@pytest.fixture
def snowflake_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Complete credentials but the key: nothing here connects."""
    for name in ("PASSWORD", "PRIVATE_KEY", "PRIVATE_KEY_PATH", "PRIVATE_KEY_PASSPHRASE"):
        # set, then unset: monkeypatch restores them, also after the key step wrote them
        monkeypatch.setenv(SNOWFLAKE_ENV + name, "")
        monkeypatch.delenv(SNOWFLAKE_ENV + name)
    monkeypatch.setenv(SNOWFLAKE_ENV + "DATABASE", "RAW")
    monkeypatch.setenv(SNOWFLAKE_ENV + "HOST", "myorg-myaccount")
    monkeypatch.setenv(SNOWFLAKE_ENV + "USERNAME", "CHESS_LOADER_SVC")
    monkeypatch.setenv(SNOWFLAKE_ENV + "WAREHOUSE", "LOADING_WH")
    monkeypatch.setenv(SNOWFLAKE_ENV + "ROLE", "CHESS_LOADER")
    yield
    Container()[PipelineContext].deactivate()  # no active pipeline left to other tests


def snowflake_pipeline(tmp_path: Path) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name="chess_com",
        pipelines_dir=str(tmp_path / "dlt"),
        destination=make_destination("snowflake", "chess_com", "exec-1"),
        dataset_name="chess",
    )


# -- what dlt creates -------------------------------------------------------------------------


def test_dlt_creates_timestamps_as_timestamp_tz_and_removes_staged_files(
    snowflake_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dlt's own type mapper and DDL for the configured destination (issue 23, item 7): the
    emulator cannot tell TIMESTAMP_TZ from TIMESTAMP_LTZ in what it reports."""
    monkeypatch.setenv(SNOWFLAKE_ENV + "PASSWORD", "unused")
    client = snowflake_pipeline(tmp_path).destination_client()
    column = {"name": "end_time", "data_type": "timestamp", "timezone": True, "nullable": True}
    table = {"name": "players_games", "columns": {"end_time": column}}
    assert client.type_mapper.to_destination_type(column, table) == "TIMESTAMP_TZ"
    assert client._get_column_def_sql(column, table).startswith('"END_TIME" TIMESTAMP_TZ')
    assert client.config.keep_staged_files is False
    assert client.config.query_tag == query_tag("chess_com", "exec-1")


# -- the query tag ------------------------------------------------------------------------------

AWKWARD = [
    "4mNxVdO2rsZ1Sv4y",  # a Kestra id
    'a"b',  # JSON escapes it as \" : Snowflake would read \" as "
    "it's",  # a quote ends the literal
    "back\\slash",
    "tab\tand\nnewline",
    "café {braces}",
]


@pytest.mark.parametrize("execution_id", AWKWARD)
def test_query_tag_reaches_snowflake_as_the_json_it_was(execution_id: str) -> None:
    """The statement dlt sends (`ALTER SESSION SET QUERY_TAG = '<template formatted>'`,
    snowflake/sql_client.py `_tag_session`), read as Snowflake reads the literal by two
    independent readers: tests/snowflake_emulator/literals.py (Snowflake's documented
    escapes) and sqlglot's Snowflake tokenizer."""
    tag = query_tag("chess_com", execution_id).format(
        table="players_games", load_id="1795939024.03", source="chess", resource="r",
        pipeline_name="chess_com", operation="load",
    )  # fmt: skip
    statement = f"ALTER SESSION SET QUERY_TAG = '{tag}'"
    literal = statement.split("=", 1)[1].strip()
    expected = {
        "app": "chess-pipelines", "pipeline": "chess_com", "table": "players_games",
        "load_id": "1795939024.03", "kestra_execution_id": execution_id,
    }  # fmt: skip
    assert json.loads(decode(literal)) == expected
    parsed = sqlglot.parse_one(f"SELECT {literal}", read="snowflake")
    assert json.loads(parsed.expressions[0].this) == expected


def test_decoder_reads_snowflake_escapes_as_documented() -> None:
    # https://docs.snowflake.com/en/sql-reference/data-types-text#escape-sequences-in-single-quoted-string-constants
    assert decode(r"'it''s \' \" \\ \n \t \x41 \u00e9 \101 \d'") == "it's ' \" \\ \n \t A é A d"
    with pytest.raises(ValueError):
        decode("'unterminated")


# -- private keys through the Kestra secret() path ---------------------------------------------


def through_kestra(value: str) -> str:
    """The value as the flow's task sees `{{ secret('SNOWFLAKE_PRIVATE_KEY') }}`: base64 in the
    Secret (k8s/README.md), decoded by open-source Kestra's SecretService (tests/kestra/twin.py)."""
    encoded = base64.b64encode(value.encode()).decode()
    return twin.kestra_secrets({"SECRET_SNOWFLAKE_PRIVATE_KEY": encoded})["SNOWFLAKE_PRIVATE_KEY"]


def key_dlt_connects_with(tmp_path: Path) -> bytes:
    """What dlt hands the connector, after the check's key step, from the env as resolved."""
    _hand_private_key_to_dlt()
    credentials = snowflake_pipeline(tmp_path).destination_client().config.credentials
    return credentials.to_connector_params()["private_key"]


@pytest.mark.parametrize("form", FORMS)
def test_every_key_form_from_the_kestra_secret_is_the_registered_key(
    snowflake_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    value, passphrase = KEY.form(form)
    monkeypatch.setenv(SNOWFLAKE_ENV + "PRIVATE_KEY", through_kestra(value))
    if passphrase:
        monkeypatch.setenv(SNOWFLAKE_ENV + "PRIVATE_KEY_PASSPHRASE", passphrase)
    assert key_dlt_connects_with(tmp_path) == KEY.der


@pytest.mark.parametrize("form", ["pem-file", "encrypted-pem-file", "der-file", "rsa-file"])
def test_every_key_file_form_is_the_registered_key(
    snowflake_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    passphrase = None if form in ("pem-file", "rsa-file") else "file passphrase"
    content = {
        "pem-file": KEY.encode("PEM", "PKCS8", None),
        "encrypted-pem-file": KEY.encode("PEM", "PKCS8", passphrase),
        "der-file": KEY.encode("DER", "PKCS8", passphrase),
        "rsa-file": KEY.encode("PEM", "TraditionalOpenSSL", None),
    }[form]
    key_file = tmp_path / "rsa_key"
    key_file.write_bytes(content)
    monkeypatch.setenv(SNOWFLAKE_ENV + "PRIVATE_KEY_PATH", str(key_file))
    if passphrase:
        monkeypatch.setenv(SNOWFLAKE_ENV + "PRIVATE_KEY_PASSPHRASE", passphrase)
    assert key_dlt_connects_with(tmp_path) == KEY.der


def test_forms_dlt_reads_alone_are_left_as_they_are() -> None:
    value, _ = KEY.form("base64-der")
    assert private_key_for_dlt(value.encode()) == value
    assert private_key_for_dlt(b"not a key") is None


@pytest.mark.parametrize(
    ("key", "passphrase", "says"),
    [
        (KEY.form("pkcs8-encrypted")[0], None, "is an encrypted private key: set"),
        (KEY.form("pkcs8-encrypted")[0], "wrong", "PRIVATE_KEY_PASSPHRASE does not decrypt"),
        (KEY.form("pkcs8")[0], "unneeded", "is not encrypted: leave"),
        ("not-a-key-but-a-secret", None, KEY_FORMS),
    ],
    ids=["no-passphrase", "wrong-passphrase", "not-encrypted", "not-a-key"],
)
def test_an_unusable_key_is_named_with_what_to_do(
    snowflake_env: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    key: str,
    passphrase: str | None,
    says: str,
) -> None:
    monkeypatch.setenv(SNOWFLAKE_ENV + "PRIVATE_KEY", key)
    if passphrase:
        monkeypatch.setenv(SNOWFLAKE_ENV + "PRIVATE_KEY_PASSPHRASE", passphrase)
    with pytest.raises(DestinationError) as error:
        check_destination(snowflake_pipeline(tmp_path))
    assert says in str(error.value)
    assert "not-a-key-but-a-secret" not in str(error.value)


# -- what the preflight and a refused login say --------------------------------------------------

CONFIGURED = SimpleNamespace(role="chess_loader", warehouse="LOADING_WH", database="RAW")


def test_a_session_with_role_warehouse_and_database_is_ready() -> None:
    assert session_problems(CONFIGURED, "CHESS_LOADER", "LOADING_WH", "RAW") == []


def test_the_preflight_names_each_missing_grant() -> None:
    problems = session_problems(CONFIGURED, "CHESS_LOADER", None, None)
    assert problems == [
        f"no usable warehouse: {SNOWFLAKE_ENV}WAREHOUSE (LOADING_WH) does not exist or role "
        "CHESS_LOADER has no USAGE on it (GRANT USAGE ON WAREHOUSE LOADING_WH TO ROLE "
        "CHESS_LOADER)",
        f"database RAW ({SNOWFLAKE_ENV}DATABASE) does not exist or role CHESS_LOADER has no "
        "USAGE on it (GRANT USAGE ON DATABASE RAW TO ROLE CHESS_LOADER)",
    ]
    unset = SimpleNamespace(role=None, warehouse=None, database="RAW")
    assert session_problems(unset, "PUBLIC", None, "RAW") == [
        f"no warehouse: set {SNOWFLAKE_ENV}WAREHOUSE (or the user's DEFAULT_WAREHOUSE)"
    ]
    assert session_problems(CONFIGURED, "OTHER", "W", "RAW") == [
        f"the session's role is OTHER, not {SNOWFLAKE_ENV}ROLE (chess_loader)"
    ]


def connector_error(errno: int, message: str) -> Exception:
    """As snowflake-connector-python 5.2 raised them against the emulator's server (errno,
    then the server's message: `390144 (28000): Failed to login: Login error: JWT token is
    invalid., code: 390144`)."""
    import snowflake.connector.errors as errors

    return errors.DatabaseError(msg=f"Failed to login: Login error: {message}", errno=errno)


BY_KEY = SimpleNamespace(private_key="k", password=None)
BY_PASSWORD = SimpleNamespace(private_key=None, password="p")


@pytest.mark.parametrize(
    ("error", "credentials", "says"),
    [
        (connector_error(390144, "JWT token is invalid."), BY_KEY, "refused the key pair"),
        (
            connector_error(390189, "Role 'X' specified in the connect string is not granted "
                            "to this user."),
            BY_KEY, "refused the role",
        ),
        (
            connector_error(390100, "Incorrect username or password was specified."),
            BY_PASSWORD, "Snowflake blocks single-factor password sign-ins",
        ),
        (
            # No documented code: the words (PostHog/posthog#66419).
            connector_error(250001, "Multi-factor authentication is required for this account."),
            BY_PASSWORD, "TYPE = SERVICE user cannot log in with a password",
        ),
        (connector_error(250001, "Could not connect to Snowflake backend"), BY_KEY,
         "cannot connect to Snowflake (DatabaseError 250001): check the account identifier"),
    ],
    ids=["jwt", "role", "password", "mfa", "unreachable"],
)  # fmt: skip
def test_a_refused_login_says_which_setting(
    error: Exception, credentials: SimpleNamespace, says: str
) -> None:
    wrapped = RuntimeError("dlt's wrapper")
    wrapped.__cause__ = error
    assert says in login_problem(wrapped, credentials)
