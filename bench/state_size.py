"""How big dlt's pipeline state gets, as dlt stores it, for many players and months.

The chess source keeps per player what it knows of their archive (`chess_com.book`). dlt
hashes the whole state on every extract and, when anything in it changed, writes all of it
(JSON, zlib, base64: `compress_state`) as a new row of `_dlt_pipeline_state`.
`book_state` builds the state the source holds today through the source's own `PlayerBook`
(and bench/club.py checks it against a real run's state); `per_month_state` the shape
before 2026-12-03 (an entry per player and month), kept to show what the change saved.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import tracemalloc
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dlt.common.json import json as dlt_json
from dlt.common.versioned_state import compress_state, decompress_state

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pipelines" / "dlt"))
from chess_com.book import PlayerBook
from chess_com.months import Month

HEADER: dict[str, Any] = {
    "_state_version": 1,
    "_state_engine_version": 4,
    "default_schema_name": "chess",
    "pipeline_name": "chess_com",
    "dataset_name": "chess",
    "schema_names": ["chess"],
    "destination_type": "dlt.destinations.snowflake",
    "destination_name": None,
    "_version_hash": "r/Lh8umvVGShEXXGMmrNHnnDQQbfJAz/pesG3YthjuU=",
}


def months_back(count: int, current: str) -> list[str]:
    """`count` months up to and including `current` (`YYYY/MM`), oldest first."""
    year, month = (int(x) for x in current.split("/"))
    keys = []
    for _ in range(count):
        keys.append(f"{year:04d}/{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return keys[::-1]


def _etag(*parts: object) -> str:
    return 'W/"' + hashlib.md5(":".join(map(str, parts)).encode()).hexdigest() + '"'


def _modified(key: str) -> str:
    year, month = (int(x) for x in key.split("/"))
    moment = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC) + timedelta(hours=7)
    return moment.strftime("%A, %d-%b-%Y %H:%M:%S GMT+0000")


def _validators(player: str, what: str) -> dict[str, str]:
    return {"etag": _etag(player, what), "last_modified": _modified("2026/10")}


def per_month_state(players: int, months: int, current: str, games: int = 20) -> dict[str, Any]:
    """The state before 2026-12-03 after loading `months` months (up to `current`) of
    `players` players: validators per player for profiles and stats, and per player and
    month the archive's validators, game count and finality."""
    keys = months_back(months, current)
    names = [f"member{i:05d}" for i in range(players)]
    book = {
        name: {
            "months": {
                key: _month_entry(name, key, games) | {"final": key != current} for key in keys
            },
            "archives": {"listed_in": current, "months": keys, **_validators(name, "list")},
        }
        for name in names
    }
    return _pipeline_state(names, {"players": book})


def book_state(players: int, months: int, current: str, games: int = 20) -> dict[str, Any]:
    """Today's state for the same history, written by the source's `PlayerBook`: settled
    months as ranges, full entries only for months not final yet (the current one)."""
    keys = months_back(months, current)
    names = [f"member{i:05d}" for i in range(players)]
    players_state: dict[str, Any] = {}
    for name in names:
        book = PlayerBook.of(players_state, name)
        for key in keys:
            book.record(
                Month.parse(key), _month_entry(name, key, games) | {"final": key != current}
            )
        book.keep_listing(
            Month.parse(current), [Month.parse(k) for k in keys], _validators(name, "list")
        )
    return _pipeline_state(names, {"players": players_state})


def _month_entry(player: str, key: str, games: int) -> dict[str, Any]:
    return {"etag": _etag(player, key), "last_modified": _modified(key), "games": games}


def _pipeline_state(names: list[str], archive_months: dict[str, Any]) -> dict[str, Any]:
    resources = {
        "players_profiles": {"validators": {n: _validators(n, "profile") for n in names}},
        "players_stats": {"validators": {n: _validators(n, "stats") for n in names}},
        "archive_months": archive_months,
    }
    return {**HEADER, "sources": {"chess": {"resources": resources, "gone": {}}}}


@dataclass(frozen=True)
class StateSize:
    json_bytes: int  # the state as JSON
    stored_bytes: int  # as dlt writes it to _dlt_pipeline_state.state (zlib + base64)
    hash_s: float  # dlt hashes the state on every extract
    compress_s: float  # and compresses it whenever it changed
    python_mb: float  # memory of the decoded state in the running script

    def as_dict(self) -> dict[str, Any]:
        return {
            "json_MB": round(self.json_bytes / 1e6, 3),
            "stored_MB": round(self.stored_bytes / 1e6, 3),
            "hash_s": round(self.hash_s, 3),
            "compress_s": round(self.compress_s, 3),
            "python_MB": round(self.python_mb, 1),
        }


def measure(state: dict[str, Any]) -> StateSize:
    """Sizes and costs of one state, with dlt's own encoding."""
    raw = dlt_json.typed_dumpb(state)
    started = time.perf_counter()
    hashlib.sha3_256(dlt_json.typed_dumpb(state, sort_keys=True)).digest()  # as dlt's hash
    hashed = time.perf_counter() - started
    started = time.perf_counter()
    stored = compress_state(state)  # type: ignore[arg-type]
    compressed = time.perf_counter() - started
    tracemalloc.start()
    decoded = json.loads(raw)
    python_mb = tracemalloc.get_traced_memory()[0] / 1e6
    tracemalloc.stop()
    del decoded
    return StateSize(len(raw), len(stored), hashed, compressed, python_mb)


def measure_stored(stored: str) -> StateSize:
    """The same figures for a state row as read back from `_dlt_pipeline_state.state`."""
    state = decompress_state(stored)
    size = measure(state)
    return StateSize(size.json_bytes, len(stored), size.hash_s, size.compress_s, size.python_mb)
