"""The chess pipeline's fake API for the Kestra twin (tests/kestra/twin.py, FAKE_API).

Convention: `tests/<package>/fake_api.py` (here `chess_com`, the package
`dlt-chess-snowflake.py` imports) exposes `twin_env()`, a context manager that serves a small
world and yields the env a short load needs; the twin runs the flow's task with it and
`--destination duckdb` appended.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.fake_chesscom import FakeChessCom, World


@contextmanager
def twin_env() -> Iterator[dict[str, str]]:
    world = World(seed=11)
    world.populate(["alice", "bob"], months=1, games_per_month=2)
    with FakeChessCom(world) as api:
        yield {
            "SOURCES__CHESS__BASE_URL": api.base_url,
            "CHESS_PLAYERS": "alice,bob",
            "RUNTIME__REQUEST_BACKOFF_FACTOR": "0.05",
        }
