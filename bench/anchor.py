#!/usr/bin/env python
"""The anchor of the cold benchmark: dlt's verified `chess` source against the same fake API.

The anchor is dlt-hub/verified-sources' `sources/chess` (its `source()`), run as its example
`sources/chess_pipeline.py` does (`players_games` + `players_profiles` into DuckDB), in a
fresh process per run. Its code is never copied into this repository: pass the directory
that holds its `chess` package (e.g. /tmp/anchor/sources, extracted from a snapshot with
`git archive`). A small driver, written into each run's temp directory, imports it, points
its `OFFICIAL_CHESS_API_URL` at the fake server (patched in the driver process only: the
anchor's files are not edited) and runs the pipeline. Figures: wall time, peak RSS (the
driver's own `VmHWM`), requests by status as the server saw them, game rows loaded vs games served.

Not loaded: `players_online_status` (the example's second pipeline) calls Chess.com's
unofficial `www.chess.com/callback/user/popup/<player>`, which the fake API does not serve.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import RssSampler, Run, Scenario, clean_env, reap  # noqa: E402
from tests.fake_chesscom import FakeChessCom, World, recent_months  # noqa: E402

DATASET = "chess_players_games_data"  # as in the anchor's example
RESOURCES = ("players_games", "players_profiles")  # what the example's games pipeline loads
TIMEOUT_S = 600.0

# Run in a fresh interpreter: argv[1] is a JSON settings file, the summary goes to its "summary".
DRIVER = """
import json, sys, time

settings = json.loads(open(sys.argv[1]).read())
sys.path.insert(0, settings["anchor_dir"])

import dlt
import chess as anchor
import chess.helpers as anchor_helpers
import chess.settings as anchor_settings

# helpers.py binds OFFICIAL_CHESS_API_URL at import ("from .settings import ..."): patch both.
base = settings["base_url"].rstrip("/") + "/"
anchor_settings.OFFICIAL_CHESS_API_URL = base
anchor_helpers.OFFICIAL_CHESS_API_URL = base
source = getattr(anchor, "source", None) or getattr(anchor, "chess_dlt_source")

pipeline = dlt.pipeline(
    pipeline_name="chess_pipeline", destination="duckdb", dataset_name=settings["dataset"]
)
data = source(
    settings["players"], start_month=settings["start_month"], end_month=settings["end_month"]
)
info = pipeline.run(data.with_resources(*settings["resources"]))
trace = pipeline.last_trace
steps = {}
for step in trace.steps:
    if step.finished_at and step.started_at:
        steps[step.step] = round((step.finished_at - step.started_at).total_seconds(), 3)
rows = dict(trace.last_normalize_info.row_counts) if trace.last_normalize_info else {}
# Its own peak (VmHWM): wait4's ru_maxrss would carry the benchmark's (bench/harness.py).
peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
summary = {
    "steps_s": steps,
    "rows": rows,
    "loads": len(info.loads_ids),
    "peak_memory_mb": int(peak[0].split()[1]) / 1024 if peak else None,
}
open(settings["summary"], "w").write(json.dumps(summary))
"""


def _tail(path: Path, lines: int = 5) -> list[str]:
    text = path.read_text(errors="replace") if path.exists() else ""
    return text.strip().splitlines()[-lines:]


def _games_loaded(db: Path) -> tuple[int, set[str]]:
    """(rows, distinct uuids) of the anchor's games table; (0, {}) if it has none."""
    if not db.exists():
        return 0, set()
    with duckdb.connect(str(db), read_only=True) as con:
        found = con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = ? and table_name = 'players_games'",
            [DATASET],
        ).fetchone()
        if not found or not found[0]:
            return 0, set()
        uuids = [r[0] for r in con.execute(f"select uuid from {DATASET}.players_games").fetchall()]
    return len(uuids), set(uuids)


def run_anchor(
    anchor_dir: Path, api: FakeChessCom, players: list[str], months: list[str]
) -> tuple[Run, set[str]]:
    """One run of the anchor's example pipeline in its own process, DLT_DATA_DIR and temp dir."""
    api.stats.reset()
    workdir = Path(tempfile.mkdtemp(prefix="chess-anchor-"))
    try:
        db = workdir / "anchor.duckdb"
        summary = workdir / "summary.json"
        config = workdir / "settings.json"
        driver = workdir / "driver.py"
        log = workdir / "output.log"
        driver.write_text(DRIVER)
        config.write_text(
            json.dumps(
                {
                    "anchor_dir": str(anchor_dir.resolve()),
                    "base_url": api.base_url,
                    "players": players,
                    "start_month": months[0],
                    "end_month": months[-1],
                    "dataset": DATASET,
                    "resources": list(RESOURCES),
                    "summary": str(summary),
                }
            )
        )
        env = clean_env()
        env.update(
            DLT_DATA_DIR=str(workdir / "dlt"),
            DESTINATION__DUCKDB__CREDENTIALS=str(db),
            # No network beyond the fake API (the project's own script sets the same).
            RUNTIME__DLTHUB_TELEMETRY="false",
        )
        started = time.perf_counter()
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, str(driver), str(config)],
                cwd=workdir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            sampler = RssSampler(proc.pid, started)
            sampler.start()
            deadline = started + TIMEOUT_S
            try:
                killed, _ = reap(proc, lambda: time.perf_counter() > deadline)
            finally:
                sampler.done.set()
                sampler.join()
        wall = time.perf_counter() - started
        figures: dict[str, Any] = json.loads(summary.read_text()) if summary.exists() else {}
        rows, uuids = _games_loaded(db)
        counts = api.stats.counts()
        notes = [] if proc.returncode == 0 else [f"exit {proc.returncode}", *_tail(log)]
        run = Run(
            wall_s=wall,
            exit_code=proc.returncode,
            # The driver's own peak; a failed driver's, as last sampled (bench/harness.py).
            peak_rss_mb=figures.get("peak_memory_mb") or sampler.peak_mb,
            requests={f"{k}:{s}": n for (k, s), n in sorted(counts.items())},
            by_status={str(s): n for s, n in sorted(api.stats.by_status().items())},
            bytes_downloaded=api.stats.bytes_sent(),
            max_in_flight_seen=api.stats.max_in_flight_seen,
            rows=figures.get("rows", {}),
            loads=figures.get("loads", 0),
            games_in_table=rows,
            steps_s=figures.get("steps_s", {}),
            rss_samples=sampler.samples,
            killed=killed,
            notes=notes,
        )
        return run, uuids
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def bench_anchor(
    anchor_dir: Path,
    players: int,
    months: int,
    games: int,
    latency: float,
    in_flight: int,
    repeat: int,
) -> Scenario:
    """The cold scenario of bench/bench.py (same world and server) run by the anchor."""
    names = [f"player{i}" for i in range(players)]
    scenario = Scenario(
        "anchor-cold",
        f"dlt verified `chess` source: {players} players x {months} months x {games} games, "
        f"{latency * 1000:.0f} ms latency, {in_flight} in flight allowed",
    )
    per_run: list[dict[str, Any]] = []
    for _ in range(repeat):
        # As bench.fresh() does.
        world = World(seed=42)
        world.populate(names, months=months, games_per_month=games, shared_per_month=2)
        api = FakeChessCom(world, latency=latency, max_in_flight=in_flight).start()
        try:
            run, uuids = run_anchor(anchor_dir, api, names, recent_months(months))
        finally:
            api.stop()
        served = set(world.all_games())
        entries = sum(len(world.games_in(name)) for name in names)
        scenario.runs.append(run)
        per_run.append(
            {
                "wall_s": round(run.wall_s, 3),
                "exit_code": run.exit_code,
                "responses_429": run.by_status.get("429", 0),
                "requests": sum(run.by_status.values()),
                "game_rows": run.games_in_table,
                "distinct_games_loaded": len(uuids),
                "duplicate_rows": run.games_in_table - len(uuids),
                "games_lost": len(served - uuids),
                "games_served": len(served),
                "archive_entries_served": entries,
            }
        )
    scenario.checks.update(
        median_wall_s=round(scenario.median("wall_s"), 3),
        responses_429=[r["responses_429"] for r in per_run],
        runs=per_run,
        loaded=list(RESOURCES),
        anchor_commit=_anchor_commit(anchor_dir),
    )
    return scenario


def _anchor_commit(anchor_dir: Path) -> str:
    """The commit written next to the extracted sources (see bench/README.md), if any."""
    for candidate in (anchor_dir / "COMMIT", anchor_dir.parent / "COMMIT"):
        if candidate.exists():
            return candidate.read_text().strip()
    return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--anchor-dir",
        type=Path,
        required=True,
        help="directory holding the anchor's `chess` package (e.g. /tmp/anchor/sources)",
    )
    parser.add_argument("--players", type=int, default=3)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--games", type=int, default=40)
    parser.add_argument("--latency", type=float, default=0.040, help="seconds per request")
    parser.add_argument("--in-flight", type=int, default=3, help="server answers 429 above this")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if not (args.anchor_dir / "chess" / "__init__.py").exists():
        parser.error(f"no chess/__init__.py under {args.anchor_dir}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    scenario = bench_anchor(
        args.anchor_dir,
        args.players,
        args.months,
        args.games,
        args.latency,
        args.in_flight,
        args.repeat,
    )
    print(f"{scenario.name}: {scenario.description}")
    print(f"anchor commit {scenario.checks['anchor_commit']}; loaded {', '.join(RESOURCES)}")
    print("| run | wall s | exit | requests (200/429/other) | 429 | game rows | distinct | "
          "duplicates | lost | served | peak RSS MB |")  # fmt: skip
    print("|" + "---|" * 11)
    for i, (run, row) in enumerate(zip(scenario.runs, scenario.checks["runs"], strict=True), 1):
        ok, limited = run.by_status.get("200", 0), run.by_status.get("429", 0)
        other = sum(run.by_status.values()) - ok - limited
        print(
            f"| {i} | {run.wall_s:.2f} | {run.exit_code} | {row['requests']} "
            f"({ok}/{limited}/{other}) | {limited} | {row['game_rows']} | "
            f"{row['distinct_games_loaded']} | {row['duplicate_rows']} | {row['games_lost']} | "
            f"{row['games_served']} | {run.peak_rss_mb:.0f} |"
        )
        for note in run.notes:
            print(f"    {note}")
    print(
        f"median wall {scenario.median('wall_s'):.2f} s, median peak RSS "
        f"{scenario.median('peak_rss_mb'):.0f} MB, steps (run 1) {scenario.runs[0].steps_s}"
    )
    if args.json:
        args.json.write_text(json.dumps({**asdict(scenario), "settings": vars(args)}, default=str))
    return 0 if all(r.exit_code == 0 for r in scenario.runs) else 1


if __name__ == "__main__":
    sys.exit(main())
