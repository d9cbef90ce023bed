"""Every served value is kept: one type per column, other types in variant columns.

The loads here go through real dlt into DuckDB, twice where a type changes between
loads, and every value is read back and compared with what was served."""

import json
from pathlib import Path
from typing import Any

import pytest

from chess_com.columns import COERCED, WIDE_INTEGER, ColumnTypes, Moved, flatten, kind_of
from chess_com.records import GAME_COLUMNS, SCHEMA_CONTRACT, game_row

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CONFIG = FIXTURES.parent.parent / "pipelines" / "dlt" / ".dlt" / "config.toml"


def recorded_rows() -> list[dict]:
    """The recorded games, a daily game (start_time) and one with no accuracies."""
    games = json.loads((FIXTURES / "games.json").read_text())["games"]
    daily = {**games[1], "uuid": "daily-1", "start_time": 1588680000}
    bare = {k: v for k, v in games[2].items() if k != "accuracies"} | {"uuid": "bare-1"}
    return [game_row(g) for g in [*games, daily, bare]]


def games_types(stored: dict | None = None) -> ColumnTypes:
    return ColumnTypes("players_games", GAME_COLUMNS, stored=stored or {}, not_null=("uuid",))


class Warehouse:
    """A DuckDB file loaded by dlt as the source loads games (merge on uuid, contract)."""

    def __init__(self, tmp_path: Path, name: str) -> None:
        import dlt

        self.database = tmp_path / f"{name}.duckdb"
        self.pipeline = dlt.pipeline(
            name,
            destination=dlt.destinations.duckdb(str(self.database)),
            pipelines_dir=str(tmp_path / "dlt"),
            dataset_name="chess",
        )

    def load(self, item: object) -> None:
        import dlt

        from pipeline_runner import LOADER_FILE_FORMAT

        resource = dlt.resource(
            [item],
            name="players_games",
            write_disposition={"disposition": "merge", "deduplicated": True},
            primary_key="uuid",
            columns=GAME_COLUMNS,
            schema_contract=SCHEMA_CONTRACT,
        )
        self.pipeline.run(resource, loader_file_format=LOADER_FILE_FORMAT)

    def stored(self) -> dict:
        return self.pipeline.default_schema.get_table_columns("players_games")

    def columns(self) -> list[tuple[str, str, str]]:
        return self.query(
            "select column_name, data_type, is_nullable from information_schema.columns "
            "where table_schema = 'chess' and table_name = 'players_games' order by 1"
        )

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        import duckdb

        with duckdb.connect(str(self.database), read_only=True) as con:
            return con.execute(sql).fetchall()

    def rows(self) -> list[tuple[Any, ...]]:
        names = [c[0] for c in self.columns() if c[0] not in ("_dlt_id", "_dlt_load_id")]
        return self.query(f"select {', '.join(names)} from chess.players_games order by uuid")

    def value(self, uuid: str, column: str) -> Any:
        return self.query(f"select {column} from chess.players_games where uuid = '{uuid}'")[0][0]


def parquet_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import tomllib

    settings = tomllib.loads(CONFIG.read_text())["normalize"]["parquet_normalizer"]
    for key, value in settings.items():
        monkeypatch.setenv(f"NORMALIZE__PARQUET_NORMALIZER__{key.upper()}", str(value).lower())


def test_arrow_path_loads_exactly_as_dict_rows(tmp_path: Path, monkeypatch, capfd) -> None:
    """The Arrow table (with the project's normalizer settings) gives the dict path's
    table: same columns, types and nullability (`_dlt_id`, `_dlt_load_id` included), same
    values; and dlt finds nothing to warn about (it would, for every month, where an Arrow
    field disagrees with the resource's column hints)."""
    parquet_settings(monkeypatch)
    rows = recorded_rows()
    table, moved = games_types().arrow_table(rows)
    assert not isinstance(table, list) and table.num_rows == len(rows) and moved == []
    monkeypatch.setenv("RUNTIME__LOG_LEVEL", "WARNING")  # as .dlt/config.toml has it
    as_dicts, as_arrow = Warehouse(tmp_path, "dicts"), Warehouse(tmp_path, "arrow")
    as_dicts.load(rows)
    capfd.readouterr()
    as_arrow.load(table)
    assert "arrow schema" not in capfd.readouterr().err  # dlt's logger writes to stderr
    assert as_arrow.columns() == as_dicts.columns() and as_arrow.rows() == as_dicts.rows()
    columns = {name: kind for name, kind, _ in as_arrow.columns()}
    assert columns["end_time"] == columns["start_time"] == "TIMESTAMP WITH TIME ZONE"
    assert columns["white__rating"] == "BIGINT" and columns["rated"] == "BOOLEAN"
    assert columns["accuracies__white"] == "DOUBLE" and "_dlt_id" in columns


def test_arrow_table_types_nulls_and_missing_fields() -> None:
    rows = recorded_rows()
    rows[0]["unused"] = None
    table, _ = games_types().arrow_table(rows)
    assert "unused" not in table.column_names  # null everywhere: no column, as with dicts
    assert str(table.schema.field("end_time").type) == "timestamp[us, tz=UTC]"
    assert not table.schema.field("uuid").nullable
    # only the daily game has start_time, the bare game has no accuracies: nulls there
    assert table.column("start_time").null_count == len(rows) - 1
    assert table.column("accuracies__white").to_pylist()[-1] is None
    assert table.column("uuid").to_pylist() == [r["uuid"] for r in rows]


# (field, value in the first load, value in the second, column the second one lands in)
DRIFT = [
    ("extra", 4, 2.5, "extra__v_double"),
    ("extra", 4, "4", "extra__v_text"),
    ("extra", 4, True, "extra__v_bool"),
    ("extra", "a", 5, "extra__v_bigint"),
    ("extra", True, "yes", "extra__v_text"),
    ("extra", False, 1, "extra__v_bigint"),
    ("extra", 4, 2**63 + 5, "extra__v_text"),  # its exact digits
    ("extra", 2.5, 4, "extra"),  # an integer a double holds exactly: the same number
    ("extra", 2.5, 2**53 + 1, "extra__v_bigint"),  # a double would round it
    ("rated", True, 1, "rated__v_bigint"),  # declared columns too
    ("white__rating", 1500, "2385", "white__rating__v_text"),
    ("time_control", "600", 600, "time_control__v_bigint"),
    ("accuracies__white", 80.5, 100, "accuracies__white"),
]


@pytest.mark.parametrize(("field", "first", "second", "lands_in"), DRIFT)
@pytest.mark.parametrize("across_loads", [True, False], ids=["two loads", "one batch"])
def test_a_changed_type_keeps_every_value(
    tmp_path: Path, field: str, first: Any, second: Any, lands_in: str, across_loads: bool
) -> None:
    rows = recorded_rows()[:2]
    rows[0][field], rows[1][field] = first, second
    warehouse = Warehouse(tmp_path, "drift")
    types = games_types()
    if across_loads:
        table, moved = types.arrow_table(rows[:1])
        warehouse.load(table)
        # the next load's types start from what the destination has
        table, moved = games_types(warehouse.stored()).arrow_table(rows[1:])
    else:
        table, moved = types.arrow_table(rows)
    warehouse.load(table)
    first_uuid, second_uuid = rows[0]["uuid"], rows[1]["uuid"]
    assert warehouse.value(first_uuid, field) == first
    kept, served = warehouse.value(second_uuid, lands_in), second
    if type(second) is int and second > 2**63:
        second = str(second)  # its exact digits
    elif type(second) is int and lands_in == field:
        second = float(second)  # widened into a double column: the same number
    assert kept == second and type(kept) is type(second)
    if lands_in != field:
        assert warehouse.value(second_uuid, field) is None
        assert [(m.column, m.into, m.value) for m in moved] == [(field, lands_in, served)]
    else:
        assert moved == []


def test_integer_beyond_64_bits_in_a_new_column_is_text_and_reported(tmp_path: Path) -> None:
    rows = recorded_rows()[:1]
    rows[0]["huge"] = 2**70
    table, moved = games_types().arrow_table(rows)
    assert moved == [Moved(0, "huge", "huge", WIDE_INTEGER, 2**70)]
    warehouse = Warehouse(tmp_path, "wide")
    warehouse.load(table)
    assert warehouse.value(rows[0]["uuid"], "huge") == str(2**70)


def test_two_keys_naming_one_column_are_both_kept(tmp_path: Path) -> None:
    game = json.loads((FIXTURES / "games.json").read_text())["games"][0]
    moved: list[Moved] = []
    row = game_row({"timeControl": "180+2", **game, "white": {**game["white"], "Rating": 1}}, moved)
    assert row["time_control"] == game["time_control"]  # the key in normal form keeps it
    assert row["time_control__alt_timecontrol"] == "180+2"
    assert row["white__rating"] == game["white"]["rating"]
    assert row["white__rating__alt_whiterating"] == 1
    assert {(m.column, m.into, m.kind) for m in moved} == {
        ("time_control", "time_control__alt_timecontrol", "collision"),
        ("white__rating", "white__rating__alt_whiterating", "collision"),
    }
    warehouse = Warehouse(tmp_path, "collide")
    table, _ = games_types().arrow_table([row])
    warehouse.load(table)
    assert warehouse.value(row["uuid"], "time_control__alt_timecontrol") == "180+2"


def test_flatten_names_nested_keys_as_dlt_does(tmp_path: Path) -> None:
    import dlt

    record = {"Outer Key": {"innerKey": {"@id": 1}, "x-y": "z"}, "a": {"b": None}}
    pipeline = dlt.pipeline("naming", destination="duckdb", pipelines_dir=str(tmp_path))
    pipeline.extract(dlt.resource([record], name="t"))
    pipeline.normalize()
    assert set(flatten(record)) - {"a__b"} == set(
        c for c in pipeline.default_schema.get_table_columns("t") if not c.startswith("_dlt")
    )


def test_a_list_goes_to_dlt_as_rows_and_keeps_its_child_table(tmp_path: Path) -> None:
    rows = recorded_rows()[:2]
    rows[0]["moves"], rows[1]["moves"] = [1, 2], "e4"
    item, moved = games_types().arrow_table(rows)
    assert isinstance(item, list) and moved == []
    assert item[0]["moves"] == [1, 2] and item[1]["moves"] == "e4"
    warehouse = Warehouse(tmp_path, "lists")
    warehouse.load(item)
    assert warehouse.value(rows[1]["uuid"], "moves") == "e4"
    assert warehouse.query("select value from chess.players_games__moves order by 1") == [
        (1,),
        (2,),
    ]


def test_what_the_destination_has_wins_over_a_hint() -> None:
    types = games_types({"white__rating": {"name": "white__rating", "data_type": "text"}})
    rows = recorded_rows()[:1]
    _, moved = types.arrow_table(rows)
    assert [(m.column, m.into) for m in moved] == [("white__rating", "white__rating__v_bigint")]


def test_an_epoch_served_as_text_is_taken_and_reported() -> None:
    game = json.loads((FIXTURES / "games.json").read_text())["games"][0]
    moved: list[Moved] = []
    game_row({**game, "end_time": str(game["end_time"])}, moved, 3)
    assert moved == [Moved(3, "end_time", "end_time", COERCED, str(game["end_time"]))]


@pytest.mark.parametrize(
    ("value", "kind"),
    [(True, "bool"), (1, "bigint"), (-(2**63), "bigint"), (2**63, "text"), (1.0, "double")],
)
def test_kind_of(value: Any, kind: str) -> None:
    assert kind_of(value) == kind
