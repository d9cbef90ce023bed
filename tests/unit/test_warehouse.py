from pathlib import Path
from typing import Any

import dlt
import pytest
from dlt.common.configuration.container import Container
from dlt.common.pipeline import PipelineContext
from dlt.destinations.exceptions import DatabaseTransientException

from warehouse import (
    ARCHIVES_TABLE,
    DEPRECATED_VIEW,
    DRAW_RESULTS,
    GAMES_TABLE,
    VIEW,
    _has_table,
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


@pytest.mark.parametrize("make_sql", [games_by_player_sql, deprecated_view_sql])
def test_on_snowflake_a_replaced_view_keeps_its_grants(make_sql: Any) -> None:
    """COPY GRANTS where Snowflake's CREATE VIEW syntax has it, before AS
    (https://docs.snowflake.com/en/sql-reference/sql/create-view#syntax): sqlglot's Snowflake
    grammar reads it as the view's CopyGrantsProperty. DuckDB's SQL has none (it has no
    such clause): the DuckDB e2e tests run that SQL."""
    import sqlglot
    from sqlglot import exp

    snowflake = make_sql('"CHESS"', copy_grants=True)
    assert " COPY GRANTS AS" in snowflake.splitlines()[0]
    view = sqlglot.parse_one(snowflake, read="snowflake")
    assert isinstance(view, exp.Create) and view.args["kind"] == "VIEW"
    properties = view.args["properties"].expressions
    assert [type(p) for p in properties] == [exp.CopyGrantsProperty]
    assert "COPY GRANTS" not in make_sql("chess")


def test_the_duckdb_view_sql_runs_on_duckdb(tmp_path: Path) -> None:
    import duckdb

    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        conn.execute("CREATE SCHEMA chess")
        columns = ", ".join(
            f"{side}__{field} TEXT"
            for side in ("white", "black")
            for field in ("username", "result", "rating")
        )
        conn.execute(
            f"CREATE TABLE chess.{GAMES_TABLE} ({columns}, time_class TEXT, time_control TEXT, "
            "rules TEXT, rated BOOLEAN, end_time TIMESTAMPTZ, url TEXT, uuid TEXT)"
        )
        conn.execute(f"CREATE TABLE chess.{ARCHIVES_TABLE} (player TEXT)")
        conn.execute(games_by_player_sql("chess"))
        conn.execute(deprecated_view_sql("chess"))
        conn.execute(games_by_player_sql("chess"))  # replaced, as on every run
        assert conn.execute(f"SELECT count(*) FROM chess.{DEPRECATED_VIEW}").fetchone() == (0,)


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


def test_has_table_means_absent_only_when_the_table_does_not_exist(tmp_path: Path) -> None:
    pipeline = dlt.pipeline(
        pipeline_name="views_check",
        pipelines_dir=str(tmp_path / "dlt"),
        destination=dlt.destinations.duckdb(credentials=str(tmp_path / "w.duckdb")),
        dataset_name="chess",
    )
    try:
        with pipeline.sql_client() as sql:
            sql.create_dataset()
            games = sql.make_qualified_table_name(GAMES_TABLE)
            sql.execute_sql(f"CREATE TABLE {games} (uuid TEXT)")
            assert _has_table(sql, GAMES_TABLE)
            assert not _has_table(sql, ARCHIVES_TABLE)
    finally:
        Container()[PipelineContext].deactivate()  # no active pipeline left to other tests


class FailingSql:
    """A SQL client whose every query fails for a reason other than a missing table."""

    def make_qualified_table_name(self, table: str) -> str:
        return f"chess.{table}"

    def execute_sql(self, sql: str) -> None:
        raise DatabaseTransientException(RuntimeError("connection reset by peer"))


def test_has_table_raises_any_other_error_instead_of_skipping_the_views() -> None:
    with pytest.raises(DatabaseTransientException, match="connection reset"):
        _has_table(FailingSql(), GAMES_TABLE)
