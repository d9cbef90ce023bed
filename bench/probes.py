"""Probes for the next changes to the source: the same games loaded by dlt alone
(bench/load_only.py, no HTTP) in different ways, to see what would move games/s.

`probe-load` modes (`MODES`), each in a fresh process and directory: what the source did
before 2026-12-05 (dict rows, dlt's ROW_NUMBER() merge), what it does today (Arrow tables
from `games_table`, staged rows declared deduplicated), both in loads of
`max_games_per_load` = 5000, and today's with larger loads, one load for all (the per-load
fixed cost, by difference) and DuckDB without the project's 128 MB `memory_limit`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .harness import ROOT, Scenario, clean_env
from .lazy_api import GameFactory

LOAD_ONLY = ROOT / "bench" / "load_only.py"
BASE_GAMES = 5000
ONE_GB = {"DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG": '{"memory_limit": "1GB"}'}
TODAY = ["--arrow", "--deduplicated"]
MODES: dict[str, tuple[list[str], dict[str, str]]] = {
    "before: dicts, 5000 per load": (["--per-load", "5000"], {}),
    "today: arrow, deduplicated, 5000 per load": ([*TODAY, "--per-load", "5000"], {}),
    "arrow, deduplicated, 20000 per load": ([*TODAY, "--per-load", "20000"], {}),
    "arrow, deduplicated, one load": (TODAY, {}),
    "arrow, deduplicated, 5000 per load, DuckDB 1GB": ([*TODAY, "--per-load", "5000"], ONE_GB),
}


def games_file(path: Path) -> None:
    """`BASE_GAMES` games as the API serves them (ten months of one player)."""
    factory = GameFactory(seed=11)
    now = datetime.now(UTC)
    games: list[Any] = []
    for month in range(1, 11):
        raw = factory.encode(factory.month("prober", f"2025/{month:02d}", BASE_GAMES // 10, now))
        games += json.loads(raw)["games"]
    path.write_text(json.dumps(games))


def run_mode(games: Path, copies: int, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="chess-probe-") as workdir:
        cmd = [sys.executable, str(LOAD_ONLY), str(games), workdir, "--copies", str(copies), *args]
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            env={**clean_env(), "RUNTIME__LOG_LEVEL": "ERROR", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        out = proc.stdout.read() if proc.stdout else b""
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise SystemExit(f"load_only failed ({proc.returncode}): {' '.join(cmd)}")
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        result["process_s"] = round(time.perf_counter() - started, 2)
    steps = result["steps_s"]
    dlt_s = steps["normalize"] + steps["load"]
    all_s = steps["shape"] + steps["extract"] + dlt_s
    result.update(
        games_per_s_normalize_load=round(result["games"] / dlt_s),
        games_per_s_shape_to_load=round(result["games"] / all_s),
        peak_rss_mb=round(result["peak_memory_mb"] or usage.ru_maxrss / 1024),
    )
    return result


def bench_probe_load(copies: int) -> Scenario:
    scenario = Scenario(
        "probe-load", f"{BASE_GAMES * copies} games loaded by dlt alone, several ways (no HTTP)"
    )
    with tempfile.TemporaryDirectory(prefix="chess-probe-games-") as tmp:
        games = Path(tmp) / "games.json"
        games_file(games)
        for name, (args, env) in MODES.items():
            scenario.checks[name] = run_mode(games, copies, args, env)
    return scenario
