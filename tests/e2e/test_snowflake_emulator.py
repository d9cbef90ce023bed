"""The Snowflake path of the real script, proven on fakesnow (an in-process emulator).

Runs in `.venv-snowflake` (tests/snowflake_emulator: own pins, small documented shim).
What this proves and what only a real account can is listed in the README.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, SCRIPT
from tests.e2e.conftest import PLAYERS, Pipeline, expected_games_by_player
from tests.fake_chesscom import FakeChessCom, World, recent_months

pytestmark = pytest.mark.e2e

LANE = ROOT / "tests" / "snowflake_emulator"
LANE_PYTHON = ROOT / ".venv-snowflake" / "bin" / "python"
EXECUTION_ID = "5xYkTqZrW9fLmN2b"
VIEW_COLUMNS = (
    "player", "opponent", "colour", "result", "result_how",
    "player_rating", "opponent_rating", "uuid",
)  # fmt: skip


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

    def env(self, **extra: str | None) -> dict[str, str]:
        settings: dict[str, str | None] = {
            "DESTINATION__SNOWFLAKE__CREDENTIALS__DATABASE": "ANALYTICS",
            "DESTINATION__SNOWFLAKE__CREDENTIALS__HOST": "emulated-account",
            "DESTINATION__SNOWFLAKE__CREDENTIALS__USERNAME": "LOADER",
            "DESTINATION__SNOWFLAKE__CREDENTIALS__PASSWORD": "emulator-password",
            "DESTINATION__SNOWFLAKE__CREDENTIALS__WAREHOUSE": "LOADING_WH",
            "DESTINATION__SNOWFLAKE__CREDENTIALS__ROLE": "CHESS_LOADER",
            "FAKESNOW_QUERY_TAG_LOG": str(self.tag_log),
            "PYTHONWARNINGS": "ignore",
        }
        return self.pipeline.env(**{**settings, **extra})

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
        out = self.lane("--query", sql)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def snowflake(pipeline: Pipeline) -> EmulatedSnowflake:
    return EmulatedSnowflake(pipeline)


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
    assert columns["END_TIME"] == "TIMESTAMP_TZ"
    assert columns["START_TIME"] == "TIMESTAMP_TZ"
    assert columns["RATED"] == "BOOLEAN"
    assert columns["WHITE__RATING"] == "NUMBER"
    assert columns["PGN"] == "TEXT"
    # Nested white/black objects are flattened the way dlt does everywhere.
    assert {"WHITE__USERNAME", "BLACK__RESULT", "ACCURACIES__WHITE"} <= set(columns)

    # A DBA can find the loads by pipeline and Kestra execution in QUERY_HISTORY.
    tags = [json.loads(line) for line in snowflake.tag_log.read_text().splitlines()]
    assert tags and all(t["pipeline"] == "chess_com" for t in tags)
    assert all(t["kestra_execution_id"] == EXECUTION_ID for t in tags)
    assert {"players_games", "players_archives"} <= {t["table"] for t in tags}


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


def rsa_key(passphrase: bytes | None) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


@pytest.mark.parametrize("form", ["pem", "base64-with-passphrase", "path"])
def test_key_pair_auth_from_env_alone(
    snowflake: EmulatedSnowflake, world: World, tmp_path: Path, form: str
) -> None:
    """The key is decoded (and decrypted) by the real code path before connecting."""
    import base64

    passphrase = b"correct horse" if form != "pem" else None
    pem = rsa_key(passphrase)
    env: dict[str, str | None] = {"DESTINATION__SNOWFLAKE__CREDENTIALS__PASSWORD": None}
    if form == "pem":
        env["DESTINATION__SNOWFLAKE__CREDENTIALS__PRIVATE_KEY"] = pem.decode()
    elif form == "path":
        key_file = tmp_path / "rsa_key.p8"
        key_file.write_bytes(pem)
        env["DESTINATION__SNOWFLAKE__CREDENTIALS__PRIVATE_KEY_PATH"] = str(key_file)
        env["DESTINATION__SNOWFLAKE__CREDENTIALS__PRIVATE_KEY_PASSPHRASE"] = passphrase.decode()
    else:
        env["DESTINATION__SNOWFLAKE__CREDENTIALS__PRIVATE_KEY"] = base64.b64encode(pem).decode()
        env["DESTINATION__SNOWFLAKE__CREDENTIALS__PRIVATE_KEY_PASSPHRASE"] = passphrase.decode()
    run = snowflake.run("--players", "alice", "--start-month", recent_months(1)[0], **env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert set(uuids(snowflake)) == {g["uuid"] for g in world.games_in("alice", recent_months(1))}


def test_wrong_passphrase_is_reported_as_a_key_problem(
    snowflake: EmulatedSnowflake, api: FakeChessCom
) -> None:
    import base64

    run = snowflake.run(
        DESTINATION__SNOWFLAKE__CREDENTIALS__PASSWORD=None,
        DESTINATION__SNOWFLAKE__CREDENTIALS__PRIVATE_KEY=base64.b64encode(
            rsa_key(b"right")
        ).decode(),
        DESTINATION__SNOWFLAKE__CREDENTIALS__PRIVATE_KEY_PASSPHRASE="wrong",
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert "PRIVATE_KEY_PASSPHRASE" in run.stderr and "wrong" not in run.stderr
    assert api.stats.paths() == []
