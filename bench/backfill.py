"""Backfill scenarios: about a million games in one run, and a backfill killed and resumed.

- `backfill`: every month of `--backfill-players` players (no latency: what is measured is
  the pipeline): wall time, games/s of dlt's normalize + load, number of loads, and the
  script's RSS sampled over the run (peak per quarter of the run: flat or growing?).
- `backfill-resume`: a smaller backfill SIGKILLed once about half of its months were
  served, then run again: every game is in the table exactly once (0 lost, 0 duplicated),
  and how much the second run fetched again.
"""

from __future__ import annotations

import argparse
from typing import Any

from .harness import Bench, Run, Scenario, games_budget
from .lazy_api import LazyChessCom


def rss_quarters(run: Run) -> list[float]:
    """Peak RSS (MB) in each quarter of the run's samples."""
    samples = [mb for _, mb in run.rss_samples]
    if not samples:
        return []
    size = max(1, len(samples) // 4)
    return [max(samples[i : i + size]) for i in range(0, size * 4, size) if samples[i : i + size]]


def table_integrity(bench: Bench, expected: int) -> dict[str, int]:
    """Rows, distinct games, and how many were lost or duplicated against `expected`."""
    if not bench.has_table("players_games"):
        return {"rows": 0, "distinct": 0, "lost": expected, "duplicated": 0}
    rows, distinct = bench.query("select count(*), count(distinct uuid) from chess.players_games")[
        0
    ]
    return {
        "rows": rows,
        "distinct": distinct,
        "lost": expected - distinct,
        "duplicated": rows - distinct,
    }


def games_per_s(run: Run) -> int:
    seconds = run.steps_s.get("normalize", 0.0) + run.steps_s.get("load", 0.0)
    return round(run.rows.get("players_games", 0) / seconds) if seconds else 0


def bench_backfill(args: argparse.Namespace) -> list[Scenario]:
    players = [f"backfill{i:03d}" for i in range(args.backfill_players)]
    shape = f"{len(players)} players x {args.backfill_months} months x {args.backfill_games} games"
    full = Scenario("backfill", f"backfill from nothing: {shape}, no latency")
    extra = games_budget(full, args.backfill_max_games_per_load)
    api = LazyChessCom(players, args.backfill_months, args.backfill_games).start()
    try:
        with Bench(api, players, extra) as bench:
            run = bench.run()
            full.runs.append(run)
            full.checks.update(
                games_expected=api.total_games,
                **table_integrity(bench, api.total_games),
                loads=run.loads,
                games_per_s_normalize_load=games_per_s(run),
                games_per_s_wall=round(run.rows.get("players_games", 0) / run.wall_s),
                peak_rss_mb=round(run.peak_rss_mb),
                rss_peak_by_quarter_mb=rss_quarters(run),
                rss_samples=len(run.rss_samples),
                requests_by_kind=run.requests,
            )
    finally:
        api.stop()
    return [full, bench_resume(args)]


def bench_resume(args: argparse.Namespace) -> Scenario:
    players = [f"resume{i:03d}" for i in range(args.backfill_players)]
    shape = f"{len(players)} players x {args.resume_months} months x {args.backfill_games} games"
    scenario = Scenario(
        "backfill-resume", f"backfill killed mid-run, then re-run: {shape}", tabulate=False
    )
    api = LazyChessCom(players, args.resume_months, args.backfill_games).start()
    months = len(players) * args.resume_months
    try:
        with Bench(api, players) as bench:

            def half_served() -> bool:
                return api.stats.counts()[("games", 200)] >= months // 2

            killed = bench.run(kill_when=half_served)
            at_kill = table_integrity(bench, api.total_games)
            scenario.runs.append(killed)
            rerun = bench.run()
            scenario.runs.append(rerun)
            result: dict[str, Any] = table_integrity(bench, api.total_games)
            scenario.checks.update(
                games_expected=api.total_games,
                killed=killed.killed,
                killed_after_s=round(killed.wall_s, 1),
                months_served_before_kill=killed.requests.get("games:200", 0),
                games_in_table_at_kill=at_kill["distinct"],
                rerun_months_downloaded=rerun.requests.get("games:200", 0),
                rerun_months_total=months,
                rerun_loads=rerun.loads,
                rerun_notes=rerun.notes,
                **result,
            )
    finally:
        api.stop()
    return scenario
