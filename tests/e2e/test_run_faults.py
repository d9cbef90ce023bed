"""Run-level faults (issue 10 cases 1, 3, 8, 9, 11): the real script against the fake API.

Each test checks the exit code, what the run says, and the DuckDB contents against what
the server served (nothing lost, nothing duplicated), after the fault and after a clean
re-run.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Pipeline, assert_exactly_served, clean_rerun
from tests.fake_chesscom import FakeChessCom, World, recent_months

pytestmark = pytest.mark.e2e

DLT_CLI = Path(sys.executable).parent / "dlt"


def kestra_outputs(stdout: str) -> dict:
    (outputs,) = [
        json.loads(line[2:-2])["outputs"]
        for line in stdout.splitlines()
        if line.startswith("::{") and '"outputs"' in line
    ]
    return outputs


# -- case 1: a killed --full-refresh -----------------------------------------------------


def kill_while_loading(
    pipeline: Pipeline, *args: str, refresh: bool = False, **env: str | None
) -> str:
    """Start the script, SIGKILL it once a package has started loading (a first job done;
    with `refresh`, a package that drops tables), return that package's load id."""
    normalized = pipeline.workdir / "dlt-data" / "pipelines" / "chess_com" / "load" / "normalized"
    proc = pipeline.popen(*args, **env)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the refresh finished before it could be killed"
            for package in normalized.glob("*") if normalized.is_dir() else []:
                try:
                    state = json.loads((package / "load_package_state.json").read_text())
                except (OSError, ValueError):
                    continue
                started = [
                    job
                    for folder in ("started_jobs", "completed_jobs")
                    if (package / folder).is_dir()
                    for job in (package / folder).iterdir()
                ]
                if started and (state.get("dropped_tables") or not refresh):
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=30)
                    # Killed mid-load: the package never reached dlt's `loaded` storage.
                    assert (normalized / package.name).is_dir()
                    return package.name
            time.sleep(0.005)
        raise AssertionError("no package started loading")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


@pytest.mark.parametrize("working_dir", ["emptied", "kept"])
def test_killed_full_refresh_is_completed_by_the_next_run(
    pipeline: Pipeline, api: FakeChessCom, world: World, working_dir: str
) -> None:
    assert pipeline.run().returncode == 0
    assert_exactly_served(pipeline, world)

    kill_while_loading(pipeline, "--full-refresh", refresh=True)
    if working_dir == "emptied":  # every Kestra run starts from an empty working directory
        shutil.rmtree(pipeline.workdir / "dlt-data")

    run = pipeline.run()
    assert run.returncode == 0, run.output
    assert_exactly_served(pipeline, world)
    if working_dir == "emptied":
        assert "resumed the full refresh requested at" in run.stdout
    else:  # the killed run's package is still there: loading it completes the refresh
        assert "loaded the pending package(s) of an interrupted run" in run.stdout

    clean = clean_rerun(pipeline, api, world)
    assert "resumed the full refresh" not in clean.stdout  # the marker went with the refresh


# -- case 3: a package that fails to load ------------------------------------------------


def set_first_pgn(world: World, pgn: str) -> str:
    """Serve `pgn` as the first game's of alice's second-to-last month; returns the month.

    A ~27 MB PGN passes every record check, but DuckDB cannot insert it under a 16 MB
    memory cap (`SMALL_DUCKDB`): a package that fails to load on every attempt, for a
    real reason, where nothing else does."""
    month = recent_months(4)[1]
    document = world.players["alice"].months[month]
    document.body["games"][0]["pgn"] = pgn
    document.touch()
    return month


UNLOADABLE_PGN = "1. e4 e5 " * 3_000_000
# The project's cap is 128 MB (.dlt/config.toml); its merge streams a 27 MB text through.
SMALL_DUCKDB = {"DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG": '{"memory_limit": "16MB"}'}


def test_a_package_that_fails_to_load_is_aborted_named_and_fetched_again(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    month = set_first_pgn(world, UNLOADABLE_PGN)

    failed = pipeline.run(**SMALL_DUCKDB)
    assert failed.returncode == 1, failed.output
    assert "FAILED" in failed.stdout
    assert "load failed at table players_games" in failed.stdout
    assert "Out of Memory" in failed.stdout
    assert "the package was aborted" in failed.stdout
    assert "games fetched, NOT committed" in failed.stdout
    uuids = pipeline.game_uuids() if pipeline.db_path.exists() else []
    assert len(uuids) == len(set(uuids)), "duplicate games"
    assert set(uuids) <= set(world.all_games())

    # The API serves a normal game again: the next run is not blocked by the failed
    # package and fetches everything it carried (its state was never committed).
    set_first_pgn(world, "1. e4 e5 2. Nf3 Nc6")
    api.stats.reset()
    rerun = pipeline.run()
    assert rerun.returncode == 0, rerun.output
    assert f"/pub/player/alice/games/{month}" in api.stats.paths(200)
    assert_exactly_served(pipeline, world)

    clean_rerun(pipeline, api, world)


def test_a_pending_package_that_cannot_load_does_not_block_the_next_runs(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    set_first_pgn(world, UNLOADABLE_PGN)
    # Killed while dlt retries the failing load: the package stays in the working directory.
    kill_while_loading(pipeline, **SMALL_DUCKDB)

    set_first_pgn(world, "1. e4 e5 2. Nf3 Nc6")
    run = pipeline.run(**SMALL_DUCKDB)
    assert run.returncode == 0, run.output
    assert "the pending package of an interrupted run could not be loaded and was aborted" in (
        run.stdout
    )
    assert "table players_games" in run.stdout
    assert_exactly_served(pipeline, world)

    clean_rerun(pipeline, api, world)


# -- case 8: two runs at once ------------------------------------------------------------


def test_a_second_run_is_refused_naming_the_first(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    api.latency = 2.0  # keep the first run busy (21 requests, 3 in flight: ~14 s)
    first = pipeline.popen()
    try:
        deadline = time.monotonic() + 60
        while not api.stats.paths():
            assert first.poll() is None, first.stdout.read() if first.stdout else ""
            assert time.monotonic() < deadline
            time.sleep(0.02)
        second = pipeline.run()
        assert second.returncode == 3, second.output
        assert "another run of pipeline 'chess_com' is in progress" in second.stderr
        assert f"pid {first.pid} on host {socket.gethostname()}, started 20" in second.stderr
        assert "Traceback" not in second.output
        out, _ = first.communicate(timeout=180)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, out
    assert_exactly_served(pipeline, world)

    api.latency = 0
    again = pipeline.run()
    assert again.returncode == 0, again.output
    assert_exactly_served(pipeline, world)


def test_default_working_directory_is_per_checkout_and_inspectable_with_dlt(
    pipeline: Pipeline, world: World
) -> None:
    home = pipeline.workdir / "home"
    home.mkdir()
    run = pipeline.run(DLT_DATA_DIR=None, HOME=str(home))
    assert run.returncode == 0, run.output
    assert_exactly_served(pipeline, world)
    working_dir = pipeline.workdir / ".dlt-data" / "pipelines" / "chess_com"
    assert (working_dir / "state.json").is_file()
    assert f"working directory: {working_dir}" in run.stdout
    assert not (home / ".dlt").exists()

    # The inspection command pipelines/chess_com.md gives ("Local state").
    info = subprocess.run(
        [str(DLT_CLI), "pipeline", "chess_com", "info"],
        cwd=pipeline.workdir,
        env=pipeline.env(DLT_DATA_DIR=".dlt-data", HOME=str(home)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert info.returncode == 0, info.stdout + info.stderr
    assert "chess_com" in info.stdout and "dataset_name: chess" in info.stdout


def test_two_checkouts_run_at_once_each_in_its_own_working_directory(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    api.latency = 0.05
    home = pipeline.workdir / "home"
    checkouts = [pipeline.workdir / "a", pipeline.workdir / "b"]
    for path in (home, *checkouts):
        path.mkdir()
    procs = [pipeline.popen(cwd=c, DLT_DATA_DIR=None, HOME=str(home)) for c in checkouts]
    outputs = [p.communicate(timeout=180)[0] for p in procs]
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out
    for checkout in checkouts:
        assert (checkout / ".dlt-data" / "pipelines" / "chess_com" / "state.json").is_file()
        pipeline.db_path = checkout / "chess_com.duckdb"
        assert_exactly_served(pipeline, world)


# -- case 9: settings errors -------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"SOURCES__CHESS__MAX_CONCURRENCY": "0"}, ["SOURCES__CHESS__MAX_CONCURRENCY", "0"]),
        ({"SOURCES__CHESS__MAX_CONCURRENCY": "abc"}, ["SOURCES__CHESS__MAX_CONCURRENCY", "abc"]),
        ({"RUNTIME__REQUEST_TIMEOUT": "abc"}, ["RUNTIME__REQUEST_TIMEOUT", "abc"]),
        ({"CHESS_FULL_REFRESH": "maybe"}, ["CHESS_FULL_REFRESH", "'maybe'", "true or false"]),
        (
            {"DESTINATION__DUCKDB__CREDENTIALS": "{workdir}/missing/chess.duckdb"},
            ["DESTINATION__DUCKDB__CREDENTIALS", "/missing", "does not exist"],
        ),
        ({"CHESS_SUMMARY_JSON": "{workdir}/missing/s.json"}, ["--summary-json", "/missing"]),
    ],
    ids=[
        "concurrency-0",
        "concurrency-abc",
        "timeout-abc",
        "full-refresh-maybe",
        "duckdb-dir",
        "summary-dir",
    ],
)
def test_settings_errors_exit_2_before_any_request_naming_the_setting(
    pipeline: Pipeline, api: FakeChessCom, env: dict[str, str], names: list[str]
) -> None:
    settings = {k: v.format(workdir=pipeline.workdir) for k, v in env.items()}
    run = pipeline.run(**settings)
    assert run.returncode == 2, run.output
    for name in names:
        assert name in run.stderr
    assert "Traceback" not in run.output
    assert api.stats.paths() == [], "no request before the settings are known good"
    assert not pipeline.db_path.exists(), "nothing loaded"


def test_summary_json_flag_in_a_missing_directory_is_refused_before_loading(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    run = pipeline.run("--summary-json", str(pipeline.workdir / "missing" / "s.json"))
    assert run.returncode == 2, run.output
    assert "--summary-json" in run.stderr and "does not exist" in run.stderr
    assert api.stats.paths() == [] and not pipeline.db_path.exists()

    fixed = pipeline.run("--summary-json", str(pipeline.workdir / "s.json"))
    assert fixed.returncode == 0, fixed.output
    assert json.loads((pipeline.workdir / "s.json").read_text())["ok"] is True
    assert_exactly_served(pipeline, world)


# -- case 11: credentials in URLs ----------------------------------------------------------


def test_credentials_in_the_base_url_never_reach_the_output(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    secret = "s3cr3t-pw-4417"
    base_url = api.base_url.replace("http://", f"http://loader:{secret}@")
    month = recent_months(4)[1]
    api.faults[f"/pub/player/carol-c/games/{month}"] = [500] * 50
    summary = pipeline.workdir / "summary.json"
    run = pipeline.run(
        "--summary-json",
        str(summary),
        SOURCES__CHESS__BASE_URL=base_url,
        RUNTIME__REQUEST_MAX_ATTEMPTS="2",
        KESTRA_EXECUTION_ID="4mNxVdO2rsZ1Sv4y",
    )
    assert run.returncode == 1, run.output
    written = summary.read_text()
    outputs = kestra_outputs(run.stdout)
    for text in (run.stdout, run.stderr, written, json.dumps(outputs)):
        assert secret not in text
        assert "loader:" not in text
    # The failing URL is still there to read, without its credentials.
    assert f"/player/carol-c/games/{month}" in outputs["players_failed"]["carol-c"]
    assert "http://***@127.0.0.1" in outputs["players_failed"]["carol-c"]
    assert "http://***@127.0.0.1" in json.loads(written)["players_failed"]["carol-c"]

    clean = clean_rerun(pipeline, api, world, SOURCES__CHESS__BASE_URL=base_url)
    assert secret not in clean.output
