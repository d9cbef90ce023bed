import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chess_com.records import InvalidRecordError, game_row, profile_row, stats_row

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
