"""Fetching players' documents (profile, stats, archive list) and what a failure means.

Each document is asked for conditionally (the validators of the last good answer), in
parallel, once per run; a failed or invalid one is reported against its player. Used by
the resources in `chess_com` and by `archives`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import dlt
from dlt.common.typing import TDataItem

from .client import (
    ChessComClient,
    ChessComError,
    DeadlineReached,
    Fetched,
    PlayerGone,
    PlayerNotFound,
    Unreachable,
)
from .columns import ColumnTypes, Moved
from .records import InvalidRecordError
from .report import RunReport
from .throttle import parallel_map


def warn(report: RunReport, message: str) -> None:
    if message not in report.warnings:
        report.warnings.append(message)


def available(players: Iterable[str], report: RunReport) -> list[str]:
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
            warn(
                report,
                f"{player}: account closed (410 Gone since {gone[player]}): not requested "
                "(--full-refresh to ask again)",
            )
        else:
            result.append(player)
    return result


def record_failure(player: str, exc: ChessComError, report: RunReport) -> None:
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
        deadline_reached(report)
    elif isinstance(exc, Unreachable):
        report.unreachable = str(exc)
        report.fail(player, "not fetched: the API host is unreachable")
    else:
        report.fail(player, str(exc))


def deadline_reached(report: RunReport) -> None:
    report.backfill.halt()
    if report.stopped:  # SIGTERM/SIGINT, not the deadline: the runner's summary says so
        return
    report.deadline_reached = True
    warn(
        report,
        "run deadline reached (SOURCES__CHESS__DEADLINE_S): what was not fetched is left "
        "for the next run",
    )


def fetch_players(
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
        for p in available(players, report)
        if (kind, p) not in report.handled
    ]
    workers = client.limiter.max_in_flight
    for (player, _), future in parallel_map(lambda c: fetch(c[0], **c[1]), calls, workers):
        report.handled.add((kind, player))
        try:
            fetched = future.result()
        except ChessComError as exc:
            record_failure(player, exc, report)
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


def player_rows(
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

    for name, _, (row, collisions) in fetch_players(client, fetch, players, report, shaped):
        (placed,), moved = types.rows([row])
        for item in (*collisions, *moved):
            report.keep_apart(types.table, name, None, name, item)
        yield placed
