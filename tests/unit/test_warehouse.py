import json

import pytest

from warehouse import DRAW_RESULTS, player_games_sql, query_tag


@pytest.mark.parametrize("execution_id", [None, "4mNxVdO2rsZ1Sv4y"])
def test_query_tag_is_json_once_dlt_fills_its_placeholders(execution_id: str | None) -> None:
    template = query_tag("chess_com", execution_id)
    # dlt formats the template with these keys (TQueryTags) for every operation.
    tag = template.format(
        table="players_games", load_id="1795939024.03", source="chess", resource="r",
        pipeline_name="chess_com",
    )  # fmt: skip
    parsed = json.loads(tag)
    assert parsed["pipeline"] == "chess_com" and parsed["table"] == "players_games"
    assert parsed["load_id"] == "1795939024.03"
    assert parsed.get("kestra_execution_id") == execution_id
    assert "'" not in tag  # it is embedded in ALTER SESSION SET QUERY_TAG = '...'


def test_player_games_sql_reads_both_sides_of_every_game() -> None:
    sql = player_games_sql('"CHESS"')
    assert sql.startswith('CREATE OR REPLACE VIEW "CHESS".player_games AS')
    assert sql.count('FROM "CHESS".players_games AS g') == 2
    assert "lower(g.white__username) AS player" in sql
    assert "lower(g.black__username) AS player" in sql
    for result in DRAW_RESULTS:
        assert f"'{result}'" in sql
