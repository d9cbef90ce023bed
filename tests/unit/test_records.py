import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chess_com.records import (
    GAME_COLUMNS,
    InvalidRecordError,
    archive_urls,
    game_row,
    games_table,
    month_games,
    profile_row,
    stats_row,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CONFIG = FIXTURES.parent.parent / "pipelines" / "dlt" / ".dlt" / "config.toml"


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


def recorded_rows() -> list[dict]:
    """The recorded games, a daily game (start_time) and one with no accuracies."""
    games = json.loads((FIXTURES / "games.json").read_text())["games"]
    daily = {**games[1], "uuid": "daily-1", "start_time": 1588680000}
    bare = {k: v for k, v in games[2].items() if k != "accuracies"} | {"uuid": "bare-1"}
    return [game_row(g) for g in [*games, daily, bare]]


def loaded_games(tmp_path: Path, name: str, item: object) -> tuple[list, list]:
    """Columns (name, type, nullable) and rows of `item` loaded as the source loads games."""
    import dlt
    import duckdb

    from pipeline_runner import LOADER_FILE_FORMAT

    database = tmp_path / f"{name}.duckdb"
    pipeline = dlt.pipeline(
        name, destination=dlt.destinations.duckdb(str(database)), pipelines_dir=str(tmp_path)
    )
    resource = dlt.resource(
        [item],
        name="players_games",
        write_disposition={"disposition": "merge", "deduplicated": True},
        primary_key="uuid",
        columns=GAME_COLUMNS,
    )
    pipeline.run(resource, dataset_name="chess", loader_file_format=LOADER_FILE_FORMAT)
    with duckdb.connect(str(database), read_only=True) as con:
        columns = con.execute(
            "select column_name, data_type, is_nullable from information_schema.columns "
            "where table_schema = 'chess' and table_name = 'players_games' order by 1"
        ).fetchall()
        names = [c[0] for c in columns if c[0] not in ("_dlt_id", "_dlt_load_id")]
        rows = con.execute(f"select {', '.join(names)} from chess.players_games order by uuid")
        return columns, rows.fetchall()


def test_games_as_arrow_load_exactly_as_dict_rows(tmp_path: Path, monkeypatch, capfd) -> None:
    """The Arrow path (with the project's normalizer settings) gives the dict path's
    table: same columns, types and nullability (`_dlt_id`, `_dlt_load_id` included), same
    values; and dlt finds nothing to warn about in the tables' schema (it would, for
    every month, where an Arrow field disagrees with the resource's column hints)."""
    import tomllib

    settings = tomllib.loads(CONFIG.read_text())["normalize"]["parquet_normalizer"]
    for key, value in settings.items():
        monkeypatch.setenv(f"NORMALIZE__PARQUET_NORMALIZER__{key.upper()}", str(value).lower())
    rows = recorded_rows()
    table = games_table(rows)
    assert table is not None and table.num_rows == len(rows)
    monkeypatch.setenv("RUNTIME__LOG_LEVEL", "WARNING")  # as .dlt/config.toml has it
    as_dicts = loaded_games(tmp_path, "dicts", rows)
    capfd.readouterr()
    as_arrow = loaded_games(tmp_path, "arrow", table)
    assert "arrow schema" not in capfd.readouterr().err  # dlt's logger writes to stderr
    assert as_arrow == as_dicts
    columns = {name: kind for name, kind, _ in as_arrow[0]}
    assert columns["end_time"] == columns["start_time"] == "TIMESTAMP WITH TIME ZONE"
    assert columns["white__rating"] == "BIGINT" and columns["rated"] == "BOOLEAN"
    assert columns["accuracies__white"] == "DOUBLE" and "_dlt_id" in columns


def test_games_table_types_nulls_and_missing_fields() -> None:
    rows = recorded_rows()
    rows[0]["unused"] = None
    table = games_table(rows)
    assert table is not None
    assert "unused" not in table.column_names  # null everywhere: no column, as with dicts
    assert str(table.schema.field("end_time").type) == "timestamp[us, tz=UTC]"
    # only the daily game has start_time, the bare game has no accuracies: nulls there
    assert table.column("start_time").null_count == len(rows) - 1
    assert table.column("accuracies__white").to_pylist()[-1] is None
    assert table.column("uuid").to_pylist() == [r["uuid"] for r in rows]


@pytest.mark.parametrize(
    "field, values",
    [
        ("tournament", ["https://www.chess.com/tournament/x", 17]),  # text, then a number
        ("white__rating", [2800, "2800"]),  # a known column with a value of another type
        ("match", [{"url": "https://x", "round": 2}, None]),  # an object: dlt flattens it
        ("moves", [[1, 2], [3]]),  # a list: dlt makes a nested table
    ],
)
def test_rows_that_do_not_fit_arrow_types_go_to_dlt_as_dicts(field: str, values: list) -> None:
    rows = recorded_rows()[:2]
    for row, value in zip(rows, values, strict=True):
        row[field] = value
    assert games_table(rows) is None


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
