"""The chess pipeline's objects in the warehouse beyond dlt's tables: its views.

`games_by_player` is one row per tracked player per game, seen from that player's side.
`player_games` is the same view under its old name, one letter from the table
`players_games`: DEPRECATED, kept so existing queries keep working; it will be dropped
in a later release (use `games_by_player`). Where the data goes and how the destination is
checked is shared by every pipeline: `pipeline_runner.destination`.
"""

from __future__ import annotations

from typing import Any

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from pipeline_runner.destination import tag_session

GAMES_TABLE = "players_games"
ARCHIVES_TABLE = "players_archives"
VIEW = "games_by_player"
DEPRECATED_VIEW = "player_games"
FRESHNESS_VIEW = "player_freshness"

# Chess.com result codes (https://www.chess.com/news/view/published-data-api).
DRAW_RESULTS = ("agreed", "repetition", "stalemate", "insufficient", "50move", "timevsinsufficient")


def _create_view(dataset: str, view: str, copy_grants: bool) -> str:
    """`CREATE OR REPLACE VIEW`, on Snowflake with COPY GRANTS: a replaced view keeps the
    privileges granted on it (without, every run would drop readers' SELECT). Snowflake's
    syntax puts it before AS (https://docs.snowflake.com/en/sql-reference/sql/create-view
    #syntax); DuckDB has no such clause."""
    return f"CREATE OR REPLACE VIEW {dataset}.{view}{' COPY GRANTS' if copy_grants else ''} AS"


def games_by_player_sql(dataset: str, copy_grants: bool = False) -> str:
    """One row per tracked player per game, seen from that player's side.

    Plain SQL that DuckDB and Snowflake both accept (but `copy_grants`, Snowflake's only);
    dlt stores identifiers in a case both resolve unquoted (lower-case in DuckDB,
    upper-case in Snowflake).
    """
    draws = ", ".join(f"'{r}'" for r in DRAW_RESULTS)
    sides = []
    for colour, other in (("white", "black"), ("black", "white")):
        sides.append(
            f"""  SELECT
    lower(g.{colour}__username) AS player,
    g.{other}__username AS opponent,
    '{colour}' AS colour,
    g.{colour}__result AS player_result,
    g.{other}__result AS opponent_result,
    g.{colour}__rating AS player_rating,
    g.{other}__rating AS opponent_rating,
    g.time_class, g.time_control, g.rules, g.rated, g.end_time, g.url, g.uuid
  FROM {dataset}.{GAMES_TABLE} AS g"""
        )
    union = "\n  UNION ALL\n".join(sides)
    return f"""{_create_view(dataset, VIEW, copy_grants)}
WITH sides AS (
{union}
)
SELECT
  s.player, s.opponent, s.colour,
  CASE WHEN s.player_result = 'win' THEN 'win'
       WHEN s.player_result IN ({draws}) THEN 'draw'
       ELSE 'loss' END AS result,
  CASE WHEN s.player_result = 'win' THEN s.opponent_result ELSE s.player_result END AS result_how,
  s.player_rating, s.opponent_rating,
  s.time_class, s.time_control, s.rules, s.rated, s.end_time, s.url, s.uuid
FROM sides AS s
WHERE s.player IN (SELECT DISTINCT a.player FROM {dataset}.{ARCHIVES_TABLE} AS a)"""


def deprecated_view_sql(dataset: str, copy_grants: bool = False) -> str:
    """`player_games`, the old name of `games_by_player` (deprecated, same rows)."""
    return f"{_create_view(dataset, DEPRECATED_VIEW, copy_grants)} SELECT * FROM {dataset}.{VIEW}"


def player_freshness_sql(dataset: str, copy_grants: bool = False) -> str:
    """`player_freshness`: per tracked player, when its archive was last fetched
    successfully (downloaded or not modified), last tried, and its latest game: a player
    whose last_ok_at lags the others is failing (pipeline_runner's `pipeline_freshness`
    has the same per table)."""
    return f"""{_create_view(dataset, FRESHNESS_VIEW, copy_grants)}
SELECT a.player,
  max(CASE WHEN a.status IN ('downloaded', 'not_modified') THEN a.fetched_at END) AS last_ok_at,
  max(a.fetched_at) AS last_tried_at,
  max(g.last_game_at) AS last_game_at
FROM {dataset}.{ARCHIVES_TABLE} AS a
LEFT JOIN (
  SELECT player, max(end_time) AS last_game_at FROM {dataset}.{VIEW} GROUP BY player
) AS g ON g.player = a.player
GROUP BY a.player"""


def create_views(pipeline: dlt.Pipeline) -> bool:
    """(Re)create the games_by_player view (and its deprecated alias player_games) and
    player_freshness."""
    with pipeline.sql_client() as sql:
        tag_session(sql, pipeline.pipeline_name)  # QUERY_HISTORY finds these too
        tables = (GAMES_TABLE, ARCHIVES_TABLE)
        if not sql.has_dataset() or not all(_has_table(sql, t) for t in tables):
            return False
        dataset = sql.fully_qualified_dataset_name()
        copy_grants = sql.capabilities.sqlglot_dialect == "snowflake"
        sql.execute_sql(games_by_player_sql(dataset, copy_grants))
        sql.execute_sql(deprecated_view_sql(dataset, copy_grants))
        sql.execute_sql(player_freshness_sql(dataset, copy_grants))
    return True


def _has_table(sql: Any, table: str) -> bool:
    """Whether `table` exists. Only "does not exist" (dlt's `DatabaseUndefinedRelation`,
    on DuckDB and Snowflake alike) means absent; any other error (a lock, a lost
    connection, no privilege) is raised, so the after-load step fails saying why instead
    of skipping the views as if there were no data."""
    try:
        sql.execute_sql(f"SELECT 1 FROM {sql.make_qualified_table_name(table)} WHERE 1 = 0")
    except DatabaseUndefinedRelation:
        return False
    return True
