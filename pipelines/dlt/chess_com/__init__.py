"""dlt source for the Chess.com published-data API: player profiles, stats and games.

Config section `sources.chess` (env `SOURCES__CHESS__<ARG>`): `players`, `start_month`,
`end_month`, `base_url`, `contact`, `max_concurrency`, `max_games_per_load`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dlt
from dlt.common.typing import TDataItem
from dlt.extract.resource import DltResource

from .client import (
    DEFAULT_BASE_URL,
    ChessComClient,
    ChessComError,
    ConfigurationError,
    Fetched,
    PlayerGone,
    PlayerNotFound,
)
from .months import InvalidMonthError, Month, MonthPlan, is_final, parse_range, plan_months
from .players import InvalidPlayerError, parse_players
from .records import (
    ARCHIVE_COLUMNS,
    GAME_COLUMNS,
    PROFILE_COLUMNS,
    STATS_COLUMNS,
    InvalidRecordError,
    game_row,
    profile_row,
    stats_row,
)
from .report import RunReport
from .throttle import parallel_map

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
    max_games_per_load: int = 5000,
    report: RunReport | None = None,
) -> Sequence[DltResource]:
    """Profiles, stats and games of `players` for archive months `start_month`..`end_month`.

    Everything is validated here, before any request. Pass a `RunReport` to learn what
    the run did (players failed and why, months downloaded / not modified / skipped).
    Months beyond `max_games_per_load` downloaded games are left for the next load
    (`report.deferred_months`): a backfill runs as several bounded loads, each committing
    its state, so memory stays flat and an interrupted backfill resumes where it stopped.
    """
    names = parse_players(players)
    now = datetime.now(UTC)
    first, last = parse_range(start_month, end_month, now)
    if max_games_per_load < 1:
        raise ConfigurationError(
            f"invalid max_games_per_load {max_games_per_load!r}: must be >= 1 "
            "(SOURCES__CHESS__MAX_GAMES_PER_LOAD)"
        )
    report = report if report is not None else RunReport()
    client = ChessComClient(base_url, contact, max_concurrency, stats=report.requests)
    report.players = names
    report.deferred_months = 0
    months = archive_months(client, names, first, last, now, max_games_per_load, report)
    return (
        players_profiles(client, names, report),
        players_stats(client, names, report),
        months | players_games,
        months | players_archives,
    )


def _available(players: Iterable[str], report: RunReport) -> list[str]:
    """Players not yet known to be unknown (404) or gone (410), honouring earlier 410s."""
    gone: dict[str, str] = dlt.current.source_state().setdefault("gone", {})
    result = []
    for player in players:
        if player in report.unavailable:
            continue
        if player in gone:
            report.fail(
                player,
                f"410 Gone on {gone[player]}: not requested again (--full-refresh to retry)",
                unavailable=True,
            )
        else:
            result.append(player)
    return result


def _record_failure(player: str, exc: ChessComError, report: RunReport) -> None:
    if isinstance(exc, PlayerGone):
        dlt.current.source_state().setdefault("gone", {})[player] = (
            datetime.now(UTC).date().isoformat()
        )
        report.fail(player, "gone (410): Chess.com will never serve data for this player", True)
    elif isinstance(exc, PlayerNotFound):
        report.fail(player, "unknown player (404)", unavailable=True)
    else:
        report.fail(player, str(exc))


def _fetch_players(
    client: ChessComClient,
    fetch: Callable[..., Fetched],
    players: list[str],
    report: RunReport,
    validators: dict[str, dict[str, str | None]] | None = None,
    include_not_modified: bool = False,
) -> Iterator[tuple[str, Fetched]]:
    """Fetch one document per player in parallel, conditionally; yield the changed ones
    (and the unchanged ones too with `include_not_modified`). Failures are reported.

    Validators (ETag, Last-Modified) live in the calling resource's state unless given.
    """
    if validators is None:
        validators = dlt.current.resource_state().setdefault("validators", {})
    calls = [(p, validators.get(p, {})) for p in _available(players, report)]
    workers = client.limiter.max_in_flight
    for (player, _), future in parallel_map(lambda c: fetch(c[0], **c[1]), calls, workers):
        try:
            fetched = future.result()
        except ChessComError as exc:
            _record_failure(player, exc, report)
            continue
        validators[player] = {"etag": fetched.etag, "last_modified": fetched.last_modified}
        if include_not_modified or not fetched.not_modified:
            yield player, fetched


@dlt.resource(
    name="players_profiles",
    write_disposition="merge",
    primary_key="player_id",
    columns=PROFILE_COLUMNS,
)
def players_profiles(
    client: ChessComClient, players: list[str], report: RunReport
) -> Iterator[TDataItem]:
    """One row per player, re-loaded only when Chess.com says the profile changed."""
    for player, fetched in _fetch_players(client, client.profile, players, report):
        try:
            yield profile_row(fetched.data)
        except InvalidRecordError as exc:
            report.invalid_records += 1
            report.fail(player, str(exc))


@dlt.resource(
    name="players_stats",
    write_disposition="merge",
    primary_key="player",
    columns=STATS_COLUMNS,
)
def players_stats(
    client: ChessComClient, players: list[str], report: RunReport
) -> Iterator[TDataItem]:
    """Ratings and records per time class, one row per player."""
    for player, fetched in _fetch_players(client, client.stats_of, players, report):
        yield stats_row(player, fetched.data, datetime.now(UTC))


@dataclass
class MonthResult:
    """One archive month as fetched this run; fans out to games and archive rows."""

    player: str
    month: str
    status: str  # downloaded | not_modified | failed
    entry: dict[str, Any]
    fetched_at: datetime
    games: list[dict[str, Any]] = field(default_factory=list)


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
    """Fetch the monthly archives that may have changed since the last run.

    Resource state keeps, per player, the archive list and per month its validators and
    whether it is final. It is committed with the load, so a month whose fetch or load
    fails is fetched again next run.
    """
    book: dict[str, Any] = dlt.current.resource_state().setdefault("players", {})
    workers = client.limiter.max_in_flight
    listings = _archive_listings(client, players, book, Month.of(now), report)

    todo: list[tuple[str, MonthPlan]] = []
    for player, months in listings.items():
        done = book[player]["months"]
        for plan in plan_months([Month.parse(m) for m in months], done, first, last, now):
            if plan.fetch:
                todo.append((player, plan))
            else:
                report.months["skipped"] += 1

    def fetch_month(item: tuple[str, MonthPlan]) -> Fetched:
        player, plan = item
        return client.games(
            player, plan.month.path, etag=plan.etag, last_modified=plan.last_modified
        )

    downloaded_games = 0
    submitted = 0

    def within_budget() -> Iterator[tuple[str, MonthPlan]]:
        # Checked as each fetch is submitted: at most the fetch window overshoots it.
        nonlocal submitted
        for item in todo:
            if downloaded_games >= max_games:
                return
            submitted += 1
            yield item

    seen: set[str] = set()
    for (player, plan), future in parallel_map(fetch_month, within_budget(), workers):
        done = book[player]["months"]
        month = plan.month.path
        fetched_at = datetime.now(UTC)
        try:
            fetched = future.result()
        except PlayerNotFound:
            # A listed player without this month's archive (e.g. no games yet this month).
            report.months["missing"] += 1
            continue
        except ChessComError as exc:
            report.months["failed"] += 1
            _record_failure(player, exc, report)
            yield MonthResult(player, month, "failed", done.get(month, {}), fetched_at)
            continue
        entry = {
            "etag": fetched.etag,
            "last_modified": fetched.last_modified,
            "games": done.get(month, {}).get("games"),
            "final": is_final(plan.month, fetched_at),
        }
        result = MonthResult(player, month, "not_modified", entry, fetched_at)
        if fetched.not_modified:
            report.months["not_modified"] += 1
        else:
            report.months["downloaded"] += 1
            result.status = "downloaded"
            games = fetched.data.get("games", [])
            entry["games"] = len(games)
            result.games = _new_game_rows(player, month, games, seen, report)
            downloaded_games += len(games)
        done[month] = entry
        yield result
    report.deferred_months = len(todo) - submitted


def _archive_listings(
    client: ChessComClient,
    players: list[str],
    book: dict[str, Any],
    current: Month,
    report: RunReport,
) -> dict[str, list[str]]:
    """Months each player has archives for, as `YYYY/MM`.

    The list is re-read (conditionally) once per calendar month: in between, the only
    month that can appear is the current one, which is planned anyway.
    """
    listings: dict[str, list[str]] = {}
    stale: dict[str, dict[str, Any]] = {}
    for player in _available(players, report):
        listing = book.setdefault(player, {"months": {}}).get("archives") or {}
        if listing.get("listed_in") == current.path:
            listings[player] = listing["months"]
        else:
            stale[player] = listing
    validators = {
        p: {"etag": v.get("etag"), "last_modified": v.get("last_modified")}
        for p, v in stale.items()
    }
    answered = _fetch_players(
        client, client.archives, list(stale), report, validators, include_not_modified=True
    )
    for player, fetched in answered:
        if fetched.not_modified:
            months = stale[player].get("months", [])
        else:
            months = _listed_months(player, fetched.data.get("archives", []), report)
        book[player]["archives"] = {
            "listed_in": current.path,
            "months": months,
            **validators[player],
        }
        listings[player] = months
    # A player whose list could not be read is reported; its months wait for the next run.
    return listings


def _listed_months(player: str, urls: list[str], report: RunReport) -> list[str]:
    months = set()
    for url in urls:
        try:
            months.add(Month.from_archive_url(url).path)
        except InvalidMonthError as exc:
            report.fail(player, str(exc))
    return sorted(months)


def _new_game_rows(
    player: str, month: str, games: list[dict[str, Any]], seen: set[str], report: RunReport
) -> list[dict[str, Any]]:
    rows = []
    for game in games:
        try:
            row = game_row(game)
        except InvalidRecordError as exc:
            report.invalid_records += 1
            report.fail(player, f"{month}: {exc}")
            continue
        # A game between two tracked players is in both archives: load it once.
        if row["uuid"] in seen:
            report.duplicate_games += 1
            continue
        seen.add(row["uuid"])
        rows.append(row)
    report.games += len(rows)
    return rows


@dlt.transformer(
    data_from=archive_months,
    name="players_games",
    write_disposition="merge",
    primary_key="uuid",
    columns=GAME_COLUMNS,
)
def players_games(result: MonthResult) -> Iterator[TDataItem]:
    """Games, one row per game (merged on `uuid`)."""
    if result.games:
        yield result.games


@dlt.transformer(
    data_from=archive_months,
    name="players_archives",
    write_disposition="merge",
    primary_key=["player", "month"],
    columns=ARCHIVE_COLUMNS,
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
