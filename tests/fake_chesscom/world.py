"""Synthetic Chess.com data, shaped like the recorded responses in tests/fixtures/.

Games are cloned from real recorded games with new ids, players, times and results, so
payload sizes and nesting match the real API. Everything is deterministic per seed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import threading
import uuid as uuidlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
RESULTS = [("win", "checkmated"), ("win", "resigned"), ("win", "timeout"), ("agreed", "agreed")]


def load_fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def month_key(year: int, month: int) -> str:
    return f"{year:04d}/{month:02d}"


def recent_months(count: int, now: datetime | None = None) -> list[str]:
    """The `count` months up to and including the current one (UTC), oldest first."""
    now = now or datetime.now(UTC)
    y, m = now.year, now.month
    keys = []
    for _ in range(count):
        keys.append(month_key(y, m))
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
    return keys[::-1]


def chesscom_date(moment: datetime) -> str:
    """Chess.com's non-RFC Last-Modified format: 'Friday, 25-Oct-2024 02:32:13 GMT+0000'."""
    return moment.astimezone(UTC).strftime("%A, %d-%b-%Y %H:%M:%S GMT+0000")


@dataclass
class Document:
    """A JSON body with its validators; bumping the version changes both."""

    body: Any
    modified: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def encoded(self) -> bytes:
        return json.dumps(self.body, separators=(",", ":")).encode()

    @property
    def etag(self) -> str:
        return 'W/"' + hashlib.md5(self.encoded()).hexdigest() + '"'

    @property
    def last_modified(self) -> str:
        return chesscom_date(self.modified)

    def touch(self) -> None:
        # Guarantee a different Last-Modified even within the same second.
        self.modified = max(
            datetime.now(UTC).replace(microsecond=0), self.modified + timedelta(seconds=1)
        )


@dataclass
class Player:
    username: str  # display case, as games carry it
    player_id: int
    profile: Document
    stats: Document
    months: dict[str, Document] = field(default_factory=dict)


class World:
    """Players, their archives and the games in them. Thread-safe for the server."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.players: dict[str, Player] = {}
        self.gone: set[str] = set()
        self.lock = threading.RLock()
        self._game_templates = load_fixture("games.json")["games"]
        self._profile = load_fixture("profile.json")
        self._stats = load_fixture("stats.json")

    # -- building ---------------------------------------------------------------------
    def add_player(self, username: str) -> Player:
        with self.lock:
            pid = 1_000_000 + len(self.players)
            profile = copy.deepcopy(self._profile)
            key = username.lower()
            profile.update(
                player_id=pid,
                username=key,
                url=f"https://www.chess.com/member/{username}",
            )
            profile["@id"] = f"https://api.chess.com/pub/player/{key}"
            player = Player(username, pid, Document(profile), Document(copy.deepcopy(self._stats)))
            self.players[key] = player
            return player

    def add_gone(self, username: str) -> None:
        self.gone.add(username.lower())

    def new_game(self, white: str, black: str, month: str) -> dict[str, Any]:
        template = self.rng.choice(self._game_templates)
        game = copy.deepcopy(template)
        year, mon = (int(x) for x in month.split("/"))
        start = datetime(year, mon, 1, tzinfo=UTC)
        end = min(
            start + timedelta(seconds=self.rng.randrange(0, 27 * 86400)),
            datetime.now(UTC) - timedelta(seconds=1),
        )
        game_id = str(self.rng.randrange(10**9, 10**10))
        game["uuid"] = str(uuidlib.UUID(int=self.rng.getrandbits(128), version=4))
        game["url"] = f"https://www.chess.com/game/live/{game_id}"
        game["end_time"] = int(end.timestamp())
        game["rated"] = self.rng.random() < 0.8
        game["time_class"] = self.rng.choice(["bullet", "blitz", "rapid"])
        first, second = self.rng.choice(RESULTS)
        if self.rng.random() < 0.5:
            first, second = second, first
        for colour, name, result in (("white", white, first), ("black", black, second)):
            game[colour] = {
                "rating": self.rng.randrange(1200, 2900),
                "result": result,
                "@id": f"https://api.chess.com/pub/player/{name.lower()}",
                "username": name,
                "uuid": str(uuidlib.UUID(int=self.rng.getrandbits(128), version=4)),
            }
        return game

    def add_games(
        self, username: str, month: str, count: int, opponent: str | None = None
    ) -> list[dict[str, Any]]:
        """Append `count` new games to a player's month; with a tracked `opponent`,
        the same games go into the opponent's archive too (as on Chess.com)."""
        with self.lock:
            player = self.players[username.lower()]
            other = self.players.get(opponent.lower()) if opponent else None
            games = []
            for _ in range(count):
                opp_name = other.username if other else f"opp{self.rng.randrange(10**6)}"
                pair = (player.username, opp_name)
                if self.rng.random() < 0.5:
                    pair = pair[::-1]
                games.append(self.new_game(pair[0], pair[1], month))
            for owner in (player, other):
                if owner is None:
                    continue
                doc = owner.months.setdefault(month, Document({"games": []}))
                doc.body["games"].extend(copy.deepcopy(games))
                doc.body["games"].sort(key=lambda g: g["end_time"])
                doc.touch()
            return games

    def populate(
        self,
        usernames: list[str],
        months: int,
        games_per_month: int,
        shared_per_month: int = 0,
    ) -> None:
        """Players with `games_per_month` games in each of the last `months` months;
        `shared_per_month` of them are against the next tracked player."""
        for name in usernames:
            if name.lower() not in self.players:
                self.add_player(name)
        for i, name in enumerate(usernames):
            opponent = usernames[(i + 1) % len(usernames)] if len(usernames) > 1 else None
            for month in recent_months(months):
                shared = min(shared_per_month, games_per_month) if opponent else 0
                self.add_games(name, month, games_per_month - shared)
                if shared:
                    self.add_games(name, month, shared, opponent=opponent)

    # -- reading ----------------------------------------------------------------------
    def all_games(self) -> dict[str, dict[str, Any]]:
        """Every distinct game served, by uuid."""
        with self.lock:
            return {
                g["uuid"]: g
                for p in self.players.values()
                for doc in p.months.values()
                for g in doc.body["games"]
            }

    def games_in(self, username: str, months: list[str] | None = None) -> list[dict[str, Any]]:
        with self.lock:
            player = self.players[username.lower()]
            return [
                g
                for key, doc in sorted(player.months.items())
                if months is None or key in months
                for g in doc.body["games"]
            ]
