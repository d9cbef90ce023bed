"""Issue 19, schema evolution: fields that change type upstream cost no game and no value.

The real script against the fake API whose games change shape between months, between
runs and between the loads of one run. Every value served is looked up in DuckDB field by
field (in its column or a variant column beside it) and compared with what was served:
not only counts.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from dlt.common.normalizers.naming.snake_case import NamingConvention

from tests.e2e.conftest import Pipeline, Run, assert_exactly_served, clean_rerun
from tests.fake_chesscom import World, recent_months

pytestmark = pytest.mark.e2e

NAMING = NamingConvention()  # dlt's, not the project's: the columns a user would query
MONTHS = recent_months(4)
# Values of another type than the first months' int (the issue's cases).
LATER = {
    "float": 2.5,
    "text": "x7",
    "bool": True,
    "beyond int64": 2**63 + 5,
    "numeric text": "2385",
}


def change_games(world: World, months: list[str], change: Any) -> None:
    """`change(game)` every game of `months`, in every archive holding it (a game
    between two tracked players is served by both)."""
    with world.lock:
        for player in world.players.values():
            for month in months:
                doc = player.months.get(month)
                if doc is None:
                    continue
                for game in doc.body["games"]:
                    change(game)
                doc.touch()


def set_field(field: str, value: Any) -> Any:
    def change(game: dict[str, Any]) -> None:
        game[field] = value

    return change


def served_leaves(game: dict[str, Any]) -> dict[str, Any]:
    """A served game's values by the column dlt names them (nested objects flattened)."""
    leaves: dict[str, Any] = {}
    for key, value in game.items():
        name = NAMING.normalize_path(key)
        if isinstance(value, dict):
            for inner, leaf in value.items():
                leaves[NAMING.shorten_fragments(name, NAMING.normalize_path(inner))] = leaf
        else:
            leaves[name] = value
    return leaves


def stored_games(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    import duckdb

    with duckdb.connect(str(pipeline.db_path), read_only=True) as con:
        cursor = con.execute("select * from chess.players_games")
        names = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
        return {row[names.index("uuid")]: dict(zip(names, row, strict=True)) for row in rows}


def as_stored(value: Any, column: str) -> Any:
    """What a served value must read back as: epochs as timestamps, integers beyond 64
    bits as their digits; everything else exactly as served (type included)."""
    if column in ("end_time", "start_time"):
        return datetime.fromtimestamp(value, tz=UTC)
    if type(value) is int and not -(2**63) <= value < 2**63:
        return str(value)
    return value


def assert_values_kept(
    pipeline: Pipeline, world: World, run: Run | None = None
) -> set[tuple[str, str, str]]:
    """Every served game is stored once, and each of its values is stored exactly, in
    its column or in one variant column `<column>__v_<type>`; returns the values found in
    variant columns as (uuid, column, variant column)."""
    assert_exactly_served(pipeline, world, run)
    stored = stored_games(pipeline)
    in_variants = set()
    for uuid, game in world.all_games().items():
        row = stored[uuid]
        for column, value in served_leaves(game).items():
            if value is None:
                continue
            expected = as_stored(value, column)
            holders = [
                name
                for name in row
                if (name == column or name.startswith(column + "__v_")) and row[name] is not None
            ]
            assert len(holders) == 1, (uuid, column, value, holders)
            got = row[holders[0]]
            # an integer in a double column is the same number (exact up to 2^53)
            widened = type(expected) is int and type(got) is float and abs(expected) <= 2**53
            assert got == expected, (uuid, column, value, got)
            assert type(got) is type(expected) or widened, (uuid, column, value, got)
            if holders[0] != column:
                in_variants.add((uuid, column, holders[0]))
    return in_variants


def run_json(pipeline: Pipeline, **env: str | None) -> tuple[Run, dict[str, Any]]:
    path = pipeline.workdir / "summary.json"
    path.unlink(missing_ok=True)
    run = pipeline.run("--summary-json", str(path), **env)
    assert path.exists(), run.output
    return run, json.loads(path.read_text())


@pytest.mark.parametrize("later", sorted(LATER))
@pytest.mark.parametrize("loads", ["one load", "a load per month"])
def test_a_field_changing_type_between_months_keeps_every_game_and_value(
    world: World, pipeline: Pipeline, later: str, loads: str
) -> None:
    change_games(world, MONTHS[:2], set_field("extra", 4))
    change_games(world, MONTHS[2:], set_field("extra", LATER[later]))
    # 12 games per player and month, fetched one at a time: a month per load
    serial = {"SOURCES__CHESS__MAX_GAMES_PER_LOAD": "12", "SOURCES__CHESS__MAX_CONCURRENCY": "1"}
    run, summary = run_json(pipeline, **(serial if loads == "a load per month" else {}))
    assert run.returncode == 0, run.output
    if loads == "a load per month":
        assert summary["loads"] >= 4, run.output
    in_variants = assert_values_kept(pipeline, world, run)
    # Which month is answered first decides the column's type (4 in a double column is
    # the same number: no variant then); every value in a variant column is reported.
    records = summary["values_kept_apart_records"]
    assert in_variants == {(r["key"], r["field"], r["kept_in"]) for r in records}
    if later != "float":
        assert in_variants and "warning: players_games.extra: " in run.stdout
    assert clean_rerun(pipeline, pipeline.api, world).returncode == 0
    assert_values_kept(pipeline, world)


def test_a_type_change_after_an_incremental_load_keeps_the_new_games(
    world: World, pipeline: Pipeline
) -> None:
    change_games(world, MONTHS, set_field("extra", 4))
    first = pipeline.run()
    assert first.returncode == 0, first.output
    assert "note: created tables: " in first.stdout and "schema changed" not in first.stdout
    # the current month grows with games whose field is now a float, a bool, then text
    for value in (2.5, True, "yes"):
        new = {g["uuid"] for p in ("Alice", "Bob_B") for g in world.add_games(p, MONTHS[-1], 3)}

        def change(game: dict[str, Any], value: Any = value, new: set[str] = new) -> None:
            game["extra"] = value if game["uuid"] in new else game.get("extra", 4)

        change_games(world, [MONTHS[-1]], change)
        run = pipeline.run()
        assert run.returncode == 0, run.output
        assert assert_values_kept(pipeline, world, run)
        kind = {2.5: "double", True: "bool", "yes": "text"}[value]
        change = f"schema changed: players_games: variant column extra__v_{kind} ({kind})"
        assert f"warning: {change}" in run.stdout, run.output
    row = pipeline.query(
        "select count(extra), count(extra__v_double), count(extra__v_bool), "
        "count(extra__v_text) from chess.players_games"
    )[0]
    assert row[1:] == (6, 6, 6), row


def test_declared_columns_drift_into_variants_and_the_view_still_builds(
    world: World, pipeline: Pipeline
) -> None:
    """The view's own columns: a rating served as text, `rated` as 1, a time control as a
    number, a new camelCase field beside the snake_case one. The games load; the view
    shows what is typed (the variant columns hold the rest)."""

    def drift(game: dict[str, Any]) -> None:
        game["white"]["rating"] = str(game["white"]["rating"])
        game["rated"] = int(game["rated"])
        game["time_control"] = 600
        game["timeControl"] = "600"

    change_games(world, MONTHS[2:], drift)
    run, summary = run_json(pipeline)
    assert run.returncode == 0, run.output
    assert assert_values_kept_with_collisions(pipeline, world, run)
    kept_in = {g["kept_in"] for g in summary["values_kept_apart"]}
    for column in ("white__rating__v_text", "rated__v_bigint", "time_control__v_bigint"):
        assert column in kept_in, summary
    assert pipeline.query("select count(*) from chess.games_by_player")[0][0] > 0
    records = summary["values_kept_apart_records"]
    first = next(r for r in records if r["kept_in"] == "white__rating__v_text")
    assert first["player"] and first["month"] in MONTHS[2:] and first["key"]
    assert isinstance(first["value"], str)


def assert_values_kept_with_collisions(pipeline: Pipeline, world: World, run: Run) -> bool:
    """As `assert_values_kept`, with the camelCase twin read from its `__alt_` column."""
    stored = stored_games(pipeline)
    for uuid, game in world.all_games().items():
        if "timeControl" in game:
            assert stored[uuid]["time_control__alt_timecontrol"] == game["timeControl"]
    renamed = json.loads(json.dumps(world.all_games()))
    with world.lock:
        for player in world.players.values():
            for doc in player.months.values():
                for g in doc.body["games"]:
                    g.pop("timeControl", None)
    try:
        assert_values_kept(pipeline, world, run)
    finally:
        with world.lock:
            for player in world.players.values():
                for doc in player.months.values():
                    for g in doc.body["games"]:
                        if "timeControl" in renamed[g["uuid"]]:
                            g["timeControl"] = renamed[g["uuid"]]["timeControl"]
    return True


def test_profiles_and_stats_keep_a_changed_type_in_variant_columns(
    world: World, pipeline: Pipeline
) -> None:
    first = pipeline.run()
    assert first.returncode == 0, first.output
    with world.lock:
        alice = world.players["alice"]
        alice.profile.body["followers"] = 546.5
        alice.profile.body["is_streamer"] = "yes"
        alice.stats.body["chess_daily"]["last"]["rating"] = "1403?"
        alice.profile.touch()
        alice.stats.touch()
    run, summary = run_json(pipeline)
    assert run.returncode == 0, run.output
    profile = pipeline.query(
        "select followers, followers__v_double, is_streamer, is_streamer__v_text "
        "from chess.players_profiles where username = 'alice'"
    )
    assert profile == [(None, 546.5, None, "yes")]
    stats = pipeline.query(
        "select chess_daily__last__rating, chess_daily__last__rating__v_text "
        "from chess.players_stats where player = 'alice'"
    )
    assert stats == [(None, "1403?")]
    # the other players' rows keep their typed values
    assert pipeline.query(
        "select count(*) from chess.players_profiles where followers is not null"
    ) == [(len(world.players) - 1,)]
    kept = {(g["table"], g["kept_in"]) for g in summary["values_kept_apart"]}
    assert kept == {
        ("players_profiles", "followers__v_double"),
        ("players_profiles", "is_streamer__v_text"),
        ("players_stats", "chess_daily__last__rating__v_text"),
    }
