"""A Chess.com-like API whose monthly archives are generated on request, never stored.

`tests/fake_chesscom.World` keeps every game as a Python dict: fine for tests, but a
million-game backfill (~5 GB of JSON) would not fit. `LazyChessCom` serves the same routes,
validators and in-flight limit as `FakeChessCom` (it is one), but builds each month's
document from a seed of (player, month) when asked, keeps only a few recent ones, and
gives every month a fixed ETag and Last-Modified: re-runs get `304`, and the games of any
month can be listed again for checks (`expected_uuids`).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from threading import Lock
from typing import Any

from tests.fake_chesscom.server import ROUTES, FakeChessCom
from tests.fake_chesscom.world import Document, World, load_fixture, recent_months

VARIABLE = ("uuid", "url", "end_time", "rated", "time_class", "white", "black")
RESULTS = [("win", "checkmated"), ("win", "resigned"), ("win", "timeout"), ("agreed", "agreed")]
CACHED_MONTHS = 16  # a few in flight and just answered: ~20 MB at 500 games a month


def uuid4(rng: random.Random) -> str:
    """A random (version 4) UUID from `rng`: deterministic per seed, 5x faster than uuid's."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


class RawDocument(Document):
    """A document served as pre-encoded bytes with fixed validators."""

    def __init__(self, raw: bytes, modified: datetime) -> None:
        super().__init__(body=None, modified=modified)
        self.raw = raw
        self._etag = 'W/"' + hashlib.md5(raw).hexdigest() + '"'

    def encoded(self) -> bytes:
        return self.raw

    @property
    def etag(self) -> str:
        return self._etag


def month_modified(month: str, now: datetime) -> datetime:
    """When a month's archive last changed: a day after it ended, or an hour ago."""
    year, mon = (int(x) for x in month.split("/"))
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=UTC) + timedelta(days=1)
    return min(end, (now - timedelta(hours=1)).replace(microsecond=0))


class GameFactory:
    """Games cloned from the recorded fixtures (same size and nesting), seeded per month.

    The fields that stay as recorded (PGN, moves, FEN: most of the bytes) are encoded once
    per template; only the fields that make a game distinct are encoded per game, so the
    server keeps up with a pipeline loading tens of thousands of games a second.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        templates = load_fixture("games.json")["games"]
        self.static = [
            json.dumps({k: v for k, v in t.items() if k not in VARIABLE}, separators=(",", ":"))[
                1:-1
            ]
            for t in templates
        ]

    def month(self, player: str, month: str, count: int, now: datetime) -> list[dict[str, Any]]:
        """The distinct fields of each game (and `_template`: which recorded game it clones)."""
        rng = random.Random(f"{self.seed}:{player.lower()}:{month}")
        year, mon = (int(x) for x in month.split("/"))
        start = int(datetime(year, mon, 1, tzinfo=UTC).timestamp())
        latest = int(now.timestamp()) - 3600
        games = []
        for _ in range(count):
            game: dict[str, Any] = {"_template": rng.randrange(len(self.static))}
            game_id = rng.randrange(10**9, 10**10)
            game["uuid"] = uuid4(rng)
            game["url"] = f"https://www.chess.com/game/live/{game_id}"
            game["end_time"] = min(start + rng.randrange(0, 27 * 86400), latest)
            game["rated"] = rng.random() < 0.8
            game["time_class"] = rng.choice(("bullet", "blitz", "rapid"))
            opponent = f"opp{rng.randrange(10**6)}"
            first, second = rng.choice(RESULTS)
            sides = [(player, first), (opponent, second)]
            if rng.random() < 0.5:
                sides.reverse()
            for colour, (name, result) in zip(("white", "black"), sides, strict=True):
                game[colour] = {
                    "rating": rng.randrange(1200, 2900),
                    "result": result,
                    "@id": f"https://api.chess.com/pub/player/{name.lower()}",
                    "username": name,
                    "uuid": uuid4(rng),
                }
            games.append(game)
        games.sort(key=lambda g: g["end_time"])
        return games

    def encode(self, games: list[dict[str, Any]]) -> bytes:
        """`{"games": [...]}` as the API serves it, each game a full recorded one."""
        parts = ['{"games":[']
        for game in games:
            own = {k: v for k, v in game.items() if k != "_template"}
            # `{static,` + `own...}`: the per-game JSON object without its opening brace.
            parts += ["{", self.static[game["_template"]], ",", _compact(own)[1:], ","]
        if games:
            parts[-1] = "]}"  # the last game's trailing comma
        else:
            parts.append("]}")
        return "".join(parts).encode()


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class LazyChessCom(FakeChessCom):
    """`players` each with `games_per_month` games in each of the last `months` months."""

    def __init__(
        self,
        players: list[str],
        months: int,
        games_per_month: int,
        seed: int = 42,
        latency: float = 0.0,
        max_in_flight: int | None = None,
    ) -> None:
        world = World(seed)
        for name in players:
            world.add_player(name)  # profile and stats documents: small, kept
        super().__init__(world, latency=latency, max_in_flight=max_in_flight)
        # A killed client resets its connections: expected here, not worth a traceback.
        self.httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self.now = datetime.now(UTC)
        self.month_keys = recent_months(months, self.now)
        self.games_per_month = games_per_month
        self.factory = GameFactory(seed)
        self._cache: OrderedDict[tuple[str, str], RawDocument] = OrderedDict()
        self._cache_lock = Lock()
        self._listings: dict[str, RawDocument] = {}
        # (player, month) -> games added after the start (a day's new games)
        self.added: dict[tuple[str, str], int] = {}

    @property
    def total_games(self) -> int:
        base = len(self.world.players) * len(self.month_keys) * self.games_per_month
        return base + sum(self.added.values())

    def games(self, player: str, month: str) -> list[dict[str, Any]]:
        """The distinct fields of one archive month's games (regenerated: nothing is stored)."""
        count = self.games_per_month + self.added.get((player.lower(), month), 0)
        return self.factory.month(player, month, count, self.now)

    def add_games(self, player: str, month: str, count: int) -> None:
        """`count` more games in a month (its validators change, as on Chess.com)."""
        key = (player.lower(), month)
        with self._cache_lock:
            self.added[key] = self.added.get(key, 0) + count
            self._cache.pop(key, None)

    def expected_uuids(self) -> set[str]:
        return {
            g["uuid"] for p in self.world.players for m in self.month_keys for g in self.games(p, m)
        }

    def resolve(self, path: str) -> tuple[str, int, Document | None, str]:
        for kind, pattern in ROUTES:
            match = pattern.match(path)
            if not match or kind not in ("archives", "games"):
                continue
            name = match.group(1).lower()
            if name not in self.world.players:
                break  # the base class answers 404 / 410
            if kind == "archives":
                return kind, 200, self._listing(name), ""
            month = f"{match.group(2)}/{match.group(3)}"
            if month not in self.month_keys:
                break
            return kind, 200, self._month(name, month), ""
        return super().resolve(path)

    def _listing(self, name: str) -> RawDocument:
        with self._cache_lock:
            doc = self._listings.get(name)
            if doc is None:
                urls = [f"{self.base_url}/player/{name}/games/{m}" for m in self.month_keys]
                raw = json.dumps({"archives": urls}, separators=(",", ":")).encode()
                doc = RawDocument(raw, month_modified(self.month_keys[-1], self.now))
                self._listings[name] = doc
            return doc

    def _month(self, name: str, month: str) -> RawDocument:
        key = (name, month)
        with self._cache_lock:
            doc = self._cache.get(key)
            if doc is not None:
                self._cache.move_to_end(key)
                return doc
        # Built outside the lock: other requests go on meanwhile.
        raw = self.factory.encode(self.games(name, month))
        modified = month_modified(month, self.now)
        if (name, month) in self.added:
            modified = datetime.now(UTC).replace(microsecond=0)
        doc = RawDocument(raw, modified)
        with self._cache_lock:
            self._cache[key] = doc
            while len(self._cache) > CACHED_MONTHS:
                self._cache.popitem(last=False)
        return doc
