"""dlt source for the Chess.com published-data API: player profiles, stats and games.

Config section `sources.chess` (env `SOURCES__CHESS__<ARG>`): `players`, `start_month`,
`end_month`, `base_url`, `contact`, `max_concurrency`, `max_games_per_load`, `deadline_s`,
`request_deadline_s`.

Under faults (README "What the pipeline guarantees under faults"):
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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dlt
from dlt.common.typing import TDataItem
from dlt.extract.resource import DltResource

from .book import PlayerBook
from .client import (
    DEFAULT_BASE_URL,
    DEFAULT_REQUEST_DEADLINE_S,
    ChessComClient,
    ChessComError,
    ConfigurationError,
    DeadlineReached,
    Fetched,
    MonthNotFound,
    PlayerGone,
    PlayerNotFound,
    Unreachable,
    check_seconds,
)
from .columns import ColumnTypes, Moved
from .months import InvalidMonthError, Month, MonthPlan, is_final, parse_range, plan_months
from .players import InvalidPlayerError, parse_players
from .records import (
    ARCHIVE_COLUMNS,
    GAME_COLUMNS,
    PROFILE_COLUMNS,
    SCHEMA_CONTRACT,
    STATS_COLUMNS,
    InvalidRecordError,
    archive_urls,
    game_row,
    month_games,
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


def _warn(report: RunReport, message: str) -> None:
    if message not in report.warnings:
        report.warnings.append(message)


def _available(players: Iterable[str], report: RunReport) -> list[str]:
    """Players not yet known to be unknown (404) or gone (410), honouring earlier 410s.

    A player recorded gone by an earlier run is not requested and is a warning, not a
    failure: the account will never come back, and failing every later run for it would
    bury real failures (issue 10 case 6).
    """
    gone: dict[str, str] = dlt.current.source_state().setdefault("gone", {})
    result = []
    for player in players:
        if player in report.unavailable:
            continue
        if player in gone:
            report.unavailable.add(player)
            report.gone_players[player] = gone[player]
            _warn(
                report,
                f"{player}: account closed (410 Gone since {gone[player]}): not requested "
                "(--full-refresh to ask again)",
            )
        else:
            result.append(player)
    return result


def _record_failure(player: str, exc: ChessComError, report: RunReport) -> None:
    if isinstance(exc, PlayerGone):
        dlt.current.source_state().setdefault("gone", {})[player] = (
            datetime.now(UTC).date().isoformat()
        )
        report.fail(
            player,
            "gone (410): Chess.com will never serve data for this player "
            "(later runs skip it with a warning)",
            True,
        )
    elif isinstance(exc, PlayerNotFound):
        report.fail(player, "unknown player (404)", unavailable=True)
    elif isinstance(exc, DeadlineReached):
        report.unsettled.add(player)
        _deadline_reached(report)
    elif isinstance(exc, Unreachable):
        report.unreachable = str(exc)
        report.fail(player, "not fetched: the API host is unreachable")
    else:
        report.fail(player, str(exc))


def _deadline_reached(report: RunReport) -> None:
    report.backfill.halt()
    if report.stopped:  # SIGTERM/SIGINT, not the deadline: the runner's summary says so
        return
    report.deadline_reached = True
    _warn(
        report,
        "run deadline reached (SOURCES__CHESS__DEADLINE_S): what was not fetched is left "
        "for the next run",
    )


def _fetch_players(
    client: ChessComClient,
    fetch: Callable[..., Fetched],
    players: list[str],
    report: RunReport,
    shape: Callable[[str, Fetched], Any],
    validators: dict[str, dict[str, str | None]] | None = None,
    include_not_modified: bool = False,
) -> Iterator[tuple[str, Fetched, Any]]:
    """Fetch one document per player in parallel, conditionally; yield the changed ones
    shaped by `shape` (and, with `include_not_modified`, the unchanged ones shaped as
    None). Failures and invalid documents are reported. A document an earlier load of
    this run already asked for is not asked again (`RunReport.handled`).

    Validators (ETag, Last-Modified) live in the calling resource's state unless given.
    They are kept only for a document that passed `shape`: an invalid one is fetched in
    full next run (were its validators kept, a 304 would hide it for good).
    """
    if validators is None:
        validators = dlt.current.resource_state().setdefault("validators", {})
    kind = fetch.__name__
    calls = [
        (p, validators.get(p, {}))
        for p in _available(players, report)
        if (kind, p) not in report.handled
    ]
    workers = client.limiter.max_in_flight
    for (player, _), future in parallel_map(lambda c: fetch(c[0], **c[1]), calls, workers):
        report.handled.add((kind, player))
        try:
            fetched = future.result()
        except ChessComError as exc:
            _record_failure(player, exc, report)
            continue
        shaped = None
        if not fetched.not_modified:
            try:
                shaped = shape(player, fetched)
            except InvalidRecordError as exc:
                report.invalid_records += 1
                report.fail(player, f"{exc} from {fetched.url}: not loaded, fetched again next run")
                continue
        validators[player] = {"etag": fetched.etag, "last_modified": fetched.last_modified}
        if include_not_modified or not fetched.not_modified:
            yield player, fetched, shaped


def _player_rows(
    types: ColumnTypes,
    client: ChessComClient,
    fetch: Callable[..., Fetched],
    players: list[str],
    report: RunReport,
    shape: Callable[[str, Fetched, list[Moved]], dict[str, Any]],
) -> Iterator[TDataItem]:
    """One row per player whose document changed, every value in a column of its type
    (see `columns`); values kept apart (and naming collisions) go to the report."""

    def shaped(player: str, fetched: Fetched) -> tuple[dict[str, Any], list[Moved]]:
        collisions: list[Moved] = []
        return shape(player, fetched, collisions), collisions

    for name, _, (row, collisions) in _fetch_players(client, fetch, players, report, shaped):
        (placed,), moved = types.rows([row])
        for item in (*collisions, *moved):
            report.keep_apart(types.table, name, None, name, item)
        yield placed


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
    yield from _player_rows(
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
    yield from _player_rows(
        types,
        client,
        client.stats_of,
        players,
        report,
        lambda p, f, m: stats_row(p, f.data, datetime.now(UTC), m),
    )


@dataclass
class MonthResult:
    """One archive month as fetched this run; fans out to games and archive rows."""

    player: str
    month: str
    status: str  # downloaded | not_modified | failed | empty
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
                _warn(report, f"{player}: {month} is in the archive list but {exc}")
            continue
        except DeadlineReached:
            cut_off += 1
            report.unsettled.add(player)
            continue
        except ChessComError as exc:
            report.months["failed"] += 1
            _record_failure(player, exc, report)
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
            _warn(
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
        _deadline_reached(report)


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
    for player in _available(books, report):
        if books[player].listing.get("listed_in") == current.path:
            listings[player] = books[player].listed_months()
        else:
            stale.append(player)
    validators = {p: {k: books[p].listing.get(k) for k in ("etag", "last_modified")} for p in stale}

    def shape(player: str, fetched: Fetched) -> tuple[list[Month], Month | None]:
        return _listed_months(fetched.data, current, books[player].known())

    answered = _fetch_players(client, client.archives, stale, report, shape, validators, True)
    for player, fetched, shaped in answered:
        book = books[player]
        months, ahead = (book.listed_months(), None) if fetched.not_modified else shaped
        listings[player] = months
        kept = validators[player]
        if ahead:
            _warn(
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
                _warn(report, f"{player}: archive list {fetched.url} is empty: read again next run")
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


@dlt.transformer(
    data_from=archive_months,
    name="players_games",
    # A load stages each uuid once (`archive_months` drops a run's repeats), so dlt's
    # merge can skip its ROW_NUMBER() pass over the staged games (README, "Benchmark").
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
