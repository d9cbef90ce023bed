"""Run the real script against a fake API in a throw-away working directory, and measure it.

Each `Bench` owns a temporary directory (its own `DLT_DATA_DIR` and DuckDB file), removed by
`close()`. A run records wall time, the script's peak RSS (its own `VmHWM`, see
`status_mb`) and, sampled from /proc while it runs, its RSS over time; requests as the server saw them; and the
figures of the script's `--summary-json`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from tests.fake_chesscom import FakeChessCom

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "pipelines" / "dlt" / "dlt-chess-snowflake.py"
SCRUB = ("SOURCES__", "DESTINATION__", "RUNTIME__", "DLT_", "CHESS_", "EXTRACT__", "NORMALIZE__")
SAMPLE_EVERY_S = 0.25
# Settings given to every run of the script (bench.py `--setting NAME=VALUE`): what-ifs
# such as a larger DuckDB memory limit, recorded with the results.
WHAT_IF: dict[str, str] = {}


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
    # (seconds since start, RSS MB), every SAMPLE_EVERY_S
    rss_samples: list[tuple[float, float]] = field(default_factory=list)
    killed: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class Scenario:
    name: str
    description: str
    runs: list[Run] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)
    tabulate: bool = True  # False: runs of different kinds (e.g. killed + re-run)

    def median(self, key: str) -> float:
        return statistics.median(getattr(r, key) for r in self.runs)

    def median_step(self, step: str) -> float:
        return statistics.median(r.steps_s.get(step, 0.0) for r in self.runs)


def games_budget(scenario: Scenario, games: int | None) -> dict[str, str]:
    """Settings for a what-if games budget per load (`max_games_per_load`), noted in the
    scenario's description; none when `games` is not given."""
    if not games:
        return {}
    scenario.description += f", max_games_per_load={games}"
    return {"SOURCES__CHESS__MAX_GAMES_PER_LOAD": str(games)}


def clean_env() -> dict[str, str]:
    """This process's environment without any pipeline, dlt or chess settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(SCRUB)}


def status_mb(pid: int | str, field: str = "VmRSS") -> float | None:
    """A memory figure of a live process from /proc/PID/status (None once it is gone).

    Peaks come from `VmHWM`, the process's own high-water mark: `wait4`'s `ru_maxrss`
    would also hold this benchmark's own peak, which Linux carries into a child across
    fork/exec (fs/exec.c `exec_mmap`): a 1,000-player club's warm run read 336 MB there
    for a script whose own peak was 200 MB.
    """
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    return None


class RssSampler(threading.Thread):
    """Samples a process's RSS until it exits, and the highest `VmHWM` seen."""

    def __init__(self, pid: int, started: float) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.started = started
        self.samples: list[tuple[float, float]] = []
        self.peak_mb = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(SAMPLE_EVERY_S):
            value = status_mb(self.pid)
            if value is not None:
                self.samples.append((round(time.perf_counter() - self.started, 2), round(value, 1)))
            self.peak_mb = max(self.peak_mb, status_mb(self.pid, "VmHWM") or 0.0)


def reap(proc: subprocess.Popen[bytes], kill_when: Callable[[], bool] | None) -> tuple[bool, Any]:
    """Reap a child and set its returncode; with `kill_when`, SIGKILL it as soon as that
    says so. If the bench itself is stopped, so is the child. Returns (killed, rusage):
    not for its peak RSS, see `status_mb`."""
    try:
        killed = False
        while kill_when is not None and not killed:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if kill_when():
                proc.send_signal(signal.SIGKILL)
                killed = True
            time.sleep(0.05)
        else:
            _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped: Popen must not wait
    return killed, usage


class Bench:
    """One working directory (dlt state + DuckDB file) against one fake API."""

    def __init__(
        self, api: FakeChessCom, players: list[str], extra_env: dict[str, str] | None = None
    ) -> None:
        self.api = api
        self.players = players
        self.extra_env = dict(extra_env or {})
        self.dir = Path(tempfile.mkdtemp(prefix="chess-bench-"))
        self.db = self.dir / "chess_com.duckdb"

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def env(self) -> dict[str, str]:
        env = clean_env()
        env.update(
            DLT_DATA_DIR=str(self.dir / "dlt"),
            SOURCES__CHESS__BASE_URL=self.api.base_url,
            SOURCES__CHESS__CONTACT="bench@example.com",
            **WHAT_IF,
            **self.extra_env,
        )
        return env

    def run(self, kill_when: Callable[[], bool] | None = None) -> Run:
        """Run the script once. With `kill_when`, SIGKILL it as soon as that returns True
        (checked with every RSS sample): the run is then `killed`, with no summary."""
        self.api.stats.reset()
        summary = self.dir / "summary.json"
        summary.unlink(missing_ok=True)
        log = self.dir / "output.log"
        cmd = [sys.executable, str(SCRIPT), "--destination", "duckdb"]
        cmd += ["--players", ",".join(self.players), "--summary-json", str(summary)]
        started = time.perf_counter()
        with log.open("wb") as out:
            proc = subprocess.Popen(
                cmd, cwd=self.dir, env=self.env(), stdout=out, stderr=subprocess.STDOUT
            )
            sampler = RssSampler(proc.pid, started)
            sampler.start()
            try:
                killed, _ = reap(proc, kill_when)
            finally:
                sampler.done.set()
                sampler.join()
            wall = time.perf_counter() - started
        code = proc.returncode
        if not killed and code not in (0, 1):
            raise SystemExit(f"pipeline failed ({code}):\n{log.read_text()[-4000:]}")
        figures: dict[str, Any] = {} if killed else json.loads(summary.read_text())
        counts = self.api.stats.counts()
        return Run(
            wall_s=wall,
            exit_code=code,
            # The script's own peak (VmHWM at its summary); a killed run's, as last sampled.
            peak_rss_mb=figures.get("peak_memory_mb") or sampler.peak_mb,
            requests={f"{k}:{s}": n for (k, s), n in sorted(counts.items())},
            by_status={str(s): n for s, n in sorted(self.api.stats.by_status().items())},
            bytes_downloaded=self.api.stats.bytes_sent(),
            max_in_flight_seen=self.api.stats.max_in_flight_seen,
            rows=figures.get("rows", {}),
            loads=figures.get("loads", 0),
            games_in_table=self.count("select count(*) from chess.players_games")
            if self.has_table("players_games")
            else 0,
            steps_s=figures.get("step_seconds", {}),
            rss_samples=sampler.samples,
            killed=killed,
            notes=figures.get("notes", []),
        )

    def has_table(self, table: str) -> bool:
        if not self.db.exists():
            return False
        found = "select count(*) from information_schema.tables where table_schema = 'chess' "
        return self.count(found + f"and table_name = '{table}'") > 0

    def count(self, sql: str) -> int:
        return int(self.query(sql)[0][0])

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.db), read_only=True) as con:
            return con.execute(sql).fetchall()

    def uuids(self) -> set[str]:
        return {r[0] for r in self.query("select uuid from chess.players_games")}
