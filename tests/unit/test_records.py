import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chess_com.records import (
    InvalidRecordError,
    archive_urls,
    game_row,
    month_games,
    profile_row,
    stats_row,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def recorded_game() -> dict:
    return json.loads((FIXTURES / "games.json").read_text())["games"][0]


def test_game_row_times_and_flattened_sides() -> None:
    game = recorded_game()
    row = game_row(game)
    assert row["end_time"] == datetime.fromtimestamp(game["end_time"], tz=UTC)
    assert row["white__username"] == game["white"]["username"]
    assert row["black__result"] == game["black"]["result"]
    assert row["accuracies__white"] == game["accuracies"]["white"]
    assert "white" not in row and "black" not in row and "accuracies" not in row
    assert game["white"]["username"]  # the payload itself is not modified
    assert isinstance(game["end_time"], int)


def test_game_row_matches_what_dlt_would_flatten(tmp_path: Path) -> None:
    """Pre-flattening must not change the schema dlt would have produced."""
    import dlt

    game = recorded_game()
    schemas = []
    for shape in (lambda g: {**g, "end_time": game_row(g)["end_time"]}, game_row):
        pipeline = dlt.pipeline(
            f"shape_{len(schemas)}", destination="duckdb", pipelines_dir=str(tmp_path)
        )
        pipeline.extract(dlt.resource([shape(game)], name="games"))
        pipeline.normalize()
        schemas.append(sorted(pipeline.default_schema.get_table_columns("games")))
    assert schemas[0] == schemas[1]


def test_game_without_uuid_is_rejected_naming_its_url() -> None:
    game = recorded_game()
    del game["uuid"]
    with pytest.raises(InvalidRecordError, match=game["url"]):
        game_row(game)


def test_daily_game_start_time() -> None:
    game = {**recorded_game(), "start_time": 1588680000}
    assert game_row(game)["start_time"] == datetime(2020, 5, 5, 12, 0, tzinfo=UTC)


def test_profile_and_stats_rows() -> None:
    profile = json.loads((FIXTURES / "profile.json").read_text())
    row = profile_row(profile)
    assert row["joined"].tzinfo is UTC and row["player_id"] == profile["player_id"]
    with pytest.raises(InvalidRecordError, match="player_id"):
        profile_row({"@id": "https://api.chess.com/pub/player/x"})
    fetched = datetime(2024, 1, 1, tzinfo=UTC)
    stats = stats_row("erik", {"fide": 0}, fetched)
    assert stats == {"player": "erik", "fetched_at": fetched, "fide": 0}


# -- validation before dlt sees a row (issue 10 case 2) -------------------------------
@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"end_time": "yesterday"}, "end_time: Input should be a valid integer"),
        ({"end_time": 1e20}, "end_time: Unable to parse input string as an integer"),
        ({"end_time": 1_700_000_000_000}, "end_time: Input should be less than 4102444800"),
        ({"end_time": -5}, "end_time: Input should be greater than or equal to 0"),
        ({"uuid": ""}, "uuid: String should have at least 1 character"),
        ({"white": "FabianoCaruana"}, "white: Input should be a valid dictionary"),
        ({"black": {"rating": 1}}, "black.username: Field required"),
    ],
)
def test_invalid_game_names_field_rule_value_and_url(change: dict, problem: str) -> None:
    game = {**recorded_game(), **change}
    with pytest.raises(InvalidRecordError) as error:
        game_row(game)
    message = str(error.value)
    assert message.startswith("invalid game: ") and problem in message, message
    assert game["url"] in message


@pytest.mark.parametrize("game", [None, [1, 2], "a game", 7])
def test_a_game_that_is_not_an_object_is_invalid(game: object) -> None:
    with pytest.raises(InvalidRecordError, match=f"game is {type(game).__name__}, not an object"):
        game_row(game)


def test_numeric_strings_and_whole_floats_are_accepted_as_epochs() -> None:
    row = game_row({**recorded_game(), "end_time": "1588689059", "start_time": 1588680000.0})
    assert row["end_time"] == datetime(2020, 5, 5, 14, 30, 59, tzinfo=UTC)
    assert row["start_time"] == datetime(2020, 5, 5, 12, 0, tzinfo=UTC)


def test_profile_validation_names_the_field() -> None:
    profile = json.loads((FIXTURES / "profile.json").read_text())
    with pytest.raises(InvalidRecordError, match=r"last_online: .*\(got 'recently'\)"):
        profile_row({**profile, "last_online": "recently"})
    with pytest.raises(InvalidRecordError, match=r"player_id: .*\(got 'abc'\)"):
        profile_row({**profile, "player_id": "abc"})
    with pytest.raises(InvalidRecordError, match="profile is list, not an object"):
        profile_row([profile])  # type: ignore[arg-type]


def test_stats_key_is_the_tracked_player_whatever_the_payload_says() -> None:
    fetched = datetime(2024, 1, 1, tzinfo=UTC)
    assert stats_row("erik", {"player": None}, fetched)["player"] == "erik"


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({}, "games: Field required"),
        ({"games": None}, "games: Input should be a valid list (got None)"),
        ({"games": "x"}, "games: Input should be a valid list"),
        ({"games": {"a": 1}}, "games: Input should be a valid list"),
    ],
)
def test_month_document_needs_a_list_of_games(document: dict, problem: str) -> None:
    with pytest.raises(InvalidRecordError, match="invalid archive: ") as error:
        month_games(document)
    assert problem in str(error.value)


def test_month_games_are_returned_unchecked_for_game_row() -> None:
    assert month_games({"games": [None, {"uuid": "x"}]}) == [None, {"uuid": "x"}]


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({}, "archives: Field required"),
        ({"archives": None}, "archives: Input should be a valid list (got None)"),
        (
            {"archives": ["https://x/games/2024/01", 5]},
            "archives.1: Input should be a valid string",
        ),
    ],
)
def test_archive_list_shape(document: dict, problem: str) -> None:
    with pytest.raises(InvalidRecordError, match="invalid archive list: ") as error:
        archive_urls(document)
    assert problem in str(error.value)


def test_describe_lists_at_most_three_problems() -> None:
    game = {"uuid": "", "end_time": "x", "white": 1, "black": 2}
    with pytest.raises(InvalidRecordError) as error:
        game_row(game)
    assert str(error.value).count(" (got ") == 3 and error.value.args[0].endswith("and 1 more")
