"""Where the data goes: DuckDB for development, Snowflake for production.

Builds the dlt destination, checks it before any request to Chess.com (credentials
complete, private key readable, account reachable: errors name the setting, never its
value) and creates the `player_games` view after each load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException

PIPELINE_NAME = "chess_com"
DUCKDB_FILE = f"{PIPELINE_NAME}.duckdb"
DESTINATIONS = ("snowflake", "duckdb")
SNOWFLAKE_ENV = "DESTINATION__SNOWFLAKE__CREDENTIALS__"
SNOWFLAKE_REQUIRED = ("DATABASE", "HOST", "USERNAME")
SNOWFLAKE_AUTH = ("PASSWORD", "PRIVATE_KEY", "PRIVATE_KEY_PATH")
# Parquet keeps types exact on the way in (tz-aware timestamps, booleans, 64-bit ints),
# is compressed for the PUT to the stage, and COPY INTO matches its columns by name.
LOADER_FILE_FORMAT = "parquet"

# Chess.com result codes (https://www.chess.com/news/view/published-data-api).
DRAW_RESULTS = ("agreed", "repetition", "stalemate", "insufficient", "50move", "timevsinsufficient")


class DestinationError(Exception):
    """The destination cannot be used as configured; the message says what to change."""


def query_tag(pipeline_name: str, execution_id: str | None) -> str:
    """Snowflake QUERY_TAG template: dlt fills in the {placeholders} per operation.

    JSON, so that a DBA can filter QUERY_HISTORY with `try_parse_json(query_tag):pipeline`.
    """
    tag = {
        "app": "chess-pipelines",
        "pipeline": pipeline_name,
        "table": "{table}",
        "load_id": "{load_id}",
    }
    if execution_id:
        tag["kestra_execution_id"] = execution_id
    # Escape braces for str.format, keep dlt's placeholders; drop quotes Snowflake would reject.
    text = json.dumps(tag, separators=(",", ":")).replace("'", "")
    text = text.replace("{", "{{").replace("}", "}}")
    return text.replace("{{table}}", "{table}").replace("{{load_id}}", "{load_id}")


def make_destination(name: str, execution_id: str | None = None) -> Any:
    if name == "duckdb":
        if os.environ.get("DESTINATION__DUCKDB__CREDENTIALS"):
            return dlt.destinations.duckdb()
        return dlt.destinations.duckdb(credentials=str(Path.cwd() / DUCKDB_FILE))
    return dlt.destinations.snowflake(
        # TIMESTAMP_TZ rather than dlt's default TIMESTAMP_LTZ: the offset is stored with
        # each value, so results do not depend on the session's TIMEZONE.
        use_timestamp_tz=True,
        query_tag=query_tag(PIPELINE_NAME, execution_id),
    )


def check_destination(pipeline: dlt.Pipeline) -> None:
    """Fail fast, before any request to Chess.com, with the setting to fix."""
    try:
        client = pipeline.destination_client()
    except ConfigFieldMissingException as exc:
        required = ", ".join(SNOWFLAKE_ENV + f for f in SNOWFLAKE_REQUIRED)
        auth = " or ".join(SNOWFLAKE_ENV + f for f in SNOWFLAKE_AUTH)
        first_line = str(exc).splitlines()[0]
        raise DestinationError(
            f"{pipeline.destination.destination_name} credentials are incomplete "
            f"({first_line}).\n  Set {required} and {auth} "
            "(optionally ...__WAREHOUSE and ...__ROLE),\n"
            "  or load locally with --destination duckdb."
        ) from None
    if pipeline.destination.destination_name != "snowflake":
        return
    try:
        client.config.credentials.to_connector_params()
    except Exception:
        raise DestinationError(
            f"{SNOWFLAKE_ENV}PRIVATE_KEY (or ..._PRIVATE_KEY_PATH) is not a readable private "
            "key: expected PEM text or base64 of PEM/DER, and "
            f"{SNOWFLAKE_ENV}PRIVATE_KEY_PASSPHRASE if the key is encrypted."
        ) from None
    try:
        with pipeline.sql_client() as sql:
            sql.execute_sql("SELECT 1")
    except Exception as exc:
        raise DestinationError(
            f"cannot connect to Snowflake ({type(exc).__name__}): check the account identifier "
            f"in {SNOWFLAKE_ENV}HOST (e.g. myorg-myaccount, without .snowflakecomputing.com), "
            f"{SNOWFLAKE_ENV}USERNAME and the credentials."
        ) from None


def player_games_sql(dataset: str) -> str:
    """One row per tracked player per game, seen from that player's side.

    Plain SQL that DuckDB and Snowflake both accept; dlt stores identifiers in a case
    both resolve unquoted (lower-case in DuckDB, upper-case in Snowflake).
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
  FROM {dataset}.players_games AS g"""
        )
    union = "\n  UNION ALL\n".join(sides)
    return f"""CREATE OR REPLACE VIEW {dataset}.player_games AS
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
WHERE s.player IN (SELECT DISTINCT a.player FROM {dataset}.players_archives AS a)"""


def create_views(pipeline: dlt.Pipeline) -> bool:
    """(Re)create the `player_games` view once the tables it reads exist."""
    with pipeline.sql_client() as sql:
        tables = ("players_games", "players_archives")
        if not sql.has_dataset() or not all(_has_table(sql, t) for t in tables):
            return False
        sql.execute_sql(player_games_sql(sql.fully_qualified_dataset_name()))
    return True


def _has_table(sql: Any, table: str) -> bool:
    try:
        sql.execute_sql(f"SELECT 1 FROM {sql.make_qualified_table_name(table)} WHERE 1 = 0")
    except Exception:
        return False
    return True
