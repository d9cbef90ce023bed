"""What a run did, for the summary the script prints (and Kestra outputs)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .client import RequestStats


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
    # Months left for a further load by the games budget of this one.
    deferred_months: int = 0
    # Load packages this run committed (a backfill beyond the games budget takes several).
    loads: int = 0
    # Rows written per table and seconds per dlt step, summed over the loads.
    rows: Counter[str] = field(default_factory=Counter)
    step_seconds: Counter[str] = field(default_factory=Counter)

    def fail(self, player: str, reason: str, unavailable: bool = False) -> None:
        reasons = self.failures.setdefault(player, [])
        if reason not in reasons:
            reasons.append(reason)
        if unavailable:
            self.unavailable.add(player)

    @property
    def loaded_players(self) -> list[str]:
        return [p for p in self.players if p not in self.failures]

    def as_dict(self) -> dict[str, object]:
        """Machine-readable summary (the script's --summary-json, Kestra outputs)."""
        return {
            "players_loaded": self.loaded_players,
            "players_failed": {p: "; ".join(r) for p, r in self.failures.items()},
            "months": dict(self.months),
            "months_left": self.deferred_months,
            "loads": self.loads,
            "games_loaded": self.games,
            "duplicate_games": self.duplicate_games,
            "rows": dict(sorted(self.rows.items())),
            "requests": {str(k): v for k, v in sorted(self.requests.by_status.items())},
            "bytes_downloaded": self.requests.bytes,
            "step_seconds": {k: round(v, 3) for k, v in self.step_seconds.items()},
        }
