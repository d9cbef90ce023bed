import pytest

from warehouse import (
    DEPRECATED_VIEW,
    DRAW_RESULTS,
    GAMES_TABLE,
    VIEW,
    deprecated_view_sql,
    games_by_player_sql,
)


def test_games_by_player_sql_reads_both_sides_of_every_game() -> None:
    sql = games_by_player_sql('"CHESS"')
    assert sql.startswith('CREATE OR REPLACE VIEW "CHESS".games_by_player AS')
    assert sql.count('FROM "CHESS".players_games AS g') == 2
    assert "lower(g.white__username) AS player" in sql
    assert "lower(g.black__username) AS player" in sql
    for result in DRAW_RESULTS:
        assert f"'{result}'" in sql


def test_deprecated_view_is_the_new_one_under_its_old_name() -> None:
    assert deprecated_view_sql("chess") == (
        "CREATE OR REPLACE VIEW chess.player_games AS SELECT * FROM chess.games_by_player"
    )


@pytest.mark.parametrize("name", [VIEW, DEPRECATED_VIEW])
def test_no_view_name_is_one_edit_from_a_table_name_except_the_deprecated_one(name: str) -> None:
    # The reason for the rename: `player_games` vs the table `players_games`.
    close = _edit_distance(name, GAMES_TABLE) <= 1
    assert close == (name == DEPRECATED_VIEW)


def _edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]
