"""Run the real script as a subprocess against the project's Chess.com-like server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.conftest import SCRIPT
from tests.fake_chesscom import FakeChessCom, World

PLAYERS = ["Alice", "Bob_B", "carol-c"]
# Settings that must come from the test, never from the developer's shell.
SCRUBBED_PREFIXES = ("SOURCES__", "DESTINATION__", "RUNTIME__", "DLT_", "CHESS_", "EXTRACT__")


@pytest.fixture
def world() -> World:
    w = World(seed=11)
    w.populate(PLAYERS, months=4, games_per_month=12, shared_per_month=2)
    w.add_gone("gonzo")
    return w


@pytest.fixture
def api(world: World) -> Iterator[FakeChessCom]:
    with FakeChessCom(world, max_in_flight=3) as server:
        yield server


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Pipeline:
    """The script, its working directory and its DuckDB file."""

    def __init__(self, workdir: Path, api: FakeChessCom) -> None:
        self.workdir = workdir
        self.api = api
        self.db_path = workdir / "chess_com.duckdb"

    def env(self, **extra: str | None) -> dict[str, str]:
        """The script's environment; pass a setting as None to leave it unset."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES)}
        env.update(
            DLT_DATA_DIR=str(self.workdir / "dlt-data"),
            SOURCES__CHESS__BASE_URL=self.api.base_url,
            SOURCES__CHESS__CONTACT="tests@example.com",
            SOURCES__CHESS__PLAYERS=",".join(PLAYERS),
            RUNTIME__REQUEST_BACKOFF_FACTOR="0.05",
            RUNTIME__REQUEST_MAX_ATTEMPTS="8",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return {k: v for k, v in env.items() if v is not None}

    def command(self, *args: str) -> list[str]:
        return [sys.executable, str(SCRIPT), "--destination", "duckdb", *args]

    def run(self, *args: str, cwd: Path | None = None, **env: str | None) -> Run:
        proc = subprocess.run(
            self.command(*args),
            cwd=cwd or self.workdir,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=180,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def popen(
        self, *args: str, cwd: Path | None = None, **env: str | None
    ) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            cwd=cwd or self.workdir,
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.db_path), read_only=True) as con:
            return con.execute(sql).fetchall()

    def game_uuids(self) -> list[str]:
        return [r[0] for r in self.query("select uuid from chess.players_games")]


@pytest.fixture
def pipeline(tmp_path: Path, api: FakeChessCom) -> Pipeline:
    return Pipeline(tmp_path, api)


DRAWS = {"agreed", "repetition", "stalemate", "insufficient", "50move", "timevsinsufficient"}


def expected_games_by_player(world: World, tracked: list[str]) -> set[tuple[Any, ...]]:
    """The `games_by_player` view computed in Python from what the server served:
    (player, opponent, colour, result, result_how, player_rating, opponent_rating, uuid)."""
    rows = set()
    tracked_lower = {p.lower() for p in tracked}
    for game in world.all_games().values():
        for colour, other in (("white", "black"), ("black", "white")):
            me, them = game[colour], game[other]
            if me["username"].lower() not in tracked_lower:
                continue
            if me["result"] == "win":
                result, how = "win", them["result"]
            else:
                result, how = ("draw" if me["result"] in DRAWS else "loss"), me["result"]
            rows.add(
                (
                    me["username"].lower(),
                    them["username"],
                    colour,
                    result,
                    how,
                    me["rating"],
                    them["rating"],
                    game["uuid"],
                )
            )
    return rows


def loaded_games(pipeline: Pipeline) -> list[str]:
    """Uuids in the games table; none when a failed run left no database or table."""
    if not pipeline.db_path.exists():
        return []
    try:
        return pipeline.game_uuids()
    except duckdb.CatalogException:
        return []


def assert_loaded_exactly(pipeline: Pipeline, expected: set[str], run: Run | None = None) -> None:
    """The games table holds `expected`: none lost, none duplicated, nothing else."""
    uuids = loaded_games(pipeline)
    assert len(uuids) == len(set(uuids)), "duplicate games"
    missing, unexpected = expected - set(uuids), set(uuids) - expected
    output = run.output if run else ""
    assert not missing and not unexpected, (len(missing), len(unexpected), output)


def assert_exactly_served(pipeline: Pipeline, world: World, run: Run | None = None) -> None:
    """Every game the server serves now is loaded once, and nothing else."""
    assert_loaded_exactly(pipeline, set(world.all_games()), run)


def clean_rerun(pipeline: Pipeline, api: FakeChessCom, world: World, **env: str | None) -> Run:
    """Faults removed, the next run succeeds and loads exactly what the server serves."""
    api.clear_overrides()
    api.latency = 0
    rerun = pipeline.run(**env)
    assert rerun.returncode == 0, rerun.output
    assert_exactly_served(pipeline, world, rerun)
    return rerun
