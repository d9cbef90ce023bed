#!/usr/bin/env python
"""Benchmark the pipeline against the project's Chess.com-like server: `make bench`.

Runs the real script into DuckDB, per scenario, and reports wall time (median of
`--repeat` runs), requests by kind and status, bytes downloaded, rows and games loaded,
dlt's extract / normalize / load step times (from the pipeline trace) and peak RSS of the
script's process (`wait4` rusage). Writes JSON to bench/results/ and prints a table.

Scenarios (defaults as in the benchmark issue):
  cold     3 players x 24 months x 40 games, 40 ms latency, 3 requests in flight allowed
  warm     the same again, nothing new
  new      the same after new games in the current month of one player
  scale    1 player x 12 and x 120 months x 300 games (memory must stay flat)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

from tests.fake_chesscom import FakeChessCom, World, recent_months  # noqa: E402

SCRIPT = ROOT / "pipelines" / "dlt" / "dlt-chess-snowflake.py"
RESULTS = ROOT / "bench" / "results"
SCRUB = ("SOURCES__", "DESTINATION__", "RUNTIME__", "DLT_", "CHESS_", "EXTRACT__", "NORMALIZE__")


@dataclass
class Run:
    wall_s: float
    exit_code: int
    peak_rss_mb: float
    requests: dict[str, int]
    by_status: dict[str, int]
    bytes_downloaded: int
    max_in_flight_seen: int
    rows: dict[str, int]
    loads: int
    games_in_table: int
    steps_s: dict[str, float]


@dataclass
class Scenario:
    name: str
    description: str
    runs: list[Run] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)

    def median(self, key: str) -> float:
        return statistics.median(getattr(r, key) for r in self.runs)

    def median_step(self, step: str) -> float:
        return statistics.median(r.steps_s.get(step, 0.0) for r in self.runs)


class Bench:
    """One working directory (dlt state + DuckDB file) against one fake API."""

    def __init__(self, world: World, api: FakeChessCom, players: list[str]) -> None:
        self.world = world
        self.api = api
        self.players = players
        self.dir = Path(tempfile.mkdtemp(prefix="chess-bench-"))
        self.db = self.dir / "chess_com.duckdb"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUB)}
        env.update(
            DLT_DATA_DIR=str(self.dir / "dlt"),
            SOURCES__CHESS__BASE_URL=self.api.base_url,
            SOURCES__CHESS__CONTACT="bench@example.com",
        )
        return env

    def run(self) -> Run:
        self.api.stats.reset()
        summary = self.dir / "summary.json"
        players = ",".join(self.players)
        cmd = [sys.executable, str(SCRIPT), "--destination", "duckdb", "--players", players]
        cmd += ["--summary-json", str(summary)]
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=self.dir, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        output = proc.stdout.read() if proc.stdout else b""
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode not in (0, 1):
            raise SystemExit(f"pipeline failed ({proc.returncode}):\n{output.decode()}")
        counts = self.api.stats.counts()
        figures = json.loads(summary.read_text())
        return Run(
            wall_s=wall,
            exit_code=proc.returncode,
            peak_rss_mb=usage.ru_maxrss / 1024,  # kilobytes on Linux
            requests={f"{k}:{s}": n for (k, s), n in sorted(counts.items())},
            by_status={str(s): n for s, n in sorted(self.api.stats.by_status().items())},
            bytes_downloaded=self.api.stats.bytes_sent(),
            max_in_flight_seen=self.api.stats.max_in_flight_seen,
            rows=figures["rows"],
            loads=figures["loads"],
            games_in_table=self.games_in_table(),
            steps_s=figures["step_seconds"],
        )

    def games_in_table(self) -> int:
        with duckdb.connect(str(self.db), read_only=True) as con:
            return con.execute("select count(*) from chess.players_games").fetchone()[0]

    def uuids(self) -> set[str]:
        with duckdb.connect(str(self.db), read_only=True) as con:
            return {r[0] for r in con.execute("select uuid from chess.players_games").fetchall()}


def fresh(
    players: list[str], months: int, games: int, latency: float, in_flight: int | None
) -> tuple[World, FakeChessCom]:
    world = World(seed=42)
    world.populate(players, months=months, games_per_month=games, shared_per_month=2)
    api = FakeChessCom(world, latency=latency, max_in_flight=in_flight).start()
    return world, api


def bench_incremental(args: argparse.Namespace) -> list[Scenario]:
    players = [f"player{i}" for i in range(args.players)]
    cold = Scenario("cold", f"{args.players} players x {args.months} months x {args.games} games, "
                    f"{args.latency * 1000:.0f} ms latency, {args.in_flight} in flight allowed")  # fmt: skip
    warm = Scenario("warm", "warm re-run, nothing new")
    new = Scenario(
        "new", f"warm re-run after {args.new_games} new games in one player's current month"
    )
    for _ in range(args.repeat):
        world, api = fresh(players, args.months, args.games, args.latency, args.in_flight)
        try:
            bench = Bench(world, api, players)
            cold.runs.append(bench.run())
            cold.checks.setdefault("games_served", len(world.all_games()))
            warm.runs.append(bench.run())
            before = bench.uuids()
            added = world.add_games(players[0], recent_months(1)[0], args.new_games)
            new.runs.append(bench.run())
            appeared = bench.uuids() - before
            new.checks.setdefault("exactly_new_games_appeared", []).append(
                appeared == {g["uuid"] for g in added}
            )
        finally:
            api.stop()
    load_only = measure_load_only(list(world.all_games().values()), args.repeat)
    requests = sum(cold.runs[0].requests.values())
    # What the wall time should approach: requests spread over the allowed concurrency,
    # plus what dlt needs to normalize and load the same rows.
    ideal_requests = requests * args.latency / args.in_flight
    dlt_time = load_only
    cold.checks.update(
        requests=requests,
        ideal_request_time_s=round(ideal_requests, 3),
        load_only_wall_s=round(dlt_time, 3),
        in_run_normalize_load_s=round(cold.median_step("normalize") + cold.median_step("load"), 3),
        target_s=round(1.5 * (ideal_requests + dlt_time), 3),
        wall_over_ideal=round(cold.median("wall_s") / (ideal_requests + dlt_time), 2),
        extract_over_ideal=round(cold.median_step("extract") / ideal_requests, 2),
        responses_429=sum(r.by_status.get("429", 0) for r in cold.runs),
        games_per_s_normalize_load=round(
            cold.checks["games_served"] / (cold.median_step("normalize") + cold.median_step("load"))
        ),
    )
    warm.checks.update(
        max_requests_per_player=max(sum(r.requests.values()) for r in warm.runs) / len(players),
        game_archives_downloaded=sum(r.requests.get("games:200", 0) for r in warm.runs),
        bytes_max=max(r.bytes_downloaded for r in warm.runs),
    )
    new.checks.update(
        game_archives_downloaded=[r.requests.get("games:200", 0) for r in new.runs],
    )
    return [cold, warm, new]


def measure_load_only(games: list[dict[str, Any]], repeat: int) -> float:
    """Median wall time of bench/load_only.py on these games: dlt without HTTP."""
    times = []
    for _ in range(repeat):
        workdir = Path(tempfile.mkdtemp(prefix="chess-load-only-"))
        games_file = workdir / "games.json"
        games_file.write_text(json.dumps(games))
        env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUB)}
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "load_only.py"), str(games_file), str(workdir)],
            env=env,
            check=True,
            capture_output=True,
        )
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_scale(args: argparse.Namespace) -> list[Scenario]:
    scenarios = []
    for months in (12, 120):
        scenario = Scenario(
            f"scale-{months}", f"1 player x {months} months x {args.scale_games} games, no latency"
        )
        for _ in range(args.repeat):
            world, api = fresh(["scaler"], months, args.scale_games, 0.0, None)
            try:
                scenario.runs.append(Bench(world, api, ["scaler"]).run())
                scenario.checks["games_served"] = len(world.all_games())
            finally:
                api.stop()
        scenarios.append(scenario)
    small, large = scenarios
    large.checks["rss_ratio_120_vs_12"] = round(
        large.median("peak_rss_mb") / small.median("peak_rss_mb"), 3
    )
    dlt_time = large.median_step("normalize") + large.median_step("load")
    large.checks["games_per_s_normalize_load"] = round(large.checks["games_served"] / dlt_time)
    return scenarios


def table(scenarios: list[Scenario]) -> str:
    head = "| scenario | wall s (median) | extract / normalize / load s | requests (200/304/429) | MB down | games rows | peak RSS MB |"
    lines = [head, "|" + "---|" * 7]
    for s in scenarios:
        statuses = [
            sum(r.by_status.get(code, 0) for r in s.runs) // len(s.runs)
            for code in ("200", "304", "429")
        ]
        lines.append(
            f"| {s.name} | {s.median('wall_s'):.2f} | "
            f"{s.median_step('extract'):.2f} / {s.median_step('normalize'):.2f} / {s.median_step('load'):.2f} | "
            f"{sum(statuses)} ({'/'.join(map(str, statuses))}) | "
            f"{s.median('bytes_downloaded') / 1e6:.1f} | {statistics.median(r.rows.get('players_games', 0) for r in s.runs):.0f} | "
            f"{s.median('peak_rss_mb'):.0f} |"
        )  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", type=int, default=3)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--games", type=int, default=40)
    parser.add_argument("--latency", type=float, default=0.040, help="seconds per request")
    parser.add_argument("--in-flight", type=int, default=3, help="server answers 429 above this")
    parser.add_argument("--new-games", type=int, default=5)
    parser.add_argument("--scale-games", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3, help="runs per timed scenario")
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args()

    started = time.perf_counter()
    scenarios = bench_incremental(args)
    if not args.skip_scale:
        scenarios += bench_scale(args)
    elapsed = time.perf_counter() - started

    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "settings": vars(args),
        "bench_seconds": round(elapsed, 1),
        "scenarios": [
            {**asdict(s), "median_wall_s": round(s.median("wall_s"), 3)} for s in scenarios
        ],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps(report, indent=2))
    print(table(scenarios))
    print()
    for s in scenarios:
        if s.checks:
            print(f"{s.name}: {json.dumps(s.checks)}")
    print(f"\n{len(scenarios)} scenarios in {elapsed:.0f} s; figures in {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
