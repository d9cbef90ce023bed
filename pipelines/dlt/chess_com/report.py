"""What a run did, for the summary the script prints (and Kestra outputs).

`RunReport` is the chess pipeline's `pipeline_runner.SourceReport`: the runner counts
loads, rows per table and step times itself and asks the report for the rest.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pipeline_runner import Metric

from .client import RequestStats
from .columns import COERCED, WIDE_INTEGER, Moved

# Values kept apart listed one by one in the summary JSON; the rest are counted.
KEPT_APART_LISTED = 200


@dataclass
class Backfill:
    """The contract between the source and the runner's load loop for a backfill larger
    than one load (each load commits its state: memory stays flat, a kill resumes).

    Source side, while extracting one load: `begin()` when the load's source is built,
    `advance()` for every month the API answered (downloaded or not modified), `leave(n)`
    with the months it left for a further load, `halt()` when no further load may start
    this run (e.g. the run's deadline).
    Runner side, after each committed load: `another_load()`. A load that advanced nothing
    would leave the same months again, so it ends the run instead of looping.
    """

    left: int = 0
    advanced: int = 0
    halted: bool = False

    def begin(self) -> None:
        self.left, self.advanced, self.halted = 0, 0, False

    def advance(self, months: int = 1) -> None:
        self.advanced += months

    def leave(self, months: int) -> None:
        self.left = months

    def halt(self) -> None:
        self.halted = True

    def another_load(self) -> bool:
        return self.left > 0 and self.advanced > 0 and not self.halted


@dataclass
class RunReport:
    players: list[str] = field(default_factory=list)
    # player -> reasons; a player listed here did not load completely.
    failures: dict[str, list[str]] = field(default_factory=dict)
    # downloaded / not_modified / skipped / missing / failed
    months: Counter[str] = field(default_factory=Counter)
    games: int = 0
    duplicate_games: int = 0
    invalid_records: int = 0
    requests: RequestStats = field(default_factory=RequestStats)
    # Players the API said do not exist (404) or are gone (410): no further requests.
    unavailable: set[str] = field(default_factory=set)
    # What this run already asked for or settled, across its loads: ("profile", player),
    # ("stats_of", player), ("archives", player), ("games", player, "YYYY/MM"). A further
    # load of a backfill asks only for the rest (bench/README.md: a 1,000-player club
    # from nothing made 33,600 requests in 12 loads, 27,600 of them asked again).
    handled: set[tuple[str, ...]] = field(default_factory=set)
    # Months left for a further load by the games budget of this one (see Backfill).
    backfill: Backfill = field(default_factory=Backfill)
    # The runner aborted a load: what was fetched for it is not committed (fetched again).
    aborted_load: bool = False
    # Players recorded gone (410) by an earlier run -> that day: not requested, not failed.
    gone_players: dict[str, str] = field(default_factory=dict)
    # What an operator should know that did not fail the run (known-gone players, ...).
    warnings: list[str] = field(default_factory=list)
    # Why the API host was given up (connections refused, name not resolved), if it was.
    unreachable: str | None = None
    # The run's deadline (time.monotonic()), set by its first source; whether it was hit.
    deadline_at: float | None = None
    deadline_reached: bool = False
    # Players with a document or month left for the next run (the run's deadline, a stop,
    # or the games budget of its last load): not "loaded" in the summary.
    unsettled: set[str] = field(default_factory=set)
    # SIGTERM/SIGINT asked the run to stop (`stop`); the client of the load in progress,
    # whose deadline a stop moves to now (set by the source).
    stopped: bool = False
    client: Any = field(default=None, repr=False, compare=False)
    # Values kept outside their column (a changed type, a naming collision: see
    # `columns`): (table, column, into, kind) -> count, and the first ones record by record.
    kept_apart: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    kept_apart_records: list[dict[str, Any]] = field(default_factory=list)

    def keep_apart(
        self, table: str, player: str, month: str | None, key: Any, moved: Moved
    ) -> None:
        """Record one value placed outside its column (type drift or a collision)."""
        self.kept_apart[(table, moved.column, moved.into, moved.kind)] += 1
        if len(self.kept_apart_records) < KEPT_APART_LISTED:
            self.kept_apart_records.append(
                {
                    "table": table,
                    "player": player,
                    "month": month,
                    "key": key,
                    "field": moved.column,
                    "kept_in": moved.into,
                    "type": moved.kind,
                    "value": moved.value,
                }
            )

    def kept_apart_lines(self) -> list[str]:
        """One warning per column and variant: how many values, the first one's record."""
        lines = []
        for (table, column, into, kind), count in sorted(self.kept_apart.items()):
            first = next(
                (
                    r
                    for r in self.kept_apart_records
                    if (r["table"], r["field"], r["kept_in"]) == (table, column, into)
                ),
                None,
            )
            what = {
                "collision": "named like another field",
                WIDE_INTEGER: "an integer beyond 64 bits, as its digits",
                COERCED: "served as text or a whole float, taken as the number it names",
            }.get(kind, f"of type {kind}")
            where = (
                f"; first: {first['player']}{' ' + first['month'] if first['month'] else ''} "
                f"{first['key']}: {_short(first['value'])}"
                if first
                else ""
            )
            lines.append(f"{table}.{column}: {count} value(s) {what} kept in {into}{where}")
        return lines

    def fail(self, player: str, reason: str, unavailable: bool = False) -> None:
        reasons = self.failures.setdefault(player, [])
        if reason not in reasons:
            reasons.append(reason)
        if unavailable:
            self.unavailable.add(player)

    @property
    def deferred_months(self) -> int:
        """Months left for the next load or run (`Backfill.leave`)."""
        return self.backfill.left

    # -- pipeline_runner.SourceReport ----------------------------------------------------
    def another_load(self) -> bool:
        return self.backfill.another_load()

    def failed(self) -> bool:
        return bool(self.failures)

    def load_aborted(self) -> None:
        self.aborted_load = True

    def stop(self) -> None:
        """The runner got SIGTERM/SIGINT (called from its signal handler: flags only). The
        run's deadline becomes now: no request or retry starts, a body still arriving is
        cut (`DeadlineReached`), what was fetched is loaded and no further load is asked
        for; what was not fetched is not recorded, so the next run fetches it."""
        self.stopped = True
        self.deadline_at = time.monotonic()
        self.backfill.halt()
        if self.client is not None:
            self.client.run_deadline = self.deadline_at

    def headline(self) -> str | None:
        if self.unreachable:
            return f"Nothing fetched: {self.unreachable}"
        return None

    def summary_lines(self) -> list[str]:
        months = self.months
        by_status = ", ".join(f"{s}: {n}" for s, n in sorted(self.requests.by_status.items()))
        left = self.deferred_months
        gone = sorted(self.gone_players)
        gone = [f"players gone (410, not requested): {', '.join(gone)}"] if gone else []
        loaded = "players loaded" if not self.aborted_load else "players fetched, NOT committed"
        games = "games loaded" if not self.aborted_load else "games fetched, NOT committed"
        return [
            f"{loaded}: {len(self.loaded_players)} ({', '.join(self.loaded_players) or '-'})",
            *(
                [f"players with work left for the next run: {', '.join(self.unsettled_players)}"]
                if self.unsettled_players
                else []
            ),
            f"players failed: {len(self.failures)}",
            *(f"  - {p}: {'; '.join(reasons)}" for p, reasons in self.failures.items()),
            *gone,
            *(f"warning: {w}" for w in self.warnings),
            *(f"warning: {line}" for line in self.kept_apart_lines()),
            f"months: {months['downloaded']} downloaded, {months['not_modified']} not modified, "
            f"{months['skipped']} skipped (final), {months['missing']} missing, "
            f"{months['failed']} failed" + (f", {left} left for the next run" if left else ""),
            f"{games}: {self.games}"
            + (
                f" ({self.duplicate_games} also in another tracked player's archive)"
                if self.duplicate_games
                else ""
            ),
            f"requests: {self.requests.total} ({by_status or 'none'}"
            + (
                f"; {self.requests.attempts} attempts"
                if self.requests.attempts != self.requests.total
                else ""
            )
            + f"), {self.requests.bytes / 1e6:.2f} MB downloaded",
        ]

    def metrics(self) -> list[Metric]:
        return [
            Metric("games_loaded", self.games),
            Metric("players_failed", len(self.failures)),
            Metric("requests", self.requests.total),
            *(
                Metric("requests_by_status", n, {"status": str(status)})
                for status, n in sorted(self.requests.by_status.items())
            ),
            Metric("values_kept_apart", sum(self.kept_apart.values())),
        ]

    @property
    def loaded_players(self) -> list[str]:
        return [
            p
            for p in self.players
            if p not in self.failures and p not in self.gone_players and p not in self.unsettled
        ]

    @property
    def unsettled_players(self) -> list[str]:
        return [p for p in self.players if p in self.unsettled and p not in self.failures]

    def history(self) -> dict[str, Any]:
        """This run's columns of its `_pipeline_runs` row (pipeline_runner.history)."""
        by_status = {str(k): v for k, v in sorted(self.requests.by_status.items())}
        return {
            "players_ok": 0 if self.aborted_load else len(self.loaded_players),
            "players_failed": len(self.failures),
            "players_failed_json": json.dumps({p: "; ".join(r) for p, r in self.failures.items()}),
            "games_loaded": 0 if self.aborted_load else self.games,
            "requests": self.requests.total,
            "requests_json": json.dumps(by_status),
            "values_kept_apart": sum(self.kept_apart.values()),
        }

    def as_dict(self) -> dict[str, Any]:
        """Machine-readable summary (the script's --summary-json, Kestra outputs)."""
        return {
            "players_loaded": [] if self.aborted_load else self.loaded_players,
            "load_aborted": self.aborted_load,
            "players_unsettled": self.unsettled_players,
            "players_failed": {p: "; ".join(r) for p, r in self.failures.items()},
            "months": dict(self.months),
            "months_left": self.deferred_months,
            "games_loaded": self.games,
            "duplicate_games": self.duplicate_games,
            "requests": {str(k): v for k, v in sorted(self.requests.by_status.items())},
            "bytes_downloaded": self.requests.bytes,
            "request_attempts": self.requests.attempts,
            "request_errors": dict(sorted(self.requests.errors.items())),
            "unreachable": self.unreachable,
            "deadline_reached": self.deadline_reached,
            "gone_players": dict(self.gone_players),
            "warnings": list(self.warnings),
            "values_kept_apart": [
                {"table": t, "field": c, "kept_in": i, "type": k, "count": n}
                for (t, c, i, k), n in sorted(self.kept_apart.items())
            ],
            "values_kept_apart_records": list(self.kept_apart_records),
        }


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
