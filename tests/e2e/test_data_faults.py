"""Issue 10, data and HTTP faults: the real script against the fake API serving bad data.

Each test injects one fault (tests/fake_chesscom `FakeChessCom.override`), runs the script,
and checks its exit code, its summary and the DuckDB contents against what the server
served (0 lost, 0 duplicated); then it removes the fault and checks that a clean re-run
loads everything the server now serves.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    PLAYERS,
    Pipeline,
    Run,
    assert_loaded_exactly,
    clean_rerun,
)
from tests.fake_chesscom import FakeChessCom, World, recent_months

pytestmark = pytest.mark.e2e

FINISHED = recent_months(4)[1]  # a month that ended long ago: final once fetched


def month_path(player: str, month: str) -> str:
    return f"/pub/player/{player}/games/{month}"


def served_games(
    world: World, without: set[tuple[str, str]] = frozenset(), extra: list[Any] = ()
) -> set[str]:
    """Uuids of every game the server served: all documents but `without` (player, month),
    plus the valid games of a replaced document (`extra`)."""
    with world.lock:
        uuids = {
            game["uuid"]
            for name, player in world.players.items()
            for month, doc in player.months.items()
            if (name, month) not in without
            for game in doc.body["games"]
        }
    return uuids | {g["uuid"] for g in extra}


def summary(pipeline: Pipeline, run: Run) -> dict[str, Any]:
    path = pipeline.workdir / "summary.json"
    assert path.exists(), run.output
    return json.loads(path.read_text())


def run_json(pipeline: Pipeline, **env: str | None) -> tuple[Run, dict[str, Any]]:
    path = pipeline.workdir / "summary.json"
    path.unlink(missing_ok=True)
    run = pipeline.run("--summary-json", str(path), **env)
    return run, summary(pipeline, run)


def run_bounded(pipeline: Pipeline, seconds: float, **env: str | None) -> Run:
    """The script with a hard time limit (a run that never ends fails the test)."""
    proc = subprocess.run(
        pipeline.command(),
        cwd=pipeline.workdir,
        env=pipeline.env(**env),
        capture_output=True,
        text=True,
        timeout=seconds,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def archive_status(pipeline: Pipeline, player: str, month: str) -> list[tuple[Any, ...]]:
    return pipeline.query(
        "select status, final from chess.players_archives "
        f"where player = '{player}' and month = '{month}'"
    )


def with_games(world: World, player: str, month: str, change: Any) -> dict[str, Any]:
    """A copy of a month's document with its games changed by `change(games)`."""
    with world.lock:
        games = json.loads(json.dumps(world.players[player].months[month].body["games"]))
    return {"games": change(games)}


# -- case 2: one malformed month stops every player -----------------------------------
def _set(index: int, **fields: Any) -> Any:
    def change(games: list[Any]) -> list[Any]:
        games[index] = {**games[index], **fields}
        return games

    return change


def _replace(index: int, value: Any) -> Any:
    def change(games: list[Any]) -> list[Any]:
        games[index] = value
        return games

    return change


MONTH_FAULTS = {
    # whole document unusable: nothing of the month loads
    "games null": (lambda _: None, "games: Input should be a valid list"),
    "games a string": (lambda _: "none today", "games: Input should be a valid list"),
    "games an object": (lambda g: {"0": g[0]}, "games: Input should be a valid list"),
    # one game unusable: the month's other games load
    "a game null": (_replace(3, None), "game 4: game is NoneType, not an object"),
    "a game a list": (_replace(3, [1, 2]), "game 4: game is list, not an object"),
    "end_time yesterday": (_set(3, end_time="yesterday"), "end_time: Input should be"),
    "end_time 1e20": (_set(3, end_time=1e20), "end_time: Unable to parse input string as an "),
    "end_time in ms": (_set(3, end_time=1_700_000_000_000), "Input should be less than 41024"),
}


@pytest.mark.parametrize("fault", sorted(MONTH_FAULTS))
def test_malformed_month_fails_only_that_month_and_is_fetched_again(
    pipeline: Pipeline, api: FakeChessCom, world: World, fault: str
) -> None:
    change, problem = MONTH_FAULTS[fault]
    document = with_games(world, "carol-c", FINISHED, change)
    api.override(month_path("carol-c", FINISHED), body=document)

    run = pipeline.run()
    assert run.returncode == 1, run.output
    games = document["games"]
    # A month whose `games` is not a list loads nothing; otherwise all but game 4 load.
    valid = [g for i, g in enumerate(games) if i != 3] if isinstance(games, list) else []
    assert_loaded_exactly(
        pipeline, served_games(world, without={("carol-c", FINISHED)}, extra=valid), run
    )
    # Not done, not final: the month is asked for again, in full.
    assert archive_status(pipeline, "carol-c", FINISHED) == [("failed", False)]
    # The failure names the player, the month, the URL and what is wrong.
    url = f"{api.base_url}/player/carol-c/games/{FINISHED}"
    failure = [line for line in run.stdout.splitlines() if line.startswith("  - carol-c:")]
    assert len(failure) == 1, run.output
    assert f"{FINISHED}:" in failure[0] and url in failure[0] and problem in failure[0], failure
    assert "players loaded: 2 (alice, bob_b)" in run.stdout

    api.stats.reset()
    clean_rerun(pipeline, api, world)
    assert month_path("carol-c", FINISHED) in api.stats.paths(200)
    assert archive_status(pipeline, "carol-c", FINISHED) == [("downloaded", True)]


def test_profile_with_bad_last_online_fails_that_profile_only(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    profile = {**world.players["bob_b"].profile.body, "last_online": "recently"}
    api.override("/pub/player/bob_b", body=profile)

    run = pipeline.run()
    assert run.returncode == 1, run.output
    assert_loaded_exactly(pipeline, served_games(world), run)  # bob_b's games are fine
    assert pipeline.query("select username from chess.players_profiles order by 1") == [
        ("alice",),
        ("carol-c",),
    ]
    assert (
        f"bob_b: invalid profile: last_online: Input should be a valid integer, unable to "
        f"parse string as an integer (got 'recently') from {api.base_url}/player/bob_b"
    ) in run.stdout

    rerun = clean_rerun(pipeline, api, world)
    assert "players loaded: 3" in rerun.stdout
    assert pipeline.query("select count(*) from chess.players_profiles") == [(3,)]


# -- case 4: months recorded done without their games ---------------------------------
def test_empty_object_month_is_a_failure_not_a_done_month(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    api.override(month_path("alice", FINISHED), body={})
    run = pipeline.run()
    assert run.returncode == 1, run.output
    assert_loaded_exactly(pipeline, served_games(world, without={("alice", FINISHED)}), run)
    assert archive_status(pipeline, "alice", FINISHED) == [("failed", False)]
    assert (
        f"alice: {FINISHED}: invalid archive: games: Field required (got {{}}) in "
        f"{api.base_url}/player/alice/games/{FINISHED}"
    ) in run.stdout
    clean_rerun(pipeline, api, world)


def test_listed_month_answered_empty_is_not_recorded(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    api.override(month_path("alice", FINISHED), body={"games": []})
    run, report = run_json(pipeline)
    # Nothing the server served is lost, so the run succeeds, with a warning.
    assert run.returncode == 0, run.output
    assert_loaded_exactly(pipeline, served_games(world, without={("alice", FINISHED)}), run)
    clean_rerun(pipeline, api, world)  # the month was not recorded done: its games come now
    assert archive_status(pipeline, "alice", FINISHED) == [("downloaded", True)]

    warning = (
        f"alice: {FINISHED} is in the archive list but "
        f"{api.base_url}/player/alice/games/{FINISHED} has no games: not recorded"
    )
    assert warning in run.stdout
    assert any(w.startswith(warning) for w in report["warnings"])
    assert report["months"]["empty"] == 1


def test_304_to_a_request_without_validators_is_a_protocol_error(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    api.override(month_path("bob_b", FINISHED), not_modified=True)
    run = pipeline.run()
    assert run.returncode == 1, run.output
    assert_loaded_exactly(pipeline, served_games(world, without={("bob_b", FINISHED)}), run)
    assert archive_status(pipeline, "bob_b", FINISHED) == [("failed", False)]
    assert (
        f"bob_b: 304 Not Modified from {api.base_url}/player/bob_b/games/{FINISHED} "
        "to a request without validators"
    ) in run.stdout
    clean_rerun(pipeline, api, world)


def test_listed_month_answered_404_is_missing_with_a_warning(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    api.override(month_path("alice", FINISHED), status=404, body={"message": "Date is invalid."})
    run = pipeline.run()
    assert run.returncode == 0, run.output  # the server served nothing for it: nothing lost
    assert_loaded_exactly(pipeline, served_games(world, without={("alice", FINISHED)}), run)
    assert archive_status(pipeline, "alice", FINISHED) == []  # nothing recorded
    assert (
        f"warning: alice: {FINISHED} is in the archive list but 404 Not Found: "
        f"{api.base_url}/player/alice/games/{FINISHED}"
    ) in run.stdout
    clean_rerun(pipeline, api, world)


# -- case 5: a bad archive list is trusted for a month ---------------------------------
def test_empty_archive_list_is_not_cached(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    api.override("/pub/player/bob_b/games/archives", body={"archives": []})
    run = pipeline.run()
    assert run.returncode == 0, run.output
    # Only the current month is planned without a list: the served list named no other.
    current = recent_months(1)[0]
    earlier = {("bob_b", m) for m in recent_months(4) if m != current}
    assert_loaded_exactly(pipeline, served_games(world, without=earlier), run)
    clean_rerun(pipeline, api, world)  # the empty list was not kept: bob_b's months come now
    assert (
        f"warning: bob_b: archive list {api.base_url}/player/bob_b/games/archives is empty: "
        "read again next run"
    ) in run.stdout


ARCHIVE_FAULTS = {
    "archives null": (None, "archives: Input should be a valid list (got None)"),
    "archives an object": ({"a": 1}, "archives: Input should be a valid list"),
    "a URL that is no archive": (
        ["https://api.chess.com/pub/player/bob_b"],
        "not a monthly archive URL: 'https://api.chess.com/pub/player/bob_b'",
    ),
    "month 13": (
        ["https://api.chess.com/pub/player/bob_b/games/2024/13"],
        "no such month in archive URL",
    ),
    "a number": ([2024], "Input should be a valid string (got 2024)"),
}


@pytest.mark.parametrize("fault", sorted(ARCHIVE_FAULTS))
def test_malformed_archive_list_fails_that_player_and_is_not_cached(
    pipeline: Pipeline, api: FakeChessCom, world: World, fault: str
) -> None:
    archives, problem = ARCHIVE_FAULTS[fault]
    with world.lock:
        good = [
            f"{api.base_url}/player/bob_b/games/{m}" for m in sorted(world.players["bob_b"].months)
        ]
    bad = archives if not isinstance(archives, list) else [*good, *archives]
    api.override("/pub/player/bob_b/games/archives", body={"archives": bad})

    run = pipeline.run()
    assert run.returncode == 1, run.output
    # bob_b's months wait for a readable list; the others load.
    bob = {("bob_b", m) for m in recent_months(4)}
    assert_loaded_exactly(pipeline, served_games(world, without=bob), run)
    clean_rerun(pipeline, api, world)  # the bad list was not kept
    failure = [line for line in run.stdout.splitlines() if line.startswith("  - bob_b:")]
    assert len(failure) == 1, run.output
    assert "invalid archive list" in failure[0] and problem in failure[0], failure
    assert f"from {api.base_url}/player/bob_b/games/archives" in failure[0]


# -- case 6: a closed account fails every run forever ----------------------------------
def test_known_gone_player_is_a_warning_unknown_player_stays_a_failure(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    players = ",".join([*PLAYERS, "gonzo"])
    first, first_report = run_json(pipeline, SOURCES__CHESS__PLAYERS=players)
    assert first.returncode == 1, first.output  # the first report of a 410 fails the run
    assert "gonzo: gone (410)" in first.stdout

    api.stats.reset()
    second, report = run_json(pipeline, SOURCES__CHESS__PLAYERS=players)
    assert second.returncode == 0, second.output
    assert "gonzo" in first_report["players_failed"] and first_report["gone_players"] == {}
    assert "players failed: 0" in second.stdout
    assert "warning: gonzo: account closed (410 Gone since" in second.stdout
    assert list(report["gone_players"]) == ["gonzo"] and report["players_failed"] == {}
    assert "gonzo" not in report["players_loaded"]
    assert not [p for p in api.stats.paths() if "/gonzo" in p]  # not requested again
    assert_loaded_exactly(pipeline, served_games(world), second)

    third = pipeline.run(SOURCES__CHESS__PLAYERS=f"{players},nosuchplayer")
    assert third.returncode == 1, third.output
    assert "nosuchplayer: unknown player (404)" in third.stdout
    assert_loaded_exactly(pipeline, served_games(world), third)


# -- case 7: a trickling server is never cut off ----------------------------------------
def test_trickling_answer_is_cut_off_and_fetched_again(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    api.override(month_path("alice", FINISHED), trickle_bps=1)
    run = run_bounded(
        pipeline, 90, SOURCES__CHESS__REQUEST_DEADLINE_S="2", RUNTIME__REQUEST_TIMEOUT="2"
    )
    assert run.returncode == 1, run.output
    assert (
        f"alice: {api.base_url}/player/alice/games/{FINISHED} took longer than 2 s "
        "(SOURCES__CHESS__REQUEST_DEADLINE_S): cut off"
    ) in run.stdout
    assert_loaded_exactly(pipeline, served_games(world, without={("alice", FINISHED)}), run)
    assert archive_status(pipeline, "alice", FINISHED) == [("failed", False)]
    clean_rerun(pipeline, api, world)


def test_run_deadline_leaves_the_rest_for_the_next_run(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    api.latency = 0.3
    api.override(month_path("alice", FINISHED), trickle_bps=1)  # never finishes by itself
    run = run_bounded(
        pipeline, 90, SOURCES__CHESS__DEADLINE_S="3", SOURCES__CHESS__REQUEST_DEADLINE_S="600"
    )
    assert run.returncode == 0, run.output  # a planned stop, not a failure
    assert "warning: run deadline reached (SOURCES__CHESS__DEADLINE_S)" in run.stdout
    assert "left for the next run" in run.stdout
    # What was recorded downloaded is loaded, and nothing else.
    downloaded = pipeline.query(
        "select player, month from chess.players_archives where status = 'downloaded'"
    )
    everything = {(p.lower(), m) for p in PLAYERS for m in recent_months(4)}
    assert ("alice", FINISHED) not in downloaded
    assert_loaded_exactly(pipeline, served_games(world, without=everything - set(downloaded)), run)
    assert "players with work left for the next run: alice" in run.stdout
    assert re.search(r"players loaded: \d+ \((?!.*alice)", run.stdout), run.stdout
    rerun = clean_rerun(pipeline, api, world)
    assert "players loaded: 3" in rerun.stdout and "work left" not in rerun.stdout


# -- case 10: offline is slow and misleading --------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("base", "reason"),
    [
        ("http://127.0.0.1:{port}/pub", "127.0.0.1 is unreachable: connection refused"),
        # RFC 6761: .invalid never resolves.
        ("http://chess-api.invalid/pub", "chess-api.invalid is unreachable: host name does not"),
    ],
    ids=["refused", "no-such-host"],
)
def test_unreachable_api_is_reported_early_and_plainly(
    pipeline: Pipeline, tmp_path: Path, base: str, reason: str
) -> None:
    out = tmp_path / "offline.json"
    run = pipeline.run(
        "--summary-json",
        str(out),
        SOURCES__CHESS__BASE_URL=base.format(port=free_port()),  # nothing listens there
        RUNTIME__REQUEST_MAX_ATTEMPTS="5",
    )
    assert run.returncode == 1, run.output
    assert run.stdout.splitlines()[0].startswith(f"Nothing fetched: {reason}"), run.stdout
    assert "players failed: 3" in run.stdout
    report = json.loads(out.read_text())
    assert report["unreachable"].startswith(reason)
    assert report["requests"] == {}
    # Every attempt is counted; after 3 failures in a row no further request is made
    # (at most the requests already in flight, 3, fail once more).
    assert 3 <= report["request_attempts"] <= 3 + 3
    assert report["request_errors"] == {"ConnectionError": report["request_attempts"]}
    assert f"{report['request_attempts']} attempts" in run.stdout
    assert report["games_loaded"] == 0


# -- case 11 (client part): credentials in the base URL ---------------------------------
def test_credentials_in_base_url_never_appear_in_messages(
    pipeline: Pipeline, api: FakeChessCom, world: World, tmp_path: Path
) -> None:
    secret = "s3cr3t-pw"
    base = api.base_url.replace("http://", f"http://ops:{secret}@")
    api.override(month_path("alice", FINISHED), status=500)
    out = tmp_path / "creds.json"
    run = pipeline.run(
        "--summary-json",
        str(out),
        SOURCES__CHESS__BASE_URL=base,
        RUNTIME__REQUEST_MAX_ATTEMPTS="2",
    )
    assert run.returncode == 1, run.output
    masked = api.base_url.replace("http://", "http://***@")
    assert f"alice: HTTP 500 from {masked}/player/alice/games/{FINISHED}" in run.stdout
    assert secret not in run.output and secret not in out.read_text()

    offline = pipeline.run(
        SOURCES__CHESS__BASE_URL=f"http://ops:{secret}@127.0.0.1:{free_port()}/pub",
    )
    assert offline.returncode == 1 and secret not in offline.output, offline.output
