"""Issue 19, items 3 and 6: redirects and the month boundary, the real script end to end.

A redirect to another player's (or month's) document must never be stored as the
requested one; a redirect to the same document (username in another letter case) is
followed. An archive list naming next month (Chess.com's clock a little ahead at midnight
UTC) skips that month with a warning instead of failing the player.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import (
    PLAYERS,
    Pipeline,
    Run,
    assert_exactly_served,
    assert_loaded_exactly,
    clean_rerun,
    loaded_games,
)
from tests.fake_chesscom import FakeChessCom, World, recent_months

pytestmark = pytest.mark.e2e

CURRENT = recent_months(1)[0]
FINISHED = recent_months(4)[1]  # ended long ago: final once fetched
STRANGER = "dave"  # exists on the server, not tracked


def month_path(player: str, month: str) -> str:
    return f"/pub/player/{player}/games/{month}"


def tracked_games(world: World, without: set[tuple[str, str]] = frozenset()) -> set[str]:
    """Uuids of the tracked players' games, but for the (player, month) in `without`."""
    with world.lock:
        return {
            game["uuid"]
            for name in (p.lower() for p in PLAYERS)
            for month, doc in world.players[name].months.items()
            if (name, month) not in without
            for game in doc.body["games"]
        }


def add_stranger(world: World) -> set[str]:
    """An untracked player with games in the months redirected to; their uuids."""
    world.add_player(STRANGER)
    games = world.add_games(STRANGER, FINISHED, 6) + world.add_games(STRANGER, CURRENT, 5)
    return {g["uuid"] for g in games}


def archive_status(pipeline: Pipeline, player: str, month: str) -> list[tuple[Any, ...]]:
    return pipeline.query(
        "select status, final from chess.players_archives "
        f"where player = '{player}' and month = '{month}'"
    )


def assert_fields_as_served(pipeline: Pipeline, world: World, player: str, month: str) -> None:
    """A few values of a month's games, field by field, against what the server served."""
    with world.lock:
        served = {g["uuid"]: g for g in world.players[player].months[month].body["games"]}
    rows = pipeline.query(
        "select uuid, url, end_time, time_class, white__username, white__rating, "
        "black__username, black__result from chess.players_games "
        f"where uuid in ({', '.join(repr(u) for u in served)})"
    )
    assert len(rows) == len(served)
    for uuid, url, end_time, time_class, white, white_rating, black, black_result in rows:
        game = served[uuid]
        assert (url, time_class) == (game["url"], game["time_class"])
        assert int(end_time.timestamp()) == game["end_time"]
        assert (white, white_rating) == (game["white"]["username"], game["white"]["rating"])
        assert (black, black_result) == (game["black"]["username"], game["black"]["result"])


def recover(pipeline: Pipeline, api: FakeChessCom, world: World, foreign: set[str]) -> Run:
    """The redirect removed: the next run loads exactly the tracked players' games."""
    api.clear_overrides()
    rerun = pipeline.run()
    assert rerun.returncode == 0, rerun.output
    assert_loaded_exactly(pipeline, tracked_games(world), rerun)
    assert not foreign & set(loaded_games(pipeline))
    return rerun


def test_301_of_a_past_month_to_another_player_is_a_failure_not_their_games(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    foreign = add_stranger(world)
    target = f"{api.base_url}/player/{STRANGER}/games/{FINISHED}"
    api.override(month_path("alice", FINISHED), status=301, headers={"Location": target})

    run = pipeline.run()
    assert run.returncode == 1, run.output
    failure = [line for line in run.stdout.splitlines() if line.startswith("  - alice:")]
    assert failure == [
        f"  - alice: {api.base_url}/player/alice/games/{FINISHED} redirected (301) to "
        f"{target}, another resource: not stored, fetched again next run"
    ], run.output
    assert not foreign & set(loaded_games(pipeline))
    assert_loaded_exactly(pipeline, tracked_games(world, without={("alice", FINISHED)}), run)
    assert archive_status(pipeline, "alice", FINISHED) == [("failed", False)]
    assert month_path(STRANGER, FINISHED) not in api.stats.paths()  # not even requested

    recover(pipeline, api, world, foreign)
    assert archive_status(pipeline, "alice", FINISHED) == [("downloaded", True)]
    assert_fields_as_served(pipeline, world, "alice", FINISHED)


def test_302_of_the_current_month_to_another_player_leaves_none_of_their_games(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    foreign = add_stranger(world)
    target = f"{api.base_url}/player/{STRANGER}/games/{CURRENT}"
    api.override(month_path("bob_b", CURRENT), status=302, headers={"Location": target})

    run = pipeline.run()
    assert run.returncode == 1, run.output
    assert (
        f"bob_b: {api.base_url}/player/bob_b/games/{CURRENT} redirected (302) to {target}"
    ) in run.stdout
    assert not foreign & set(loaded_games(pipeline))
    assert_loaded_exactly(pipeline, tracked_games(world, without={("bob_b", CURRENT)}), run)
    assert archive_status(pipeline, "bob_b", CURRENT) == [("failed", False)]

    recover(pipeline, api, world, foreign)
    assert archive_status(pipeline, "bob_b", CURRENT) == [("downloaded", False)]
    assert_fields_as_served(pipeline, world, "bob_b", CURRENT)


def test_redirect_to_the_same_player_in_another_letter_case_is_followed(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    for month in (FINISHED, CURRENT):
        target = f"{api.base_url}/player/ALICE/games/{month}"
        api.override(month_path("alice", month), status=301, headers={"Location": target})

    run = pipeline.run()
    assert run.returncode == 0, run.output
    assert_exactly_served(pipeline, world, run)
    assert archive_status(pipeline, "alice", FINISHED) == [("downloaded", True)]
    assert month_path("ALICE", FINISHED) in api.stats.paths(200)
    assert_fields_as_served(pipeline, world, "alice", FINISHED)

    # Conditional requests still work through the redirect: the open current month is
    # asked with its ETag at the new address, which answers 304.
    api.stats.reset()
    again = pipeline.run()
    assert again.returncode == 0, again.output
    assert month_path("ALICE", CURRENT) in api.stats.paths(304)
    (sent,) = [r.headers for r in api.stats.log if r.path == month_path("ALICE", CURRENT)]
    assert sent.get("If-None-Match")
    assert_exactly_served(pipeline, world, again)


def test_archive_list_naming_next_month_skips_it_with_a_warning(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    year, month = (int(x) for x in CURRENT.split("/"))
    after = f"{year + month // 12:04d}/{month % 12 + 1:02d}"
    with world.lock:
        months = sorted(world.players["carol-c"].months)
    listed = [f"{api.base_url}/player/carol-c/games/{m}" for m in [*months, after]]
    api.override("/pub/player/carol-c/games/archives", body={"archives": listed})

    run = pipeline.run()
    assert run.returncode == 0, run.output
    assert (
        f"warning: carol-c: archive list {api.base_url}/player/carol-c/games/archives names "
        f"{after}, after the current month {CURRENT}"
    ) in run.stdout
    assert run.stdout.count(f"names {after}") == 1
    assert_exactly_served(pipeline, world, run)
    assert month_path("carol-c", after) not in api.stats.paths()
    assert archive_status(pipeline, "carol-c", after) == []
    # The list is kept for this month without its validators: once the month turns, it is
    # read in full (a 304 must not bring back a list that lacks the skipped month).
    state = json.loads((pipeline.workdir / "dlt-data/pipelines/chess_com/state.json").read_text())
    books = state["sources"]["chess"]["resources"]["archive_months"]["players"]
    listing = books["carol-c"]["archives"]
    assert listing["listed_in"] == CURRENT and after not in listing["months"]
    assert listing["etag"] is None and listing["last_modified"] is None
    assert books["alice"]["archives"]["etag"]

    clean_rerun(pipeline, api, world)
