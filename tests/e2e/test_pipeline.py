"""End to end: the real script, a real DuckDB file, the project's fake Chess.com API."""

from __future__ import annotations

import json
import re
import signal
import time
from collections import Counter

import pytest

from tests.conftest import ROOT, SOURCE_DIR
from tests.e2e.conftest import PLAYERS, Pipeline, expected_games_by_player
from tests.fake_chesscom import FakeChessCom, World, recent_months

pytestmark = pytest.mark.e2e


def requests_per_player(api: FakeChessCom) -> Counter[str]:
    return Counter(path.split("/")[3] for path in api.stats.paths())


def test_cold_run_loads_exactly_the_served_games(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    run = pipeline.run()
    assert run.returncode == 0, run.output

    uuids = pipeline.game_uuids()
    assert len(uuids) == len(set(uuids)), "duplicate games"
    assert set(uuids) == set(world.all_games())
    # Shared games sit in two archives but are stored once.
    served = sum(len(world.games_in(p)) for p in PLAYERS)
    assert served > len(uuids)

    assert pipeline.query("select count(*) from chess.players_profiles") == [(3,)]
    assert sorted(pipeline.query("select player from chess.players_stats")) == [
        ("alice",),
        ("bob_b",),
        ("carol-c",),
    ]
    archives = pipeline.query(
        "select player, month, status, games from chess.players_archives order by 1, 2"
    )
    expected = [
        (p.lower(), m, "downloaded", len(world.games_in(p, [m])))
        for p in sorted(PLAYERS, key=str.lower)
        for m in recent_months(4)
    ]
    assert archives == expected

    # Epoch seconds arrive as timezone-aware timestamps.
    (end_type,) = pipeline.query(
        "select data_type from information_schema.columns "
        "where table_schema = 'chess' and table_name = 'players_games' "
        "and column_name = 'end_time'"
    )[0]
    assert end_type == "TIMESTAMP WITH TIME ZONE"

    assert api.stats.by_status()[429] == 0
    assert f"games loaded: {len(uuids)}" in run.stdout
    assert "players loaded: 3" in run.stdout
    assert re.search(r"^peak memory: \d+ MB$", run.stdout, re.MULTILINE), run.stdout
    # A clean run warns about nothing (dlt once logged a schema warning for every month).
    assert "WARNING" not in run.stderr, run.stderr


def test_warm_rerun_downloads_nothing_then_picks_up_new_games(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    assert pipeline.run().returncode == 0
    before = set(pipeline.game_uuids())
    api.stats.reset()

    warm = pipeline.run()
    assert warm.returncode == 0, warm.output
    counts = api.stats.counts()
    assert counts[("games", 200)] == 0, "a game archive was downloaded again"
    assert all(n <= 3 for n in requests_per_player(api).values()), api.stats.paths()
    # Finished months are not even asked for; only the current month is re-checked.
    current = recent_months(1)[0]
    assert all(current in p for p in api.stats.paths() if "/games/" in p)
    assert set(pipeline.game_uuids()) == before
    assert "games loaded: 0" in warm.stdout

    new = world.add_games("Alice", current, 5)
    new += world.add_games("Alice", current, 2, opponent="Bob_B")
    api.stats.reset()
    fresh = pipeline.run()
    assert fresh.returncode == 0, fresh.output
    downloaded = api.stats.paths(200)
    assert sorted(p for p in downloaded if "/games/" in p) == [
        f"/pub/player/alice/games/{current}",
        f"/pub/player/bob_b/games/{current}",
    ]
    after = pipeline.game_uuids()
    assert len(after) == len(set(after))
    assert set(after) - before == {g["uuid"] for g in new}
    # The whole current month is downloaded again and merged on uuid.
    merged = {g["uuid"] for p in ("Alice", "Bob_B") for g in world.games_in(p, [current])}
    assert f"games loaded: {len(merged)}" in fresh.stdout


def test_unknown_and_gone_players_are_reported_while_others_load(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    run = pipeline.run("--players", "alice,nosuchplayer,gonzo,bob_b")
    assert run.returncode == 1, run.output
    assert "nosuchplayer: unknown player (404)" in run.stdout
    assert "gonzo: gone (410)" in run.stdout
    assert "players loaded: 2 (alice, bob_b)" in run.stdout
    expected = {g["uuid"] for p in ("Alice", "Bob_B") for g in world.games_in(p)}
    assert set(pipeline.game_uuids()) == expected
    # One request tells us the player is unknown; nothing else is asked for.
    per_player = requests_per_player(api)
    assert per_player["nosuchplayer"] == 1 and per_player["gonzo"] == 1

    # A 410 is remembered: the account is not requested again, and a known-gone player
    # is a warning, not a failure (issue 10 case 6; test_data_faults covers the policy).
    api.stats.reset()
    again = pipeline.run("--players", "alice,gonzo")
    assert again.returncode == 0, again.output
    assert "gonzo: account closed (410 Gone since" in again.stdout
    assert requests_per_player(api)["gonzo"] == 0


def test_failed_month_is_not_marked_done_and_is_fetched_next_run(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    month = recent_months(4)[1]  # a finished month
    path = f"/pub/player/carol-c/games/{month}"
    api.faults[path] = [500] * 50
    run = pipeline.run(RUNTIME__REQUEST_MAX_ATTEMPTS="2")
    assert run.returncode == 1, run.output
    assert f"carol-c: HTTP 500 from {api.base_url}/player/carol-c/games/{month}" in run.stdout
    assert "players loaded: 2" in run.stdout
    status = pipeline.query(
        f"select status from chess.players_archives where player='carol-c' and month='{month}'"
    )
    assert status == [("failed",)]

    api.faults.clear()
    api.stats.reset()
    rerun = pipeline.run()
    assert rerun.returncode == 0, rerun.output
    assert path in api.stats.paths(200)
    assert set(pipeline.game_uuids()) == set(world.all_games())


def test_parallel_requests_back_off_when_the_api_answers_429(
    pipeline: Pipeline, world: World
) -> None:
    # Latency keeps requests overlapping, so the default 3 in flight must meet 429s.
    with FakeChessCom(world, max_in_flight=1, latency=0.05) as strict:
        strict_pipeline = Pipeline(pipeline.workdir, strict)
        run = strict_pipeline.run()
        assert run.returncode == 0, run.output
        assert strict.stats.by_status()[429] > 0  # the default of 3 in flight is too many
        assert set(strict_pipeline.game_uuids()) == set(world.all_games())
        assert "429:" in run.stdout


def test_killed_run_then_rerun_loses_and_duplicates_nothing(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    api.latency = 0.1
    proc = pipeline.popen()
    deadline = time.monotonic() + 60
    while api.stats.counts()[("games", 200)] < 4:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    api.latency = 0
    run = pipeline.run()
    assert run.returncode == 0, run.output
    uuids = pipeline.game_uuids()
    assert len(uuids) == len(set(uuids))
    assert set(uuids) == set(world.all_games())


def test_full_refresh_reloads_everything(pipeline: Pipeline, api: FakeChessCom) -> None:
    assert pipeline.run().returncode == 0
    first = sorted(pipeline.game_uuids())
    api.stats.reset()
    run = pipeline.run("--full-refresh")
    assert run.returncode == 0, run.output
    assert api.stats.counts()[("games", 200)] == 12
    assert sorted(pipeline.game_uuids()) == first


def test_runs_from_the_script_directory_with_duckdb_file_from_env(
    pipeline: Pipeline, world: World
) -> None:
    target = pipeline.workdir / "elsewhere.duckdb"
    run = pipeline.run(
        "--start-month",
        recent_months(2)[0],
        cwd=SOURCE_DIR,
        DESTINATION__DUCKDB__CREDENTIALS=str(target),
    )
    assert run.returncode == 0, run.output
    assert target.exists() and not (SOURCE_DIR / "chess_com.duckdb").exists()
    pipeline.db_path = target
    expected = {g["uuid"] for p in PLAYERS for g in world.games_in(p, recent_months(2))}
    assert set(pipeline.game_uuids()) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--players", "ok_name,x"], "invalid Chess.com username(s): 'x'"),
        (["--start-month", "2024/13"], "invalid month '2024/13'"),
        (["--start-month", "2024/05", "--end-month", "2024/01"], "is after end month"),
        (["--dataset", "bad-name"], "invalid dataset 'bad-name'"),
    ],
)
def test_usage_errors_exit_2_before_any_request(
    pipeline: Pipeline, api: FakeChessCom, args: list[str], message: str
) -> None:
    run = pipeline.run(*args)
    assert run.returncode == 2, run.output
    assert message in run.stderr
    assert api.stats.paths() == []


def test_missing_player_setting_names_it(pipeline: Pipeline, api: FakeChessCom) -> None:
    empty_project = pipeline.workdir / "no-config"
    empty_project.mkdir()
    run = pipeline.run(SOURCES__CHESS__PLAYERS=None, DLT_PROJECT_DIR=str(empty_project))
    assert run.returncode == 2, run.output
    assert "SOURCES__CHESS__PLAYERS" in run.stderr
    assert api.stats.paths() == []


def kestra_messages(stdout: str) -> list[dict]:
    """Kestra reads `::{json}::` lines from a script task's stdout."""
    return [json.loads(line[2:-2]) for line in stdout.splitlines() if line.startswith("::{")]


def test_inside_kestra_reports_outputs_and_metrics_from_flow_style_env(
    pipeline: Pipeline, world: World
) -> None:
    # The flow passes its inputs as CHESS_* env vars, empty meaning "not set".
    run = pipeline.run(
        KESTRA_EXECUTION_ID="4mNxVdO2rsZ1Sv4y",
        CHESS_PLAYERS="alice,nosuchplayer",
        CHESS_START_MONTH="",
        CHESS_END_MONTH="",
        CHESS_FULL_REFRESH="false",
        SOURCES__CHESS__PLAYERS=None,
    )
    assert run.returncode == 1, run.output
    messages = kestra_messages(run.stdout)
    (outputs,) = [m["outputs"] for m in messages if "outputs" in m]
    assert outputs["players_loaded"] == ["alice"]
    assert outputs["players_failed"] == {"nosuchplayer": "unknown player (404)"}
    assert outputs["games_loaded"] == len(world.games_in("Alice"))
    assert outputs["rows"]["players_games"] == len(world.games_in("Alice"))
    metrics = {
        (m["name"], m["tags"].get("table")): m["value"]
        for msg in messages
        for m in msg.get("metrics", [])
    }
    assert metrics[("games_loaded", None)] == len(world.games_in("Alice"))
    assert metrics[("players_failed", None)] == 1
    assert metrics[("rows", "players_profiles")] == 1


def test_outside_kestra_prints_no_kestra_messages(pipeline: Pipeline) -> None:
    run = pipeline.run()
    assert run.returncode == 0, run.output
    assert kestra_messages(run.stdout) == []


def test_full_refresh_from_env_like_the_flow_passes_it(
    pipeline: Pipeline, api: FakeChessCom
) -> None:
    assert pipeline.run().returncode == 0
    api.stats.reset()
    assert pipeline.run(CHESS_FULL_REFRESH="true").returncode == 0
    assert api.stats.counts()[("games", 200)] == 12


def test_games_by_player_view_has_one_row_per_tracked_player_per_game(
    pipeline: Pipeline, world: World
) -> None:
    run = pipeline.run("--players", "alice,bob_b")
    assert run.returncode == 0, run.output
    columns = "player, opponent, colour, result, result_how, player_rating, opponent_rating, uuid"
    rows = set(pipeline.query(f"select {columns} from chess.games_by_player"))
    expected = expected_games_by_player(world, ["alice", "bob_b"])
    assert rows == expected
    # The deprecated old name serves the same rows.
    assert set(pipeline.query(f"select {columns} from chess.player_games")) == expected
    # A game between two tracked players appears once per side.
    shared = [u for u in {r[-1] for r in rows} if sum(r[-1] == u for r in rows) == 2]
    assert shared, "the fixture should contain games between tracked players"
    (types,) = pipeline.query(
        "select typeof(end_time), typeof(rated) from chess.games_by_player limit 1"
    )
    assert types == ("TIMESTAMP WITH TIME ZONE", "BOOLEAN")


def test_readme_win_rate_query_runs_on_the_view(pipeline: Pipeline, world: World) -> None:
    readme = (ROOT / "pipelines" / "snowflake.md").read_text()
    (sql,) = re.findall(r"```sql\n(-- win rate by time class.*?)```", readme, re.S)
    assert pipeline.run("--players", "alice").returncode == 0
    rows = pipeline.query(sql)
    rated = [g for g in world.games_in("alice") if g["rated"]]
    assert sum(r[2] for r in rows) == len(rated)
    for player, time_class, games, win_pct, _draw_pct in rows:
        mine = [g for g in rated if g["time_class"] == time_class]
        wins = sum(
            g[c]["result"] == "win" for g in mine for c in ("white", "black")
            if g[c]["username"].lower() == player
        )  # fmt: skip
        assert games == len(mine)
        assert win_pct == pytest.approx(round(100 * wins / games, 1))


def test_backfill_beyond_the_games_budget_runs_as_several_committed_loads(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    run = pipeline.run(SOURCES__CHESS__MAX_GAMES_PER_LOAD="30")
    assert run.returncode == 0, run.output
    (loads,) = re.findall(r"^loads: (\d+)$", run.stdout, re.M)
    assert int(loads) >= 2  # the budget is checked per month fetched: overshoot <= window
    uuids = pipeline.game_uuids()
    assert len(uuids) == len(set(uuids))
    assert set(uuids) == set(world.all_games())
    # Every document - profile, stats, archive list, month - was asked for exactly once across
    # the loads: a later load must not re-ask (even conditionally) what an earlier one answered.
    paths = api.stats.paths()
    assert len(paths) == len(set(paths)) == len(world.players) * 3 + 12, paths
    assert api.stats.paths() == api.stats.paths(200)


def test_summary_json_has_the_figures(pipeline: Pipeline, world: World) -> None:
    out = pipeline.workdir / "summary.json"
    run = pipeline.run("--summary-json", str(out))
    assert run.returncode == 0, run.output
    summary = json.loads(out.read_text())
    assert summary["games_loaded"] == len(world.all_games())
    assert summary["rows"]["players_games"] == len(world.all_games())
    assert summary["months"]["downloaded"] == 12 and summary["months_left"] == 0
    assert set(summary["step_seconds"]) == {"extract", "normalize", "load"}
    assert summary["requests"] == {"200": 21}


def test_a_failing_document_does_not_cost_the_players_other_data(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    api.faults["/pub/player/carol-c/stats"] = [503] * 10
    api.faults["/pub/player/bob_b/games/archives"] = [503] * 10
    run = pipeline.run(RUNTIME__REQUEST_MAX_ATTEMPTS="2")
    assert run.returncode == 1, run.output
    assert "carol-c: HTTP 503 from" in run.stdout and "bob_b: HTTP 503 from" in run.stdout
    uuids = set(pipeline.game_uuids())
    # carol-c's stats failed, not her games; bob_b's archive list failed: his months wait.
    assert {g["uuid"] for g in world.games_in("carol-c")} <= uuids
    assert pipeline.query("select player from chess.players_stats order by 1") == [
        ("alice",),
        ("bob_b",),
    ]
    assert pipeline.query("select distinct player from chess.players_archives order by 1") == [
        ("alice",),
        ("carol-c",),
    ]

    api.faults.clear()
    rerun = pipeline.run()
    assert rerun.returncode == 0, rerun.output
    assert set(pipeline.game_uuids()) == set(world.all_games())
