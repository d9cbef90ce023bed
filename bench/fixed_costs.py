"""What every run pays before and besides its data: the `fixed` scenario.

- interpreter: `python -c pass`;
- imports: the script's `--help` (Python, dlt, the source and the runner imported; exits
  before any pipeline is made), and the packages that take longest (`-X importtime`);
  again with compiled bytecode cached (in a temp `PYTHONPYCACHEPREFIX`): a fresh Kestra
  container compiles every module on import, as does any environment that sets
  `PYTHONDONTWRITEBYTECODE` over a venv installed without `--compile-bytecode`;
- first load: `bench/load_only.py` with one game (a pipeline, its schema and one load into
  a new DuckDB file), minus the imports.
Each is the median of `repeat` process runs.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from .harness import ROOT, SCRIPT, Scenario, clean_env

LOAD_ONLY = ROOT / "bench" / "load_only.py"


def timed(cmd: list[str], repeat: int, env: dict[str, str] | None = None) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(cmd, env=env or clean_env(), check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def slowest_imports(stderr: str, top: int = 8) -> dict[str, float]:
    """Seconds per package the script imports itself, from `python -X importtime` output
    (cumulative: what a package imports on its first import is counted under it)."""
    totals: Counter[str] = Counter()
    for line in stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(parts) != 3:
            continue
        cumulative, name = parts[1].strip(), parts[2]
        # Nested imports are indented beyond the one space after the bar.
        if not cumulative.isdigit() or name.startswith("  "):
            continue
        totals[name.strip().split(".")[0]] += int(cumulative) / 1e6
    return {name: round(s, 3) for name, s in totals.most_common(top)}


def bench_fixed(repeat: int, game: dict[str, Any]) -> Scenario:
    scenario = Scenario("fixed", "fixed costs of one run (median of process runs)")
    python = timed([sys.executable, "-c", "pass"], repeat)
    imports = timed([sys.executable, str(SCRIPT), "--help"], repeat)
    with tempfile.TemporaryDirectory(prefix="chess-pycache-") as cache:
        env = {k: v for k, v in clean_env().items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        timed([sys.executable, str(SCRIPT), "--help"], 1, env)  # compiles and caches
        cached = timed([sys.executable, str(SCRIPT), "--help"], repeat, env)
    with tempfile.TemporaryDirectory(prefix="chess-fixed-") as workdir:
        games = Path(workdir) / "games.json"
        games.write_text(json.dumps([game]))
        first_load = []
        for i in range(repeat):
            target = Path(workdir) / f"run{i}"
            first_load.append(timed([sys.executable, str(LOAD_ONLY), str(games), str(target)], 1))
    profile = subprocess.run(
        [sys.executable, "-X", "importtime", str(SCRIPT), "--help"],
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    load_process = statistics.median(first_load)
    scenario.checks.update(
        interpreter_s=round(python, 3),
        script_imports_s=round(imports, 3),
        script_imports_bytecode_cached_s=round(cached, 3),
        pythondontwritebytecode_set=bool(os.environ.get("PYTHONDONTWRITEBYTECODE")),
        load_only_1_game_s=round(load_process, 3),
        first_load_s=round(load_process - imports, 3),
        slowest_imports_s=slowest_imports(profile.stderr),
    )
    return scenario
