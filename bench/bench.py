#!/usr/bin/env python
"""Benchmark the pipeline against the project's Chess.com-like server: `make bench`.

Runs the real script into DuckDB, per scenario, and reports wall time (median of
`--repeat` runs), requests by kind and status, bytes downloaded, rows and games loaded,
dlt's extract / normalize / load step times (from the pipeline trace) and peak RSS of the
script's process (its own `VmHWM`, bench/harness.py). Writes JSON to bench/results/ and
prints a table and each scenario's checks. Figures only: nothing here asserts a time.

Scenarios (defaults as in the benchmark issues; `--quick` runs the first group only):
  fixed    interpreter, imports and first-load costs of one run
  cold     3 players x 24 months x 40 games, 40 ms latency, 3 requests in flight allowed
  warm     the same again, nothing new
  new      the same after new games in the current month of one player
  scale    1 player x 12 and x 120 months x 300 games (memory must stay flat)
  club     1,000 players x 3 months x 20 games, 40 ms, 3 in flight: cold, then the daily
           run with nothing new, then with one changed month (bench/club.py)
  backfill 20 players x 100 months x 500 games (1,000,000), and a backfill killed
           mid-run and resumed (bench/backfill.py)
  state    dlt state size at 1,000 players x 3..120 months, today's shape and the
           proposed one (bench/state_size.py)
  probe    20,000 games loaded by dlt alone: dict rows vs Arrow tables, loads of 5000
           vs one, DuckDB memory limit (bench/probes.py); only with --only
  anchor   the cold scenario run by dlt's verified `chess` source (bench/anchor.py), when
           --anchor-dir names a checkout of it; the cold run is then compared with it
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.anchor import bench_anchor  # noqa: E402
from bench.backfill import bench_backfill  # noqa: E402
from bench.club import bench_club  # noqa: E402
from bench.fixed_costs import bench_fixed  # noqa: E402
from bench.harness import WHAT_IF, Bench, Scenario, clean_env  # noqa: E402
from bench.probes import bench_probe_load  # noqa: E402
from bench.state_size import book_state, measure, per_month_state  # noqa: E402
from tests.fake_chesscom import FakeChessCom, World, recent_months  # noqa: E402

RESULTS = ROOT / "bench" / "results"
QUICK = ("fixed", "cold", "scale")
DEFAULT = ("fixed", "cold", "scale", "club", "backfill", "state")
GROUPS = (*DEFAULT, "probe", "anchor")


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
            with Bench(api, players) as bench:
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
        with tempfile.TemporaryDirectory(prefix="chess-load-only-") as tmp:
            workdir = Path(tmp)
            games_file = workdir / "games.json"
            games_file.write_text(json.dumps(games))
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, str(ROOT / "bench" / "load_only.py"), str(games_file), tmp],
                env=clean_env(),
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
                with Bench(api, ["scaler"]) as bench:
                    scenario.runs.append(bench.run())
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


def bench_state(players: int, month_counts: list[int]) -> Scenario:
    current = recent_months(1)[0]
    scenario = Scenario(
        "state", f"dlt state of the chess source at {players} players (synthetic, dlt's encoding)"
    )
    for months in month_counts:
        scenario.checks[f"{players}x{months}_months"] = {
            "per_month_before": measure(per_month_state(players, months, current)).as_dict(),
            "ranges_today": measure(book_state(players, months, current)).as_dict(),
        }
    return scenario


def against_fixed_costs(cold: Scenario, fixed: Scenario) -> dict[str, float]:
    """The cold run's wall time split into what any run pays and the rest."""
    imports = fixed.checks["script_imports_s"]
    first_load = fixed.checks["first_load_s"]
    wall = cold.median("wall_s")
    return {
        "wall_s": round(wall, 3),
        "imports_s": imports,
        "first_load_s": first_load,
        "fixed_share": round((imports + first_load) / wall, 2),
        "rest_s": round(wall - imports - first_load, 3),
    }


def table(scenarios: list[Scenario]) -> str:
    head = "| scenario | wall s (median) | extract / normalize / load s | requests (200/304/429) | MB down | games rows | loads | peak RSS MB |"
    lines = [head, "|" + "---|" * 8]
    for s in scenarios:
        if not s.runs or not s.tabulate:
            continue
        statuses = [
            sum(r.by_status.get(code, 0) for r in s.runs) // len(s.runs)
            for code in ("200", "304", "429")
        ]
        lines.append(
            f"| {s.name} | {s.median('wall_s'):.2f} | "
            f"{s.median_step('extract'):.2f} / {s.median_step('normalize'):.2f} / {s.median_step('load'):.2f} | "
            f"{sum(statuses)} ({'/'.join(map(str, statuses))}) | "
            f"{s.median('bytes_downloaded') / 1e6:.1f} | {statistics.median(r.rows.get('players_games', 0) for r in s.runs):.0f} | "
            f"{s.median('loads'):.0f} | {s.median('peak_rss_mb'):.0f} |"
        )  # fmt: skip
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="only: " + ", ".join(QUICK))
    parser.add_argument("--only", help=f"comma-separated groups of {', '.join(GROUPS)}")
    parser.add_argument("--players", type=int, default=3)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--games", type=int, default=40)
    parser.add_argument("--latency", type=float, default=0.040, help="seconds per request")
    parser.add_argument("--in-flight", type=int, default=3, help="server answers 429 above this")
    parser.add_argument("--new-games", type=int, default=5)
    parser.add_argument("--scale-games", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3, help="runs per timed scenario")
    parser.add_argument("--club-players", type=int, default=1000)
    parser.add_argument("--club-months", type=int, default=3)
    parser.add_argument("--club-games", type=int, default=20)
    parser.add_argument("--club-repeat", type=int, default=2, help="warm club runs")
    parser.add_argument(
        "--club-max-games-per-load", type=int, help="what-if: the source's games budget per load"
    )
    parser.add_argument("--backfill-players", type=int, default=20)
    parser.add_argument("--backfill-months", type=int, default=100)
    parser.add_argument("--backfill-games", type=int, default=500)
    parser.add_argument(
        "--backfill-max-games-per-load", type=int, help="what-if: the source's games budget"
    )
    parser.add_argument("--resume-months", type=int, default=5, help="months of the killed run")
    parser.add_argument("--probe-copies", type=int, default=4, help="x 5000 games per probe")
    parser.add_argument("--state-months", default="3,12,60,120", help="state size at these")
    parser.add_argument(
        "--anchor-dir",
        type=Path,
        help="the `sources` directory of a dlt-hub/verified-sources checkout: adds the anchor "
        "group (bench/README.md)",
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="what-if: an env setting for every run of the script, e.g. "
        'DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG=\'{"memory_limit": "256MB"}\'',
    )
    args = parser.parse_args()
    for setting in args.setting:
        name, sep, value = setting.partition("=")
        if not sep or not name:
            parser.error(f"--setting {setting!r}: expected NAME=VALUE")
        WHAT_IF[name] = value
    groups = QUICK if args.quick else DEFAULT
    if args.anchor_dir is not None:
        if not (args.anchor_dir / "chess" / "__init__.py").is_file():
            parser.error(f"--anchor-dir {args.anchor_dir}: no chess/__init__.py there")
        groups = (*groups, "anchor")
    if args.only:
        groups = tuple(g.strip() for g in args.only.split(","))
        unknown = sorted(set(groups) - set(GROUPS))
        if unknown:
            parser.error(f"unknown group(s) {', '.join(unknown)}: expected {', '.join(GROUPS)}")
        if "anchor" in groups and args.anchor_dir is None:
            parser.error("the anchor group needs --anchor-dir")
    args.groups = groups
    return args


def main() -> int:
    args = parse_args()
    # `kill` of the bench: unwind, so the scripts it started stop and temp dirs go.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    scenarios: list[Scenario] = []
    load_avg = [os.getloadavg()]
    fixed = None
    if "fixed" in args.groups:
        world = World(seed=1)
        game = world.new_game("alice", "bob", recent_months(1)[0])
        fixed = bench_fixed(args.repeat, game)
        scenarios.append(fixed)
    if "cold" in args.groups:
        incremental = bench_incremental(args)
        if fixed is not None:
            incremental[0].checks["against_fixed_costs"] = against_fixed_costs(
                incremental[0], fixed
            )
        scenarios += incremental
    if "anchor" in args.groups:
        anchor = bench_anchor(
            args.anchor_dir, args.players, args.months, args.games, args.latency,
            args.in_flight, args.repeat,
        )  # fmt: skip
        cold = [s for s in scenarios if s.name == "cold"]
        if cold:
            anchor.checks["cold_over_anchor"] = round(
                cold[0].median("wall_s") / anchor.median("wall_s"), 2
            )
        scenarios.append(anchor)
    if "scale" in args.groups:
        scenarios += bench_scale(args)
    if "club" in args.groups:
        scenarios += bench_club(args)
        load_avg.append(os.getloadavg())
    if "backfill" in args.groups:
        backfill = bench_backfill(args)
        twelve = [s for s in scenarios if s.name == "scale-12"]
        if twelve:
            backfill[0].checks["rss_over_scale_12"] = round(
                backfill[0].median("peak_rss_mb") / twelve[0].median("peak_rss_mb"), 2
            )
        scenarios += backfill
        load_avg.append(os.getloadavg())
    if "state" in args.groups:
        months = [int(m) for m in args.state_months.split(",")]
        scenarios.append(bench_state(args.club_players, months))
    if "probe" in args.groups:
        scenarios.append(bench_probe_load(args.probe_copies))
    elapsed = time.perf_counter() - started
    load_avg.append(os.getloadavg())

    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "load_average": [[round(x, 2) for x in a] for a in load_avg],
        "settings": vars(args),
        "bench_seconds": round(elapsed, 1),
        "scenarios": [
            {**asdict(s), "median_wall_s": round(s.median("wall_s"), 3) if s.runs else None}
            for s in scenarios
        ],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps(report, indent=2, default=str))  # paths in the settings
    print(table(scenarios))
    print()
    for s in scenarios:
        if s.checks:
            print(f"{s.name}: {json.dumps(s.checks)}")
    loads = " -> ".join("/".join(f"{x:.2f}" for x in a) for a in load_avg)
    print(f"\nload average (1/5/15 min) start -> end: {loads}")
    print(f"{len(scenarios)} scenarios in {elapsed:.0f} s; figures in {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
