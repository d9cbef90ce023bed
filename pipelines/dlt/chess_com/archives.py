"""Archive months: which months to fetch for each player, fetching them, and their games.

`fetch_months` is the body of the `archive_months` resource (`chess_com`): it reads the
players' archive lists (`_archive_listings`), plans the months (`months.plan_months`),
fetches them in parallel within a load's game budget and the run deadline, and records
each month in the player's book (`book`) only from an answer that can be right.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dlt

from .book import PlayerBook
from .client import ChessComClient, ChessComError, DeadlineReached, Fetched, MonthNotFound
from .columns import Moved
from .fetch import available, deadline_reached, fetch_players, record_failure, warn
from .months import InvalidMonthError, Month, MonthPlan, is_final, plan_months
from .records import InvalidRecordError, archive_urls, game_row, month_games
from .report import RunReport
from .throttle import parallel_map


@dataclass
class MonthResult:
    """One archive month as fetched this run; fans out to games and archive rows."""

    player: str
    month: str
    status: str  # downloaded | not_modified | failed | empty
    entry: dict[str, Any]
    fetched_at: datetime
    games: list[dict[str, Any]] = field(default_factory=list)


def fetch_months(
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
    state: dict[str, Any] = dlt.current.resource_state().setdefault("players", {})
    books = {player: PlayerBook.of(state, player) for player in players}
    workers = client.limiter.max_in_flight
    listings = _archive_listings(client, books, Month.of(now), report)

    todo: list[tuple[str, MonthPlan]] = []
    for player, months in listings.items():
        book = books[player]
        for plan in plan_months(months, book.final, book.open, first, last, now):
            # Handled by an earlier load of this run (fetched, failed or skipped): the
            # backfill's further loads ask only for what is left.
            key = ("games", player, plan.month.path)
            if key in report.handled:
                continue
            if plan.fetch:
                todo.append((player, plan))
            else:
                report.handled.add(key)
                report.months["skipped"] += 1

    def fetch_month(item: tuple[str, MonthPlan]) -> Fetched:
        player, plan = item
        return client.games(
            player, plan.month.path, etag=plan.etag, last_modified=plan.last_modified
        )

    downloaded_games = downloaded_months = 0
    submitted = answered = cut_off = 0

    def within_budget() -> Iterator[tuple[str, MonthPlan]]:
        # Checked as each fetch is submitted, counting the months still in flight at the
        # average size of the months downloaded so far: a load ends near its budget, not a
        # whole fetch window (2 x workers months) past it, which is what bounds memory.
        nonlocal submitted
        for item in todo:
            average = downloaded_games / downloaded_months if downloaded_months else 0
            expected = downloaded_games + (submitted - answered) * average
            if expected >= max_games or client.deadline_passed():
                return
            submitted += 1
            yield item

    seen: set[str] = set()
    for (player, plan), future in parallel_map(fetch_month, within_budget(), workers):
        answered += 1
        book = books[player]
        month = plan.month.path
        previous = book.open.get(month, {})
        fetched_at = datetime.now(UTC)
        if not isinstance(future.exception(), DeadlineReached):
            # Asked this run, whatever the answer: a further load does not ask again.
            report.handled.add(("games", player, month))
        try:
            fetched = future.result()
        except MonthNotFound as exc:
            # No archive for this month (e.g. no games yet this month): nothing recorded,
            # so it is asked for again next run. The archive list naming it is suspicious.
            report.months["missing"] += 1
            if plan.listed:
                warn(report, f"{player}: {month} is in the archive list but {exc}")
            continue
        except DeadlineReached:
            cut_off += 1
            report.unsettled.add(player)
            continue
        except ChessComError as exc:
            report.months["failed"] += 1
            record_failure(player, exc, report)
            yield MonthResult(player, month, "failed", previous, fetched_at)
            continue
        entry = {
            "etag": fetched.etag,
            "last_modified": fetched.last_modified,
            "games": previous.get("games"),
            "final": is_final(plan.month, fetched_at),
        }
        if fetched.not_modified:
            # Validators were sent (the client rejects a 304 to an unconditional request).
            report.months["not_modified"] += 1
            report.backfill.advance()
            book.record(plan.month, entry)
            yield MonthResult(player, month, "not_modified", entry, fetched_at)
            continue
        try:
            games = month_games(fetched.data)
        except InvalidRecordError as exc:
            report.invalid_records += 1
            report.months["failed"] += 1
            report.fail(player, f"{month}: {exc} in {fetched.url}: fetched again next run")
            yield MonthResult(player, month, "failed", previous, fetched_at)
            continue
        downloaded_games += len(games)
        downloaded_months += 1
        rows, problems = _new_game_rows(games, seen, report, player, month)
        if problems:
            # The valid games load; the month stays open so the rest comes once fixed.
            report.invalid_records += len(problems)
            report.months["failed"] += 1
            report.fail(
                player,
                f"{month}: {len(problems)} of {len(games)} games invalid in {fetched.url} "
                f"(first: {problems[0]}): the valid ones are loaded, the month is fetched "
                "again next run",
            )
            yield MonthResult(player, month, "failed", previous, fetched_at, rows)
            continue
        if not games and plan.listed:
            # The archive list names this month, so it has games: an empty answer cannot
            # be its content. Not recorded: fetched in full again next run.
            report.months["empty"] += 1
            warn(
                report,
                f"{player}: {month} is in the archive list but {fetched.url} has no games: "
                "not recorded, fetched again next run",
            )
            yield MonthResult(player, month, "empty", previous, fetched_at)
            continue
        report.months["downloaded"] += 1
        report.backfill.advance()
        entry["games"] = len(games)
        book.record(plan.month, entry)
        yield MonthResult(player, month, "downloaded", entry, fetched_at, rows)
    report.backfill.leave(len(todo) - submitted + cut_off)
    report.unsettled.update(player for player, _ in todo[submitted:])
    if cut_off or client.deadline_passed():
        deadline_reached(report)


def _archive_listings(
    client: ChessComClient,
    books: dict[str, PlayerBook],
    current: Month,
    report: RunReport,
) -> dict[str, list[Month]]:
    """Months each player has archives for.

    The list is re-read (conditionally) once per calendar month: in between, the only
    month that can appear is the current one, which is planned anyway. Only a valid,
    non-empty list is kept for the month; an invalid one fails the player (its months
    wait for the next run) and an empty one serves this run only. Next month in the list
    (Chess.com's clock ahead at the turn of the month) is skipped with a warning.
    """
    listings: dict[str, list[Month]] = {}
    stale: list[str] = []
    for player in available(books, report):
        if books[player].listing.get("listed_in") == current.path:
            listings[player] = books[player].listed_months()
        else:
            stale.append(player)
    validators = {p: {k: books[p].listing.get(k) for k in ("etag", "last_modified")} for p in stale}

    def shape(player: str, fetched: Fetched) -> tuple[list[Month], Month | None]:
        return _listed_months(fetched.data, current, books[player].known())

    answered = fetch_players(client, client.archives, stale, report, shape, validators, True)
    for player, fetched, shaped in answered:
        book = books[player]
        months, ahead = (book.listed_months(), None) if fetched.not_modified else shaped
        listings[player] = months
        kept = validators[player]
        if ahead:
            warn(
                report,
                f"{player}: archive list {fetched.url} names {ahead}, after "
                f"the current month {current} (clocks differ at the turn of the month?): "
                "skipped, fetched by a later run",
            )
            # Kept without validators: a 304 next month would restore it without the
            # skipped month, which would then never be planned once it is past.
            kept = {key: None for key in kept}
        if not months:
            if not ahead:
                # A player with no games yet, or a bad answer: cheap to ask again next run.
                warn(report, f"{player}: archive list {fetched.url} is empty: read again next run")
            continue
        book.keep_listing(current, months, kept)
    # A player whose list could not be read is reported; its months wait for the next run.
    return listings


def _listed_months(
    document: dict[str, Any], current: Month, known: int
) -> tuple[list[Month], Month | None]:
    """The months of a valid archive list up to `current`, and next month if it names it
    (skipped this run); raises `InvalidRecordError` for a bad list."""
    months = set()
    ahead = None
    bad = []
    for url in archive_urls(document):
        try:
            # Only next month can be a clock a little ahead at midnight UTC; a later one is
            # a bad list or a runner clock far off (which would misjudge final months too).
            month = Month.from_archive_url(url, latest=current.next())
        except InvalidMonthError as exc:
            bad.append(str(exc))
            continue
        if month > current:
            ahead = month
        else:
            months.add(month)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise InvalidRecordError(f"invalid archive list: {bad[0]}{more}")
    if not months and known:
        raise InvalidRecordError(f"archive list is empty, but {known} months were known")
    return sorted(months), ahead


def _new_game_rows(
    games: list[Any], seen: set[str], report: RunReport, player: str, month: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of the valid games not yet seen this run, and what is wrong with the others."""
    rows = []
    problems = []
    for number, game in enumerate(games, 1):
        collisions: list[Moved] = []
        try:
            row = game_row(game, collisions, number)
        except InvalidRecordError as exc:
            problems.append(f"game {number}: {exc}")
            continue
        # A game between two tracked players is in both archives: load it once.
        if row["uuid"] in seen:
            report.duplicate_games += 1
            continue
        seen.add(row["uuid"])
        rows.append(row)
        for moved in collisions:
            report.keep_apart("players_games", player, month, row["uuid"], moved)
    report.games += len(rows)
    return rows, problems
