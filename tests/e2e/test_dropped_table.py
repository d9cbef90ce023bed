"""A table dropped by hand (issue 19 item 5): the next run fails naming it, before any
request, until `--full-refresh` recreates it; it never exits 0 with the data gone."""

from __future__ import annotations

import shutil

import duckdb
import pytest

from tests.e2e.conftest import (
    PLAYERS,
    Pipeline,
    assert_exactly_served,
    expected_games_by_player,
)
from tests.fake_chesscom import FakeChessCom, World, recent_months

pytestmark = pytest.mark.e2e


def drop_games_table(pipeline: Pipeline) -> None:
    with duckdb.connect(str(pipeline.db_path)) as con:
        con.execute("drop table chess.players_games")


def assert_refused(pipeline: Pipeline, api: FakeChessCom, **env: str) -> None:
    api.stats.reset()
    run = pipeline.run(**env)
    assert run.returncode == 1, run.output
    assert "table players_games is missing from dataset 'chess'" in run.stdout, run.output
    assert "--full-refresh" in run.stdout
    assert api.stats.paths() == [], "nothing is requested from the API"
    # Not the dlt error of a load into the missing table, nor a report of players loaded.
    assert "does not exist" not in run.output and "players loaded" not in run.output


def test_a_dropped_games_table_stops_every_run_until_a_full_refresh(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    first = pipeline.run()
    assert first.returncode == 0, first.output
    assert_exactly_served(pipeline, world, first)

    drop_games_table(pipeline)
    # Nothing new upstream: on main this run exited 0 loading nothing, without the view.
    assert_refused(pipeline, api)
    # From an empty working directory (every Kestra run): the state restored from the
    # destination says the same.
    shutil.rmtree(pipeline.workdir / "dlt-data")
    assert_refused(pipeline, api)
    # New games upstream: on main every run failed with `Table players_games does not exist`.
    world.add_games(PLAYERS[0], recent_months(1)[0], 3)
    assert_refused(pipeline, api)

    refresh = pipeline.run("--full-refresh")
    assert refresh.returncode == 0, refresh.output
    assert_exactly_served(pipeline, world, refresh)
    columns = "player, opponent, colour, result, result_how, player_rating, opponent_rating, uuid"
    rows = set(pipeline.query(f"select {columns} from chess.games_by_player"))
    assert rows == expected_games_by_player(world, PLAYERS)

    again = pipeline.run()
    assert again.returncode == 0, again.output
    assert_exactly_served(pipeline, world, again)
