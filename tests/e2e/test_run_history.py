"""Run history in the warehouse: one `_pipeline_runs` row per run (failed and stopped runs
included) and the `pipeline_freshness` view, on DuckDB and on the Snowflake emulator."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import PLAYERS, Pipeline
from tests.e2e.test_snowflake_emulator import EmulatedSnowflake
from tests.fake_chesscom import FakeChessCom, World

pytestmark = pytest.mark.e2e

COLUMNS = (
    "pipeline, kestra_execution_id, exit_code, status, loads, rows_total, rows_json, "
    "players_ok, players_failed, players_failed_json, games_loaded, requests_json, errors, "
    "started_at, ended_at, peak_memory_mb"
)


def runs(pipeline: Pipeline) -> list[dict]:
    names = [c.strip() for c in COLUMNS.split(",")]
    rows = pipeline.query(f"select {COLUMNS} from chess._pipeline_runs order by started_at")
    return [dict(zip(names, row, strict=True)) for row in rows]


def test_every_run_is_a_row_failed_runs_included(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    first = pipeline.run()
    assert first.returncode == 0, first.output
    (row,) = runs(pipeline)
    assert row["pipeline"] == "chess_com" and row["kestra_execution_id"] is None
    assert (row["exit_code"], row["status"], row["loads"]) == (0, "ok", 1)
    assert row["players_ok"] == len(PLAYERS) and row["players_failed"] == 0
    assert row["games_loaded"] == len(world.all_games()) and row["errors"] is None
    assert json.loads(row["rows_json"])["players_games"] == len(world.all_games())
    assert json.loads(row["requests_json"]) == {"200": len(api.stats.paths(200))}
    assert row["started_at"] < row["ended_at"] and row["peak_memory_mb"] > 0

    api.override("/pub/player/bob_b/stats", status=500)  # every attempt fails
    failed = pipeline.run(KESTRA_EXECUTION_ID="5xYkTqZrW9fLmN2b", RUNTIME__REQUEST_MAX_ATTEMPTS="2")
    assert failed.returncode == 1, failed.output
    second = runs(pipeline)[1]
    assert (second["exit_code"], second["status"]) == (1, "failed")
    assert second["kestra_execution_id"] == "5xYkTqZrW9fLmN2b"
    assert second["players_failed"] == 1 and "bob_b" in json.loads(second["players_failed_json"])

    api.clear_overrides()
    refreshed = pipeline.run("--full-refresh")
    assert refreshed.returncode == 0, refreshed.output
    assert [r["status"] for r in runs(pipeline)] == ["ok", "failed", "ok"]  # history kept

    fresh = dict(pipeline.query("select table_name, last_loaded_at from chess.pipeline_freshness"))
    assert set(fresh) >= {"players_games", "players_archives", "players_profiles", "_pipeline_runs"}
    assert all(fresh.values()), fresh
    players = pipeline.query(
        "select player, last_ok_at, last_tried_at, last_game_at from chess.player_freshness"
    )
    assert {p for p, *_ in players} == {p.lower() for p in PLAYERS}
    assert all(ok and tried and game and ok <= tried for _, ok, tried, game in players), players


def test_a_run_that_never_reached_the_destination_leaves_no_row(pipeline: Pipeline) -> None:
    assert pipeline.run().returncode == 0
    usage = pipeline.run("--start-month", "2024-13")
    assert usage.returncode == 2, usage.output
    assert len(runs(pipeline)) == 1


def test_the_history_on_the_snowflake_emulator(pipeline: Pipeline, api: FakeChessCom) -> None:
    snowflake = EmulatedSnowflake(pipeline)
    run = snowflake.run()
    assert run.returncode == 0, run.stdout + run.stderr
    (row,) = snowflake.query(
        "select status, exit_code, players_ok, rows_total from chess._pipeline_runs"
    )
    row = {k.lower(): v for k, v in row.items()}
    assert (row["status"], row["exit_code"], row["players_ok"]) == ("ok", 0, len(PLAYERS))
    assert row["rows_total"] >= len(api.world.all_games())
    fresh = [
        {k.lower(): v for k, v in r.items()}
        for r in snowflake.query("select table_name, last_loaded_at from chess.pipeline_freshness")
    ]
    assert {r["table_name"] for r in fresh} >= {"players_games", "_pipeline_runs"}
    assert all(r["last_loaded_at"] for r in fresh), fresh
