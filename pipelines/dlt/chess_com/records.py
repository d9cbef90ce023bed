"""Shape API payloads into rows before dlt sees them.

Epoch seconds become timezone-aware timestamps (TIMESTAMP_TZ in Snowflake). A game's
`white`, `black` and `accuracies` objects are flattened here into the very columns dlt
would make (`white__username`, `accuracies__white`, ...): same schema, ~25% less
normalize time (bench/README).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dlt.common.schema.typing import TTableSchemaColumns

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


class InvalidRecordError(ValueError):
    """A payload lacks what its table's key needs."""


def from_epoch(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    return datetime.fromtimestamp(int(value), tz=UTC)


def _with_times(record: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    row = dict(record)
    for field in fields:
        if field in row:
            row[field] = from_epoch(row[field])
    return row


def profile_row(profile: dict[str, Any]) -> dict[str, Any]:
    if "player_id" not in profile:
        raise InvalidRecordError(f"profile without player_id: {profile.get('@id')!r}")
    return _with_times(profile, PROFILE_TIMES)


def stats_row(player: str, stats: dict[str, Any], fetched_at: datetime) -> dict[str, Any]:
    return {"player": player, "fetched_at": fetched_at, **stats}


def game_row(game: dict[str, Any]) -> dict[str, Any]:
    if not game.get("uuid"):
        raise InvalidRecordError(f"game without uuid: {game.get('url')!r}")
    row = _with_times(game, GAME_TIMES)
    for name in GAME_OBJECTS:
        nested = row.pop(name, None)
        if isinstance(nested, dict):
            for key, value in nested.items():
                row[f"{name}{SEPARATOR}{key}"] = value
        elif nested is not None:
            row[name] = nested  # not an object: leave it to dlt as it came
    return row
