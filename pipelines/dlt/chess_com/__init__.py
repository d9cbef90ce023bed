"""dlt source for the Chess.com published-data API: player profiles, stats and games.

Config section `sources.chess` (env `SOURCES__CHESS__<ARG>`): `players`, `start_month`,
`end_month`, `base_url`, `contact`, `max_concurrency`, `max_games_per_load`, `deadline_s`,
`request_deadline_s`.

This module is the source and its resources; the work is in the modules beside it:
`client` (HTTP: conditional requests, retries, rate limit, deadlines), `fetch` (a
player's documents, fetched in parallel; failures to the report), `archives` (archive
lists, month planning and fetching, game rows), `months` / `book` (which months to fetch,
what the state keeps), `records` / `columns` (payload validation, rows, column types),
`players`, `throttle`, `report` (what the run did, for the runner's summary).

Under faults (pipelines/chess_com.md, "What the source guarantees under bad data"):
- Every payload is validated before dlt sees it (`records`). A malformed profile, stats,
  archive list or month fails that document only: the player is reported with the URL
  and the problem, everything else loads, and the document's validators are not kept, so
  it is fetched again in full next run. A month with some invalid games loads the valid
  ones and stays open (not done, not final).
- A month is recorded done only from an answer that can be right: `{}` or a 304 to an
  unconditional request fail the month; `{"games": []}` for a month the archive list names
  is a warning and the month stays open. An empty or malformed archive list is never cached.
- 410 Gone: the first run that sees it fails (exit 1) and records the player gone; later
  runs do not request the player and report it as a warning (`gone_players`), not a
  failure. An unknown player (404) stays a failure on every run.
- `deadline_s` bounds the requests of a run: after it nothing more is requested, no further
  load starts, and what is left (months, documents) is fetched next run (`deadline_reached`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import dlt
from dlt.common.typing import TDataItem
from dlt.extract.resource import DltResource

from .archives import MonthResult, fetch_months
from .client import (
    DEFAULT_BASE_URL,
    DEFAULT_REQUEST_DEADLINE_S,
    ChessComClient,
    ChessComError,
    ConfigurationError,
    check_seconds,
)
from .columns import ColumnTypes
from .fetch import player_rows
from .months import InvalidMonthError, Month, parse_range
from .players import InvalidPlayerError, parse_players
from .records import (
    ARCHIVE_COLUMNS,
    GAME_COLUMNS,
    PROFILE_COLUMNS,
    SCHEMA_CONTRACT,
    STATS_COLUMNS,
    profile_row,
    stats_row,
)
from .report import RunReport

__all__ = [
    "ChessComError",
    "ConfigurationError",
    "InvalidMonthError",
    "InvalidPlayerError",
    "RunReport",
    "chess",
]


@dlt.source(name="chess", section="chess")
def chess(
    # Any: dlt would coerce a typed value, and a plain "a,b" env var is not JSON.
    players: Any = dlt.config.value,
    start_month: str | None = None,
    end_month: str | None = None,
    base_url: str = DEFAULT_BASE_URL,
    contact: str | None = None,
    max_concurrency: int = 3,
    max_games_per_load: int = 20000,
    deadline_s: float | None = None,
    request_deadline_s: float | None = DEFAULT_REQUEST_DEADLINE_S,
    report: RunReport | None = None,
) -> Sequence[DltResource]:
    """Profiles, stats and games of `players` for archive months `start_month`..`end_month`.

    Everything is validated here, before any request. Pass a `RunReport` to learn what
    the run did (players failed and why, months downloaded / not modified / skipped).
    Months beyond `max_games_per_load` downloaded games are left for the next load
    (`report.backfill`, the contract with the runner's load loop): a backfill runs as
    several bounded loads, each committing its state, so memory stays flat and an
    interrupted backfill resumes where it stopped. `deadline_s` (seconds from the first
    source made with this `report`) stops requesting and halts the backfill, leaving the
    rest for the next run; `request_deadline_s` bounds one request's total time, however
    slowly its body arrives.
    """
    names = parse_players(players)
    now = datetime.now(UTC)
    first, last = parse_range(start_month, end_month, now)
    if max_games_per_load < 1:
        raise ConfigurationError(
            f"invalid max_games_per_load {max_games_per_load!r}: must be >= 1 "
            "(SOURCES__CHESS__MAX_GAMES_PER_LOAD)"
        )
    if max_concurrency < 1:
        raise ConfigurationError(
            f"invalid max_concurrency {max_concurrency!r}: must be >= 1 "
            "(SOURCES__CHESS__MAX_CONCURRENCY)"
        )
    deadline_s = check_seconds("deadline_s", deadline_s)
    report = report if report is not None else RunReport()
    if deadline_s is not None and report.deadline_at is None:
        report.deadline_at = time.monotonic() + deadline_s
    client = ChessComClient(
        base_url,
        contact,
        max_concurrency,
        stats=report.requests,
        request_deadline_s=request_deadline_s,
        run_deadline=report.deadline_at,
    )
    report.client = client  # a stop (SIGTERM/SIGINT) moves its deadline to now
    report.players = names
    report.backfill.begin()
    report.unsettled.clear()  # what this load leaves undone (earlier loads' is re-planned)
    # A string stays text, as on the Arrow path: dlt would otherwise turn an ISO-looking
    # one into a timestamp (and coerce the next ones).
    dlt.current.source_schema().remove_type_detection("iso_timestamp")
    months = archive_months(client, names, first, last, now, max_games_per_load, report)
    games = ColumnTypes("players_games", GAME_COLUMNS, not_null=("uuid",))
    return (
        players_profiles(client, names, report),
        players_stats(client, names, report),
        months | players_games(games, report),
        months | players_archives,
    )


@dlt.resource(
    name="players_profiles",
    write_disposition="merge",
    primary_key="player_id",
    columns=PROFILE_COLUMNS,
    schema_contract=SCHEMA_CONTRACT,
)
def players_profiles(
    client: ChessComClient, players: list[str], report: RunReport
) -> Iterator[TDataItem]:
    """One row per player, re-loaded only when Chess.com says the profile changed."""
    types = ColumnTypes("players_profiles", PROFILE_COLUMNS, not_null=("player_id",))
    yield from player_rows(
        types, client, client.profile, players, report, lambda _, f, m: profile_row(f.data, m)
    )


@dlt.resource(
    name="players_stats",
    write_disposition="merge",
    primary_key="player",
    columns=STATS_COLUMNS,
    schema_contract=SCHEMA_CONTRACT,
)
def players_stats(
    client: ChessComClient, players: list[str], report: RunReport
) -> Iterator[TDataItem]:
    """Ratings and records per time class, one row per player."""
    types = ColumnTypes("players_stats", STATS_COLUMNS, not_null=("player",))
    yield from player_rows(
        types,
        client,
        client.stats_of,
        players,
        report,
        lambda p, f, m: stats_row(p, f.data, datetime.now(UTC), m),
    )


@dlt.resource(name="archive_months", selected=False)
def archive_months(
    client: ChessComClient,
    players: list[str],
    first: Month | None,
    last: Month,
    now: datetime,
    max_games: int,
    report: RunReport,
) -> Iterator[MonthResult]:
    """The archive months that may have changed since the last run, fetched (`archives`);
    feeds `players_games` and `players_archives`. Not loaded itself."""
    yield from fetch_months(client, players, first, last, now, max_games, report)


@dlt.transformer(
    data_from=archive_months,
    name="players_games",
    # A load stages each uuid once (`archive_months` drops a run's repeats), so dlt's
    # merge can skip its ROW_NUMBER() pass over the staged games (bench/README.md).
    write_disposition={"disposition": "merge", "strategy": "delete-insert", "deduplicated": True},
    primary_key="uuid",
    columns=GAME_COLUMNS,
    schema_contract=SCHEMA_CONTRACT,
)
def players_games(
    result: MonthResult, types: ColumnTypes, report: RunReport
) -> Iterator[TDataItem]:
    """Games, one row per game (merged on `uuid`), a month's games as one Arrow table
    with every value in a column of its type (`columns`)."""
    if result.games:
        table, moved = types.arrow_table(result.games)
        for item in moved:
            uuid = result.games[item.row]["uuid"]
            report.keep_apart(types.table, result.player, result.month, uuid, item)
        yield table


@dlt.transformer(
    data_from=archive_months,
    name="players_archives",
    write_disposition="merge",
    primary_key=["player", "month"],
    columns=ARCHIVE_COLUMNS,
    schema_contract=SCHEMA_CONTRACT,
)
def players_archives(result: MonthResult) -> Iterator[TDataItem]:
    """What was fetched per player and month, for operators."""
    yield {
        "player": result.player,
        "month": result.month,
        "status": result.status,
        "games": result.entry.get("games"),
        "etag": result.entry.get("etag"),
        "last_modified": result.entry.get("last_modified"),
        "fetched_at": result.fetched_at,
        "final": bool(result.entry.get("final")),
    }
