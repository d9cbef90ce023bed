"""Validate API payloads and shape them into rows before dlt sees them.

Each payload is checked against a pydantic model of what the tables and the view rely on
(keys, times, the two sides of a game); unknown fields pass through to dlt as they came.
A payload that fails raises `InvalidRecordError` naming the field, the rule and the bad
value, so one malformed game or profile is reported where it is (player, month, URL) by
the caller instead of stopping the extract for everyone.

Epoch seconds become timezone-aware timestamps (TIMESTAMP_TZ in Snowflake). A game's
`white`, `black` and `accuracies` objects are flattened here into the very columns dlt
would make (`white__username`, `accuracies__white`, ...): same schema, ~25% less
normalize time (README, "Benchmark").

A month's game rows then go to dlt as one Arrow table (`games_table`): dlt writes it to
Parquet as it is, skipping the row-by-row normalize of a million-game backfill. The
columns the tables rely on get fixed Arrow types; a batch whose other fields do not fit
one scalar type per column goes as dicts instead, where dlt's normalizer makes variant or
nested columns exactly as before: nothing is dropped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from dlt.common.schema.typing import TTableSchemaColumns
from pydantic import BaseModel, ConfigDict, Field, ValidationError

if TYPE_CHECKING:
    import pyarrow as pa

PROFILE_TIMES = ("last_online", "joined")
GAME_TIMES = ("start_time", "end_time")
GAME_OBJECTS = ("white", "black", "accuracies")
SEPARATOR = "__"  # dlt's path separator for flattened nested fields

GAME_COLUMNS: TTableSchemaColumns = {
    "uuid": {"data_type": "text", "nullable": False},
    "url": {"data_type": "text"},
    "end_time": {"data_type": "timestamp", "timezone": True},
    # Only daily games carry start_time: declare it so the column exists from the start.
    "start_time": {"data_type": "timestamp", "timezone": True, "nullable": True},
    "rated": {"data_type": "bool"},
    "pgn": {"data_type": "text"},
    "time_class": {"data_type": "text"},
}
PROFILE_COLUMNS: TTableSchemaColumns = {
    "player_id": {"data_type": "bigint", "nullable": False},
    "username": {"data_type": "text"},
    "last_online": {"data_type": "timestamp", "timezone": True},
    "joined": {"data_type": "timestamp", "timezone": True},
}
STATS_COLUMNS: TTableSchemaColumns = {
    "player": {"data_type": "text", "nullable": False},
    "fetched_at": {"data_type": "timestamp", "timezone": True},
}
ARCHIVE_COLUMNS: TTableSchemaColumns = {
    "player": {"data_type": "text", "nullable": False},
    "month": {"data_type": "text", "nullable": False},
    "status": {"data_type": "text"},
    "games": {"data_type": "bigint", "nullable": True},
    "etag": {"data_type": "text", "nullable": True},
    "last_modified": {"data_type": "text", "nullable": True},
    "fetched_at": {"data_type": "timestamp", "timezone": True},
    "final": {"data_type": "bool"},
}


# An epoch beyond 2100 is a unit error (milliseconds, 1e20), not a time.
MAX_EPOCH = 4_102_444_800
Epoch = Annotated[int, Field(ge=0, lt=MAX_EPOCH)]
Text = Annotated[str, Field(min_length=1)]


class InvalidRecordError(ValueError):
    """A payload that the tables cannot take; the message names the field and value."""


class _Payload(BaseModel):
    # Only what the tables rely on is declared; everything else goes to dlt untouched.
    model_config = ConfigDict(extra="allow")


class ProfileRecord(_Payload):
    player_id: int
    last_online: Epoch | None = None
    joined: Epoch | None = None


class Side(_Payload):
    username: Text
    result: Text
    rating: int | None = None


class GameRecord(_Payload):
    uuid: Text
    url: str | None = None
    end_time: Epoch
    start_time: Epoch | None = None
    white: Side
    black: Side


class MonthDocument(_Payload):
    """`/games/{YYYY}/{MM}`: the games are checked one by one (`game_row`)."""

    games: list[Any]


class ArchiveList(_Payload):
    """`/games/archives`: URLs of the monthly archives, oldest first."""

    archives: list[str]


def describe(exc: ValidationError, limit: int = 3) -> str:
    """`field: rule (got value)` for the first `limit` problems of a payload."""
    parts = []
    for error in exc.errors()[:limit]:
        where = ".".join(str(p) for p in error["loc"]) or "document"
        got = repr(error.get("input"))
        got = got if len(got) <= 60 else got[:57] + "..."
        parts.append(f"{where}: {error['msg']} (got {got})")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _check(model: type[_Payload], payload: Any, what: str) -> Any:
    if not isinstance(payload, dict):
        raise InvalidRecordError(f"{what} is {type(payload).__name__}, not an object")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise InvalidRecordError(f"invalid {what}: {describe(exc)}") from None


def month_games(document: dict[str, Any]) -> list[Any]:
    """The `games` of a monthly archive document (each still to check with `game_row`)."""
    return _check(MonthDocument, document, "archive").games


def archive_urls(document: dict[str, Any]) -> list[str]:
    return _check(ArchiveList, document, "archive list").archives


def from_epoch(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    return datetime.fromtimestamp(int(value), tz=UTC)


def profile_row(profile: dict[str, Any]) -> dict[str, Any]:
    record = _check(ProfileRecord, profile, "profile")
    row = dict(profile)
    row["player_id"] = record.player_id
    for name in PROFILE_TIMES:
        if name in row:
            row[name] = from_epoch(getattr(record, name))
    return row


def stats_row(player: str, stats: dict[str, Any], fetched_at: datetime) -> dict[str, Any]:
    # The tracked name is the key: a "player" field in the payload must not replace it.
    return {**stats, "player": player, "fetched_at": fetched_at}


def game_row(game: Any) -> dict[str, Any]:
    """One game as a row; raises `InvalidRecordError` naming the game's url if it has one."""
    try:
        record = _check(GameRecord, game, "game")
    except InvalidRecordError as exc:
        url = game.get("url") if isinstance(game, dict) else None
        raise InvalidRecordError(f"{exc} [{url}]" if isinstance(url, str) else str(exc)) from None
    row = dict(game)
    for name in GAME_TIMES:
        if name in row:
            row[name] = from_epoch(getattr(record, name))
    for name in GAME_OBJECTS:
        nested = row.pop(name, None)
        if isinstance(nested, dict):
            for key, value in nested.items():
                row[f"{name}{SEPARATOR}{key}"] = value
        elif nested is not None:
            row[name] = nested  # not an object: leave it to dlt as it came
    return row


# Arrow types of the game columns the tables and the view rely on (as game_row shapes
# them); other fields are inferred per batch. Strings are the default.
_GAME_ARROW_TYPES = {
    "end_time": "timestamp",
    "start_time": "timestamp",
    "rated": "bool",
    "white__rating": "int64",
    "black__rating": "int64",
    "accuracies__white": "float64",
    "accuracies__black": "float64",
}
_GAME_STRINGS = (
    "uuid", "url", "pgn", "time_class", "time_control", "rules", "eco", "fen", "tcn",
    "initial_setup", "tournament", "match", "white__username", "white__result",
    "white__@id", "white__uuid", "black__username", "black__result", "black__@id",
    "black__uuid",
)  # fmt: skip


def _arrow_type(name: str) -> pa.DataType | None:
    import pyarrow as pa

    kind = _GAME_ARROW_TYPES.get(name)
    if kind == "timestamp":
        return pa.timestamp("us", tz="UTC")
    if kind is not None:
        return pa.type_for_alias(kind)
    return pa.string() if name in _GAME_STRINGS else None


def games_table(rows: list[dict[str, Any]]) -> pa.Table | None:
    """`game_row` rows as one Arrow table, or None when some field does not fit one
    scalar Arrow type across the rows (e.g. text in one game, a number or an object in
    another): those rows are left to dlt's normalizer, which keeps every value.

    A field missing from a row is null there; a field null in every row is left out,
    as dlt's normalizer leaves it out of the dict path's schema.
    """
    import pyarrow as pa

    fields, arrays = [], []
    for name in dict.fromkeys(key for row in rows for key in row):
        values = [row.get(name) for row in rows]
        try:
            array = pa.array(values, type=_arrow_type(name))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            return None
        kind = array.type
        if array.null_count == len(array):
            continue
        if not (
            pa.types.is_string(kind)
            or pa.types.is_boolean(kind)
            or pa.types.is_int64(kind)
            or pa.types.is_float64(kind)
            or pa.types.is_timestamp(kind)
        ):
            return None  # an object or a list: dlt's normalizer flattens it
        # uuid is the key (validated, never null): say so, as the resource's hint does,
        # or dlt warns about the difference for every table
        fields.append(pa.field(name, kind, nullable=name != "uuid"))
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
