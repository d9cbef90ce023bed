"""SIGTERM / SIGINT (issue 19 item 4): the real script against the fake API, stopped at
chosen moments.

Kestra's kill and task timeout, `docker stop` and Kubernetes send SIGTERM first (then
SIGKILL after a grace period: `killGracePeriod` in the flow, 10 s when the dind sidecar
shuts down). Each test checks: exit 143 (SIGINT: 130), never 0; a stop line and a summary
that says so; the exit within seconds of the signal; no request started after it; and,
after a clean re-run, every served game loaded exactly once.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import PLAYERS, Pipeline, assert_exactly_served, clean_rerun
from tests.fake_chesscom import FakeChessCom, World

pytestmark = pytest.mark.e2e

# From the signal to the exit: the load of what was fetched included. Well inside the
# 10 s that Docker gives a container when the dind sidecar stops (pipelines/chess_com.md, "Stopping a run").
PROMPT_S = 8.0
# A few games per load: the served games take several loads (a backfill).
SMALL_LOADS = {"SOURCES__CHESS__MAX_GAMES_PER_LOAD": "20"}
# Requests answered after the signal: those in flight (3, the client's default) and, as
# the server logs a request once its answer is written, any just answered.
AFTER_SIGNAL = 2 * 3
EXIT = {signal.SIGTERM: 143, signal.SIGINT: 130}


@pytest.fixture
def world() -> World:
    """A year of archives: a backfill of several loads (a load takes at most six months,
    the requests it may have in flight), so a stop always leaves months for the next run."""
    w = World(seed=19)
    w.populate(PLAYERS, months=12, games_per_month=8, shared_per_month=2)
    return w


class Running:
    """The script running in the background, its merged output read as it comes."""

    def __init__(self, pipeline: Pipeline, *args: str, **env: str | None) -> None:
        self.pipeline = pipeline
        self.proc = pipeline.popen(*args, **env)
        self.lines: list[str] = []
        self.signalled_at: float | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, what: str, condition: Callable[[], object], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                self._reader.join(timeout=5)
                raise AssertionError(f"the run ended before {what}:\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout} s:\n{self.output}")
            time.sleep(0.002)

    def send(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)
        if self.signalled_at is None:
            self.signalled_at = time.monotonic()

    def finish(self, timeout: float = 60) -> tuple[int, str, float]:
        """Exit code, output, and seconds from the first signal to the exit."""
        try:
            code = self.proc.wait(timeout=timeout)
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self._reader.join(timeout=10)
            if self.proc.stdout:
                self.proc.stdout.close()
        assert self.signalled_at is not None
        return code, self.output, time.monotonic() - self.signalled_at


def assert_stopped(code: int, output: str, seconds: float, sig: signal.Signals) -> None:
    name = sig.name
    assert code == EXIT[sig], (code, output)
    assert f"stop: stopping on {name}" in output, output
    assert f"Stopped by {name}" in output, output
    assert f"stopped by {name}: no request or load was started after it" in output, output
    assert "left for the next run" in output
    assert seconds < PROMPT_S, (seconds, output)


def loads_of(output: str) -> int:
    (count,) = re.findall(r"^loads: (\d+)$", output, flags=re.M)
    return int(count)


def test_sigterm_during_the_first_requests_stops_at_once(
    pipeline: Pipeline, api: FakeChessCom, world: World, tmp_path: Path
) -> None:
    api.latency = 0.5
    summary = tmp_path / "summary.json"
    run = Running(pipeline, "--summary-json", str(summary), **SMALL_LOADS)
    run.wait_for("request in flight", lambda: api.stats.in_flight > 0)
    answered = len(api.stats.paths())
    run.send(signal.SIGTERM)
    code, output, seconds = run.finish()
    assert_stopped(code, output, seconds, signal.SIGTERM)
    # Only the requests already in flight were answered after the signal.
    assert len(api.stats.paths()) - answered <= AFTER_SIGNAL, api.stats.paths()
    assert loads_of(output) <= 1
    data = json.loads(summary.read_text())
    assert data["stopped_by"] == "SIGTERM" and data["ok"] is False
    # The stop is not the run deadline.
    assert data["deadline_reached"] is False and "run deadline" not in output
    # A player whose documents were not all fetched is not "loaded".
    assert data["players_unsettled"] and not set(data["players_unsettled"]) & set(
        data["players_loaded"]
    ), data
    assert "players with work left for the next run: " in output
    clean_rerun(pipeline, api, world)


def test_sigint_is_a_stop_too_exit_130(pipeline: Pipeline, api: FakeChessCom, world: World) -> None:
    api.latency = 0.5
    run = Running(pipeline, **SMALL_LOADS)
    run.wait_for("request in flight", lambda: api.stats.in_flight > 0)
    run.send(signal.SIGINT)
    code, output, seconds = run.finish()
    assert_stopped(code, output, seconds, signal.SIGINT)
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    clean_rerun(pipeline, api, world)


def test_sigterm_between_loads_starts_no_further_load(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    api.latency = 0.2
    run = Running(pipeline, **SMALL_LOADS)
    # Logged once a load is committed, right before the next one is built.
    run.wait_for("a committed load", lambda: "left work for a further load" in run.output)
    answered = len(api.stats.paths())
    run.send(signal.SIGTERM)
    code, output, seconds = run.finish()
    assert_stopped(code, output, seconds, signal.SIGTERM)
    # At most the load that had just begun, with the requests it had in flight.
    assert 1 <= loads_of(output) <= 2, output
    assert len(api.stats.paths()) - answered <= AFTER_SIGNAL, api.stats.paths()
    # The backfill was left unfinished, and the next run finishes it.
    assert re.search(r"months: .*, \d+ left for the next run", output), output
    clean_rerun(pipeline, api, world)


def loading_package(pipeline: Pipeline) -> str | None:
    """The id of a package dlt is loading right now (a job started or done), if any."""
    normalized = pipeline.workdir / "dlt-data" / "pipelines" / "chess_com" / "load" / "normalized"
    for package in normalized.glob("*") if normalized.is_dir() else []:
        for folder in ("started_jobs", "completed_jobs"):
            jobs = package / folder
            if jobs.is_dir() and any(jobs.iterdir()):
                return package.name
    return None


def test_sigterm_during_a_load_lets_that_load_commit(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    run = Running(pipeline, **SMALL_LOADS)
    loading: list[str] = []

    def caught_loading() -> bool:
        package = loading_package(pipeline)
        if package is not None:
            run.send(signal.SIGTERM)
            loading.append(package)
        return bool(loading)

    run.wait_for("a package loading", caught_loading)
    code, output, seconds = run.finish()
    assert_stopped(code, output, seconds, signal.SIGTERM)
    # The load in progress was finished and committed, not aborted, and none followed it.
    committed = {row[0] for row in pipeline.query("select load_id from chess._dlt_loads")}
    assert loading[0] in committed, (loading, committed, output)
    assert "aborted" not in output
    clean_rerun(pipeline, api, world)


def test_a_body_arriving_slowly_is_cut_by_the_stop(
    pipeline: Pipeline, api: FakeChessCom, world: World
) -> None:
    # A month trickles at 50 bytes/s: without the cut the run would wait for
    # SOURCES__CHESS__REQUEST_DEADLINE_S (300 s) before stopping.
    slow = api.override("/pub/player/*/games/[0-9]*/*", trickle_bps=50)
    run = Running(pipeline, **SMALL_LOADS)
    run.wait_for("a month trickling", lambda: slow.served > 0)
    time.sleep(0.3)  # its body is being read
    run.send(signal.SIGTERM)
    code, output, seconds = run.finish(timeout=120)
    assert_stopped(code, output, seconds, signal.SIGTERM)
    assert re.search(r"months: 0 downloaded, .*, \d+ left for the next run", output), output
    clean_rerun(pipeline, api, world)


def test_a_second_signal_exits_at_once(pipeline: Pipeline, api: FakeChessCom, world: World) -> None:
    # Answers take 5 s to start: the first SIGTERM waits for those in flight; the second
    # does not wait for anything.
    api.latency = 5
    run = Running(pipeline, **SMALL_LOADS)
    run.wait_for("request in flight", lambda: api.stats.in_flight > 0)
    run.send(signal.SIGTERM)
    time.sleep(0.3)
    run.send(signal.SIGTERM)
    code, output, seconds = run.finish()
    assert code == 143, output
    assert "SIGTERM again: exiting now" in output, output
    assert seconds < 2.5, (seconds, output)
    clean_rerun(pipeline, api, world)


@pytest.mark.parametrize("delay", [0.0, 0.3, 0.7, 1.2])
def test_no_sigterm_run_exits_0(
    pipeline: Pipeline, api: FakeChessCom, world: World, delay: float
) -> None:
    """SIGTERM at a spread of moments once the run is requesting: always 143, never 0."""
    api.latency = 0.1
    run = Running(pipeline, **SMALL_LOADS)
    run.wait_for("the first request", lambda: api.stats.in_flight > 0 or api.stats.paths())
    time.sleep(delay)
    assert run.proc.poll() is None, "the run ended before the signal: make it longer"
    run.send(signal.SIGTERM)
    code, output, seconds = run.finish()
    if "Loaded into" in output and "stop:" not in output:
        pytest.fail(f"finished without seeing the signal:\n{output}")
    assert_stopped(code, output, seconds, signal.SIGTERM)
    rerun = clean_rerun(pipeline, api, world)
    assert_exactly_served(pipeline, world, rerun)
