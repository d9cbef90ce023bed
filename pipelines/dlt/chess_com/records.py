"""Validate API payloads and shape them into rows before dlt sees them.

Each payload is checked against a pydantic model of what the tables and the view rely on
(keys, times, the two sides of a game); unknown fields pass through to dlt as they came.
A payload that fails raises `InvalidRecordError` naming the field, the rule and the bad
value, so one malformed game or profile is reported where it is (player, month, URL) by
the caller instead of stopping the extract for everyone.

Epoch seconds become timezone-aware timestamps (TIMESTAMP_TZ in Snowflake). Nested
objects are flattened here into the very columns dlt would make (`white__rating`,
`accuracies__white`, ...), and each batch's values are placed in columns of one type by
`columns.ColumnTypes` (a value of another type goes to a variant column, never cast), so a
month's games can go to dlt as one Arrow table: no row-by-row normalize for a
million-game backfill (bench/README.md), and every served value kept.

The data contract (pipelines/chess_com.md, "Schema evolution"): the fields declared in the models below
are frozen: a record whose key, times or sides break them is not loaded and is reported
with its player, month, field and value (the month is fetched again next run). Every
other field evolves: new fields become new columns, a changed type a variant column.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from dlt.common.schema.typing import TTableSchemaColumns
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from .columns import COERCED, Moved, flatten

PROFILE_TIMES = ("last_online", "joined")
GAME_TIMES = ("start_time", "end_time")
TIMES = {*PROFILE_TIMES, *GAME_TIMES}

GAME_COLUMNS: TTableSchemaColumns = {
    "uuid": {"data_type": "text", "nullable": False},
    "url": {"data_type": "text"},
    "end_time": {"data_type": "timestamp", "timezone": True},
    # Only daily games carry start_time: declare it so the column exists from the start.
    "start_time": {"data_type": "timestamp", "timezone": True, "nullable": True},
    "rated": {"data_type": "bool"},
    "pgn": {"data_type": "text"},
    "time_class": {"data_type": "text"},
    # What the games_by_player view reads: typed from the first load on, so a month whose
    # accuracies happen to be whole numbers does not make a bigint column of them.
    "time_control": {"data_type": "text", "nullable": True},
    "rules": {"data_type": "text", "nullable": True},
    "white__username": {"data_type": "text"},
    "white__result": {"data_type": "text"},
    "white__rating": {"data_type": "bigint", "nullable": True},
    "black__username": {"data_type": "text"},
    "black__result": {"data_type": "text"},
    "black__rating": {"data_type": "bigint", "nullable": True},
    "accuracies__white": {"data_type": "double", "nullable": True},
    "accuracies__black": {"data_type": "double", "nullable": True},
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

# dlt's contract for every table (pipelines/chess_com.md, "Schema evolution"): everything evolves at
# dlt's level, because `columns` has already put each value in a column of its type; what
# is frozen is frozen per field, by the models below. Not "freeze" on data types: dlt
# compares hints such as `nullable` under it too, and a stored schema from an older
# release would then block every load for good, the failure this contract is here to end.
SCHEMA_CONTRACT = {"tables": "evolve", "columns": "evolve", "data_type": "evolve"}

# An epoch beyond 2100 is a unit error (milliseconds, 1e20), not a time.
MAX_EPOCH = 4_102_444_800
# An epoch may come as text or a whole float ("1588689059", 1588689059.0): the same
# instant either way, so it is taken, and reported (`_note_coerced`). Text is text.
Epoch = Annotated[int, Field(ge=0, lt=MAX_EPOCH)]
Text = Annotated[StrictStr, Field(min_length=1)]


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
    # The rating evolves (a text rating goes to `rating__v_text`): the view reads it but
    # a game without a usable one still counts.
    username: Text
    result: Text


class GameRecord(_Payload):
    uuid: Text
    url: StrictStr | None = None
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


def _typed(
    row: dict[str, Any],
    record: _Payload,
    names: tuple[str, ...],
    moved: list[Moved] | None,
    number: int,
) -> dict[str, Any]:
    """`row` with the validated values of `names` (epochs as timestamps); a served value
    that was not already an int is noted in `moved` (kind "coerced": same value, typed)."""
    for name in names:
        if name not in row:
            continue
        served, value = row[name], getattr(record, name)
        if served is not None and type(served) is not int and moved is not None:
            moved.append(Moved(number, name, name, COERCED, served))
        row[name] = from_epoch(value) if name in TIMES else value
    return row


def profile_row(profile: dict[str, Any], moved: list[Moved] | None = None) -> dict[str, Any]:
    record = _check(ProfileRecord, profile, "profile")
    return _typed(flatten(profile, moved), record, ("player_id", *PROFILE_TIMES), moved, 0)


def stats_row(
    player: str, stats: dict[str, Any], fetched_at: datetime, moved: list[Moved] | None = None
) -> dict[str, Any]:
    # The tracked name is the key: a "player" field in the payload must not replace it.
    return {**flatten(stats, moved), "player": player, "fetched_at": fetched_at}


def game_row(game: Any, moved: list[Moved] | None = None, number: int = 0) -> dict[str, Any]:
    """One game as a flat row; raises `InvalidRecordError` naming the game's url if it
    has one. Naming collisions are appended to `moved` (as game `number`)."""
    try:
        record = _check(GameRecord, game, "game")
    except InvalidRecordError as exc:
        url = game.get("url") if isinstance(game, dict) else None
        raise InvalidRecordError(f"{exc} [{url}]" if isinstance(url, str) else str(exc)) from None
    return _typed(flatten(game, moved, number), record, GAME_TIMES, moved, number)
