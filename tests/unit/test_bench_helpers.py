"""The benchmark's own helpers (bench/): what their figures are computed from."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from dlt.common.versioned_state import compress_state, decompress_state

from bench.anchor import bench_anchor
from bench.backfill import rss_quarters
from bench.fixed_costs import slowest_imports
from bench.harness import RssSampler, Run, reap
from bench.lazy_api import GameFactory, LazyChessCom
from bench.state_size import book_state, measure, measure_stored, months_back, per_month_state
from chess_com.book import PlayerBook
from chess_com.months import Month
from tests.fake_chesscom import http_get
from tests.fake_chesscom.world import load_fixture

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


def test_months_back_crosses_years() -> None:
    assert months_back(3, "2026/02") == ["2025/12", "2026/01", "2026/02"]
    assert len(months_back(120, "2026/11")) == 120
    assert months_back(120, "2026/11")[0] == "2016/12"


def test_per_month_state_has_every_player_month_as_the_source_kept_it() -> None:
    state = per_month_state(4, 12, "2026/11", games=7)
    book = state["sources"]["chess"]["resources"]["archive_months"]["players"]
    assert len(book) == 4
    months = book["member00002"]["months"]
    assert list(months) == months_back(12, "2026/11")
    assert months["2026/11"]["final"] is False and months["2026/10"]["final"] is True
    assert months["2026/10"]["games"] == 7
    assert months["2026/10"]["etag"] != book["member00003"]["months"]["2026/10"]["etag"]
    assert set(state["sources"]["chess"]["resources"]["players_stats"]["validators"]) == set(book)


def test_book_state_is_what_the_source_makes_of_the_per_month_state() -> None:
    old = per_month_state(3, 30, "2026/11", games=7)
    players = old["sources"]["chess"]["resources"]["archive_months"]["players"]
    for name in players:  # what a run does: open the book (migrates), keep the listing
        book, listing = PlayerBook.of(players, name), players[name]["archives"]
        validators = {k: listing[k] for k in ("etag", "last_modified")}
        book.keep_listing(Month.parse(listing["listed_in"]), book.listed_months(), validators)
    assert old == book_state(3, 30, "2026/11", games=7)
    entry = players["member00001"]
    assert entry["final"] == "2024/06..2026/10"
    assert list(entry["open"]) == ["2026/11"] and entry["open"]["2026/11"]["games"] == 7
    assert entry["archives"]["months"] == "2024/06..2026/11"


def test_state_size_grew_with_months_before_but_not_in_todays_shape() -> None:
    small, large = per_month_state(50, 12, "2026/11"), per_month_state(50, 120, "2026/11")
    assert measure(large).stored_bytes > 5 * measure(small).stored_bytes
    ranges_small = measure(book_state(50, 12, "2026/11")).stored_bytes
    ranges_large = measure(book_state(50, 120, "2026/11")).stored_bytes
    assert abs(ranges_large - ranges_small) < 0.05 * ranges_small


def test_stored_size_is_dlts_encoding_of_the_state() -> None:
    state = book_state(10, 6, "2026/11")
    stored = compress_state(state)  # type: ignore[arg-type]
    assert decompress_state(stored) == state
    size = measure_stored(stored)
    assert size.stored_bytes == len(stored)
    assert size.json_bytes == measure(state).json_bytes > size.stored_bytes


def test_slowest_imports_counts_only_what_the_script_imports_itself() -> None:
    stderr = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       100 |        100 |   dlt.common.json",
            "import time:       500 |    2000000 | dlt",
            "import time:        10 |     300000 | chess_com.records",
            "import time:        20 |     200000 | chess_com",
            "not an import line",
        ]
    )
    assert slowest_imports(stderr) == {"dlt": 2.0, "chess_com": 0.5}


def _run(samples: list[float]) -> Run:
    return Run(
        0, 0, 0, {}, {}, 0, 0, {}, 0, 0, {}, [(i * 0.25, mb) for i, mb in enumerate(samples)]
    )


def test_rss_quarters_gives_each_quarters_peak() -> None:
    assert rss_quarters(_run([10, 30, 20, 25, 50, 40, 35, 60])) == [30, 25, 50, 60]
    assert rss_quarters(_run([])) == []


def test_factory_games_are_full_recorded_games_with_new_ids_and_deterministic() -> None:
    factory = GameFactory(seed=5)
    games = factory.month("Alice", "2026/10", 40, NOW)
    served = json.loads(factory.encode(games))["games"]
    template_keys = {frozenset(g) for g in load_fixture("games.json")["games"]}
    assert all(frozenset(g) in template_keys for g in served)
    assert len({g["uuid"] for g in served}) == 40
    assert all(uuid.UUID(g["uuid"]).version == 4 for g in served)
    assert [g["end_time"] for g in served] == sorted(g["end_time"] for g in served)
    assert all("Alice" in (g["white"]["username"], g["black"]["username"]) for g in served)
    assert factory.encode(factory.month("Alice", "2026/10", 40, NOW)) == factory.encode(games)
    other = factory.month("Alice", "2026/09", 40, NOW)
    assert not {g["uuid"] for g in other} & {g["uuid"] for g in served}
    assert json.loads(factory.encode([])) == {"games": []}


def _get(api: LazyChessCom, path: str, **headers: str) -> tuple[int, bytes, dict[str, str]]:
    return http_get(api.base_url, path, **headers)


def test_lazy_api_serves_months_with_stable_validators_and_new_games_change_them() -> None:
    with LazyChessCom(["alice"], months=3, games_per_month=5) as api:
        first, last = api.month_keys[0], api.month_keys[-1]
        status, body, _ = _get(api, "/player/alice/games/archives")
        assert status == 200
        assert [u.rsplit("/games/", 1)[1] for u in json.loads(body)["archives"]] == api.month_keys
        status, body, headers = _get(api, f"/player/alice/games/{first}")
        assert status == 200 and len(json.loads(body)["games"]) == 5
        assert (
            _get(api, f"/player/alice/games/{first}", **{"If-None-Match": headers["ETag"]})[0]
            == 304
        )
        _, before, old = _get(api, f"/player/alice/games/{last}")
        api.add_games("alice", last, 2)
        status, after, new = _get(
            api, f"/player/alice/games/{last}", **{"If-None-Match": old["ETag"]}
        )
        assert status == 200 and new["ETag"] != old["ETag"]
        old_ids = {g["uuid"] for g in json.loads(before)["games"]}
        new_ids = {g["uuid"] for g in json.loads(after)["games"]}
        assert old_ids < new_ids and len(new_ids) == 7
        assert api.total_games == 3 * 5 + 2
        assert _get(api, "/player/nobody/games/archives")[0] == 404
        assert _get(api, "/player/alice/games/1999/01")[0] == 200  # an empty month, as the base


# A stand-in with the anchor's layout (chess/{settings,helpers}.py, `source()`), so the
# anchor harness is checked here without dlt's verified-sources checkout.
STAND_IN = {
    "settings.py": 'OFFICIAL_CHESS_API_URL = "https://api.chess.com/pub/"\n',
    "helpers.py": "from .settings import OFFICIAL_CHESS_API_URL  # bound at import\n",
    "__init__.py": """
import json
import urllib.request

import dlt

from . import helpers


def _get(url):
    request = urllib.request.Request(url, headers={"User-Agent": "stand-in"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)


@dlt.source
def source(players, start_month=None, end_month=None):
    base = helpers.OFFICIAL_CHESS_API_URL

    @dlt.resource(write_disposition="append")
    def players_profiles():
        yield [_get(f"{base}player/{p}") for p in players]

    @dlt.resource(write_disposition="append")  # as the anchor: a shared game twice
    def players_games():
        for p in players:
            for url in _get(f"{base}player/{p}/games/archives")["archives"]:
                yield _get(url)["games"]

    return players_profiles, players_games
""",
}


def test_anchor_harness_counts_what_the_anchor_loaded(tmp_path: Path) -> None:
    package = tmp_path / "chess"
    package.mkdir()
    for name, text in STAND_IN.items():
        (package / name).write_text(text)
    scenario = bench_anchor(tmp_path, 2, 2, 5, latency=0.0, in_flight=3, repeat=1)
    (run,) = scenario.checks["runs"]
    assert run["exit_code"] == 0, scenario.runs[0].notes
    assert run["games_lost"] == 0
    assert run["game_rows"] == run["archive_entries_served"] > run["games_served"]
    assert run["duplicate_rows"] == run["archive_entries_served"] - run["games_served"]
    assert scenario.runs[0].rows["players_games"] == run["game_rows"]
    assert scenario.runs[0].requests["games:200"] == 4  # 2 players x 2 months


def test_a_child_peak_is_read_from_its_own_vmhwm_not_from_wait4() -> None:
    """Why bench/harness.py does not take `ru_maxrss`: Linux carries the parent's peak
    into a child across fork/exec, so a small script started by a big benchmark would
    report the benchmark's memory."""
    ballast = bytearray(300 * 1024 * 1024)  # this process's peak goes past 300 MB
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.0)"])
    sampler = RssSampler(child.pid, time.perf_counter())
    sampler.start()
    killed, usage = reap(child, None)
    sampler.done.set()
    sampler.join()
    del ballast
    assert not killed and child.returncode == 0
    assert usage.ru_maxrss / 1024 > 300  # the parent's peak, not the child's
    assert 0 < sampler.peak_mb < 100  # the child's own: an idle interpreter
