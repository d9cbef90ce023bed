"""The Snowflake path of the real script, proven on fakesnow (an in-process emulator).

Runs in `.venv-snowflake` (tests/snowflake_emulator: own pins, small documented shim).
Every test starts from an account set up by the project's bootstrap
(pipelines/dlt/snowflake/bootstrap.sql, run as an administrator), so the emulator is strict
(tests/snowflake_emulator/account.py): the script logs in as the service user with its key
pair, nothing is created on connect, and the preflight reads role, warehouse and database as
the grants give them. What this proves and what only a real account can is in pipelines/snowflake.md.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, SCRIPT
from tests.e2e.conftest import PLAYERS, Pipeline, expected_games_by_player
from tests.fake_chesscom import FakeChessCom, World, recent_months
from tests.snowflake_emulator.keys import DATABASE, ROLE, USER, WAREHOUSE, KeyPair, bootstrap_sql
from tests.snowflake_emulator.literals import decode

pytestmark = pytest.mark.e2e

LANE = ROOT / "tests" / "snowflake_emulator"
LANE_PYTHON = ROOT / ".venv-snowflake" / "bin" / "python"
EXECUTION_ID = "5xYk\"Tq'Zr\\W9fLmN2b"  # not a Kestra id: quotes to escape
VIEW_COLUMNS = (
    "player", "opponent", "colour", "result", "result_how",
    "player_rating", "opponent_rating", "uuid",
)  # fmt: skip


CREDENTIALS = "DESTINATION__SNOWFLAKE__CREDENTIALS__"
# One key pair for the module (generating one takes a while); the bootstrap registers it.
KEY = KeyPair.generate()


class EmulatedSnowflake:
    def __init__(self, pipeline: Pipeline) -> None:
        if not LANE_PYTHON.exists():
            if os.environ.get("CI"):
                pytest.fail("the Snowflake emulator lane is missing under CI: run `make install`")
            pytest.skip("Snowflake emulator lane not installed: run `make install`")
        self.pipeline = pipeline
        self.db_dir = pipeline.workdir / "snowflake"
        self.db_dir.mkdir()
        self.tag_log = pipeline.workdir / "query_tags.log"
        self.sql_log = pipeline.workdir / "sql.log"

    def bootstrap(self, sql: str | None = None) -> None:
        """Run the project's bootstrap (or `sql`) as an administrator: the account now exists."""
        script = self.pipeline.workdir / "bootstrap.sql"
        script.write_text(bootstrap_sql(KEY.public_pem) if sql is None else sql)
        done = self.lane("--admin", str(script))
        assert done.returncode == 0, done.stdout + done.stderr

    def env(self, **extra: str | None) -> dict[str, str]:
        settings: dict[str, str | None] = {
            CREDENTIALS + "DATABASE": DATABASE,
            CREDENTIALS + "HOST": "emulated-account",
            CREDENTIALS + "USERNAME": USER,
            CREDENTIALS + "PRIVATE_KEY": KEY.form("pkcs8")[0],
            CREDENTIALS + "WAREHOUSE": WAREHOUSE,
            CREDENTIALS + "ROLE": ROLE,
            "FAKESNOW_QUERY_TAG_LOG": str(self.tag_log),
            "FAKESNOW_SQL_LOG": str(self.sql_log),
            "PYTHONWARNINGS": "ignore",
        }
        return self.pipeline.env(**{**settings, **extra})

    def statements(self) -> list[str]:
        """Every statement the emulator received, as sent (FAKESNOW_SQL_LOG)."""
        return [json.loads(line)["sql"] for line in self.sql_log.read_text().splitlines()]

    def lane(self, *args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(LANE_PYTHON), str(LANE / "run_on_fakesnow.py"), str(self.db_dir), *args],
            cwd=self.pipeline.workdir,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=300,
        )

    def run(self, *args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
        return self.lane(str(SCRIPT), "--destination", "snowflake", *args, **env)

    def query(self, sql: str) -> list[dict[str, Any]]:
        out = self.lane("--query", sql, DATABASE)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def account(pipeline: Pipeline) -> EmulatedSnowflake:
    """The emulator before any setup: a test runs its own (variant of the) bootstrap."""
    return EmulatedSnowflake(pipeline)


@pytest.fixture
def snowflake(account: EmulatedSnowflake) -> EmulatedSnowflake:
    """The emulator with the account set up by pipelines/dlt/snowflake/bootstrap.sql."""
    account.bootstrap()
    return account


PREFLIGHT = "SELECT CURRENT_ROLE(), CURRENT_WAREHOUSE(), CURRENT_DATABASE()"
TYPE_OF_COLUMN = re.compile(r'"(\w+)" (\w+)')


def create_table(sent: list[str], table: str) -> str:
    (ddl,) = [s for s in sent if s.startswith(f'CREATE TABLE "CHESS"."{table}" (')]
    return ddl


def timestamp_types(sent: list[str], table: str) -> dict[str, str]:
    """Column -> type, for the timestamp columns of `table`'s CREATE TABLE as dlt sent it."""
    ddl = create_table(sent, table)
    return {c: t for c, t in TYPE_OF_COLUMN.findall(ddl) if t.startswith("TIMESTAMP")}


def all_timestamp_types(sent: list[str]) -> set[str]:
    """Every timestamp type in every CREATE TABLE / ALTER TABLE ADD COLUMN dlt sent."""
    ddl = [s for s in sent if re.match(r"(CREATE|ALTER) TABLE", s)]
    return {t for d in ddl for t in re.findall(r"\b(TIMESTAMP\w*)", d)}


def tag_before(sent: list[str], statement: str) -> dict[str, Any]:
    """The QUERY_TAG in force when `statement` (its first occurrence) ran: the last
    ALTER SESSION SET QUERY_TAG before it, read as Snowflake reads the literal."""
    index = next(i for i, s in enumerate(sent) if s.startswith(statement))
    alter = [s for s in sent[:index] if s.startswith("ALTER SESSION SET QUERY_TAG")][-1]
    return json.loads(decode(alter.split("=", 1)[1].strip()))


def staged_files(snowflake: EmulatedSnowflake) -> list[Path]:
    """Files in the account's table stages (fakesnow keeps them under DB_DIR/tmp)."""
    return [p for p in (snowflake.db_dir / "tmp").glob("fakesnow_bucket_*/**/*") if p.is_file()]


def uuids(snowflake: EmulatedSnowflake) -> list[str]:
    return [r["uuid"] for r in snowflake.query("select uuid from chess.players_games")]


def test_load_creates_typed_tables_and_exactly_the_served_games(
    snowflake: EmulatedSnowflake, world: World
) -> None:
    run = snowflake.run(KESTRA_EXECUTION_ID=EXECUTION_ID)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Loaded into snowflake dataset 'chess'" in run.stdout

    loaded = uuids(snowflake)
    assert len(loaded) == len(set(loaded))
    assert set(loaded) == set(world.all_games())

    tables = {
        r["table_name"]
        for r in snowflake.query(
            "select table_name from information_schema.tables where table_schema = 'CHESS'"
        )
    }
    assert {"PLAYERS_GAMES", "PLAYERS_PROFILES", "PLAYERS_STATS", "PLAYERS_ARCHIVES"} <= tables
    # No schema existed (the emulator creates none on connect): dlt created its dataset and
    # staging dataset, with the bootstrap's CREATE SCHEMA grant.
    sent = snowflake.statements()
    created = {m.group(1) for s in sent if (m := re.match(r'CREATE SCHEMA "(\w+)"', s))}
    assert created == {"CHESS", "CHESS_STAGING"}
    (view,) = snowflake.query("select count(*) as n from chess.games_by_player")
    # One row per tracked player per game: games between tracked players count twice.
    assert view["n"] == len(expected_games_by_player(world, PLAYERS)) > len(loaded)
    columns = {
        r["column_name"]: r["data_type"]
        for r in snowflake.query(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'CHESS' and table_name = 'PLAYERS_GAMES'"
        )
    }
    assert columns["RATED"] == "BOOLEAN"
    assert columns["WHITE__RATING"] == "NUMBER"
    assert columns["PGN"] == "TEXT"
    # Nested white/black objects are flattened the way dlt does everywhere.
    assert {"WHITE__USERNAME", "BLACK__RESULT", "ACCURACIES__WHITE"} <= set(columns)
    # The types as Snowflake would create them, read from the DDL dlt sent: fakesnow reports
    # any tz-aware column as TIMESTAMP_TZ, whatever the DDL said (TIMESTAMP_LTZ included).
    assert timestamp_types(sent, "PLAYERS_GAMES") == {
        "END_TIME": "TIMESTAMP_TZ", "START_TIME": "TIMESTAMP_TZ",
    }  # fmt: skip
    assert all_timestamp_types(sent) == {"TIMESTAMP_TZ"}

    # A DBA can find the loads by pipeline and Kestra execution in QUERY_HISTORY; the
    # execution id has characters a SQL literal must escape (issue 23, item 6).
    tags = [json.loads(line) for line in snowflake.tag_log.read_text().splitlines()]
    assert tags and all(t["pipeline"] == "chess_com" for t in tags)
    assert all(t["kestra_execution_id"] == EXECUTION_ID for t in tags)
    assert {"players_games", "players_archives"} <= {t["table"] for t in tags}
    # The preflight's and the views' own sessions are tagged too (no table, no load id).
    for first in (PREFLIGHT, 'CREATE OR REPLACE VIEW "CHESS".games_by_player'):
        assert tag_before(sent, first) == {
            "app": "chess-pipelines", "pipeline": "chess_com", "table": "", "load_id": "",
            "kestra_execution_id": EXECUTION_ID,
        }  # fmt: skip

    # The views keep their grants when replaced (Snowflake's COPY GRANTS).
    views = [s for s in sent if re.match(r'CREATE OR REPLACE VIEW "CHESS"\.(games_by_|player_)', s)]
    names = {v.split()[4].split(".")[1] for v in views}
    assert {"games_by_player", "player_games"} <= names
    assert all(" COPY GRANTS AS" in v.splitlines()[0] for v in views)

    # Each file is removed from its table stage once copied (keep_staged_files=False): the
    # stages are empty, though every table's files went up.
    puts = [s for s in sent if s.startswith("PUT ")]
    removes = [s for s in sent if s.startswith("REMOVE ")]
    assert puts and len(removes) == len(puts)
    assert staged_files(snowflake) == []


def test_rerun_merges_updates_and_adds_exactly_the_new_games(
    snowflake: EmulatedSnowflake, world: World
) -> None:
    assert snowflake.run().returncode == 0
    before = set(uuids(snowflake))

    current = recent_months(1)[0]
    # Chess.com corrects a game of the open month, and three new games arrive.
    with world.lock:
        doc = world.players["alice"].months[current]
        corrected = doc.body["games"][0]
        corrected["white"]["rating"] = 3333
        doc.touch()
    new = world.add_games("Alice", current, 3)

    run = snowflake.run()
    assert run.returncode == 0, run.stdout + run.stderr
    after = uuids(snowflake)
    assert len(after) == len(set(after)), "merge must not duplicate"
    assert set(after) - before == {g["uuid"] for g in new}
    (row,) = snowflake.query(
        f"select white__rating from chess.players_games where uuid = '{corrected['uuid']}'"
    )
    assert row["white__rating"] == 3333


def test_games_by_player_view_on_snowflake_matches_duckdb_semantics(
    snowflake: EmulatedSnowflake, world: World
) -> None:
    assert snowflake.run("--players", "alice,bob_b").returncode == 0
    rows = {
        tuple(r[k] for k in VIEW_COLUMNS)
        for r in snowflake.query(f"select {', '.join(VIEW_COLUMNS)} from chess.games_by_player")
    }
    assert rows == expected_games_by_player(world, ["alice", "bob_b"])


def test_view_has_only_the_tracked_players(snowflake: EmulatedSnowflake) -> None:
    assert snowflake.run("--players", PLAYERS[0]).returncode == 0
    players = {
        r["player"] for r in snowflake.query("select distinct player from chess.games_by_player")
    }
    assert players == {PLAYERS[0].lower()}


@pytest.mark.parametrize("form", ["pem", "base64-with-passphrase", "path", "der-file"])
def test_key_pair_auth_from_env_alone(
    snowflake: EmulatedSnowflake, world: World, tmp_path: Path, form: str
) -> None:
    """The key is decoded (and decrypted) by the real code path before connecting, and the
    emulator accepts only the pair of the public key the bootstrap registered."""
    import base64

    env: dict[str, str | None] = {CREDENTIALS + "PRIVATE_KEY": None}
    if form == "pem":
        env[CREDENTIALS + "PRIVATE_KEY"] = KEY.form("pkcs8")[0]
    elif form in ("path", "der-file"):
        key_file = tmp_path / "rsa_key.p8"
        key_file.write_bytes(
            KEY.form("pkcs8-encrypted")[0].encode()
            if form == "path"
            else KEY.encode("DER", "PKCS8", "correct horse battery")
        )
        env[CREDENTIALS + "PRIVATE_KEY_PATH"] = str(key_file)
        env[CREDENTIALS + "PRIVATE_KEY_PASSPHRASE"] = "correct horse battery"
    else:
        pem, passphrase = KEY.form("pkcs8-encrypted")
        env[CREDENTIALS + "PRIVATE_KEY"] = base64.b64encode(pem.encode()).decode()
        env[CREDENTIALS + "PRIVATE_KEY_PASSPHRASE"] = passphrase
    run = snowflake.run("--players", "alice", "--start-month", recent_months(1)[0], **env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert set(uuids(snowflake)) == {g["uuid"] for g in world.games_in("alice", recent_months(1))}


def test_wrong_passphrase_is_reported_as_a_key_problem(
    snowflake: EmulatedSnowflake, api: FakeChessCom
) -> None:
    pem, _ = KEY.form("pkcs8-encrypted")
    run = snowflake.run(
        **{CREDENTIALS + "PRIVATE_KEY": pem, CREDENTIALS + "PRIVATE_KEY_PASSPHRASE": "wrong"}
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert "PRIVATE_KEY_PASSPHRASE does not decrypt" in run.stderr and "wrong" not in run.stderr
    assert api.stats.paths() == []


# -- the account as the bootstrap sets it up, and what the preflight says when it does not --


def refused(run: Any, api: FakeChessCom, *expected: str) -> None:
    """Exit 2 before any request to Chess.com, the message saying each of `expected`."""
    assert run.returncode == 2, run.stdout + run.stderr
    for text in expected:
        assert text in run.stderr, run.stderr
    assert api.stats.paths() == [], "nothing requested before the destination is usable"


@pytest.mark.parametrize(
    ("missing", "expected"),
    [
        (
            "GRANT USAGE ON WAREHOUSE",
            [CREDENTIALS + "WAREHOUSE (LOADING_WH) does not exist or role CHESS_LOADER has no "
             "USAGE on it (GRANT USAGE ON WAREHOUSE LOADING_WH TO ROLE CHESS_LOADER)"],
        ),
        (
            "",  # the whole bootstrap, and a warehouse that does not exist
            ["no usable warehouse: " + CREDENTIALS + "WAREHOUSE (no_such_wh) does not exist",
             "GRANT USAGE ON WAREHOUSE NO_SUCH_WH TO ROLE CHESS_LOADER"],
        ),
        (
            "GRANT USAGE ON DATABASE",
            ["database RAW (" + CREDENTIALS + "DATABASE) does not exist or role CHESS_LOADER has "
             "no USAGE on it (GRANT USAGE ON DATABASE RAW TO ROLE CHESS_LOADER)"],
        ),
        (
            "CREATE DATABASE",
            ["database RAW (" + CREDENTIALS + "DATABASE) does not exist"],
        ),
        (
            "GRANT ROLE CHESS_LOADER TO USER",
            ["Snowflake refused the role: " + CREDENTIALS + "ROLE (or the user's DEFAULT_ROLE) is "
             "not granted to the user"],
        ),
    ],
    ids=["warehouse-grant", "warehouse", "database-grant", "database", "role-grant"],
)  # fmt: skip
def test_preflight_names_what_the_account_lacks(
    account: EmulatedSnowflake, api: FakeChessCom, missing: str, expected: list[str]
) -> None:
    """The bootstrap minus one statement: the preflight says what is missing and the GRANT
    that gives it, before any request (on Snowflake a missing warehouse fails only the
    first query that needs one, in the middle of the load)."""
    account.bootstrap(bootstrap_sql(KEY.public_pem, drop=(missing,) if missing else ()))
    env = {} if missing else {CREDENTIALS + "WAREHOUSE": "no_such_wh"}
    refused(account.run(**env), api, *expected, "snowflake/bootstrap.sql")


def test_without_create_schema_the_first_run_stops_at_the_preflight(
    account: EmulatedSnowflake, api: FakeChessCom
) -> None:
    """The first run's preflight creates the dataset's schema, as the load would first thing:
    without the grant it says so before any request (not as a failed load after them all)."""
    account.bootstrap(bootstrap_sql(KEY.public_pem, drop=("GRANT CREATE SCHEMA",)))
    refused(
        account.run(), api, "role CHESS_LOADER cannot create the dataset's schema in database "
        "RAW", "Insufficient privileges to operate on database 'RAW'",
        "GRANT CREATE SCHEMA ON DATABASE RAW TO ROLE CHESS_LOADER",
    )  # fmt: skip


def test_a_password_is_refused_for_the_service_user(
    snowflake: EmulatedSnowflake, api: FakeChessCom
) -> None:
    run = snowflake.run(
        **{CREDENTIALS + "PRIVATE_KEY": None, CREDENTIALS + "PASSWORD": "secret-do-not-print"}
    )
    refused(
        run, api, "Snowflake refused the password login", "TYPE = SERVICE",
        CREDENTIALS + "PRIVATE_KEY", "security-mfa-rollout",
    )  # fmt: skip
    assert "secret-do-not-print" not in run.stdout + run.stderr


def test_a_key_the_user_does_not_have_is_refused(
    snowflake: EmulatedSnowflake, api: FakeChessCom
) -> None:
    other = KeyPair.generate().form("pkcs8")[0]
    run = snowflake.run(**{CREDENTIALS + "PRIVATE_KEY": other})
    refused(run, api, "Snowflake refused the key pair", "RSA_PUBLIC_KEY")
    assert "PRIVATE KEY" not in run.stdout + run.stderr
