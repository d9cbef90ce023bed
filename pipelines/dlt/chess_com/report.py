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

    def fail(self, player: str, reason: str, unavailable: bool = False) -> None:
        reasons = self.failures.setdefault(player, [])
        if reason not in reasons:
            reasons.append(reason)
        if unavailable:
            self.unavailable.add(player)

    @property
    def loaded_players(self) -> list[str]:
        return [p for p in self.players if p not in self.failures]
