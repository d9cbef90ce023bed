"""pipeline_runner: the plumbing every pipeline script shares (and a toy second pipeline)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest
from dlt.common.configuration.container import Container
from dlt.common.pipeline import PipelineContext

from chess_com.client import ChessComClient, DeadlineReached
from chess_com.report import Backfill, RunReport
from pipeline_runner import (
    EXIT_BUSY,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SIGTERM,
    EXIT_USAGE,
    PipelineArguments,
    UsageError,
    parse_bool,
    query_tag,
    redact,
    redact_url,
    run_pipeline,
)
from pipeline_runner import run as runner_module
from pipeline_runner import stop as stop_module
from pipeline_runner.destination import DestinationBusy, duckdb_problem
from pipeline_runner.settings import check_writable, resolve_switches
from pipeline_runner.stop import StopSignals
from pipeline_runner.summary import LoadFailure, RunSummary, essence, peak_memory_mb
from pipeline_runner.workdir import PipelineBusy, RunLock, pipelines_dir

# -- redaction -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://user:pw@host/pub/x", "https://***@host/pub/x"),
        ("HTTP 500 from http://u:p@127.0.0.1:8/pub", "HTTP 500 from http://***@127.0.0.1:8/pub"),
        # A password with "@" in it is masked whole.
        ("https://u:p@ss@h.example/a", "https://***@h.example/a"),
        ("https://token@h/p", "https://***@h/p"),
        ("https://h/p?token=abc&page=2", "https://h/p?token=***&page=2"),
        ("https://h/p?api_key=abc;sig=def", "https://h/p?api_key=***;sig=***"),
        # Nothing to hide: unchanged, including an "@" in a path.
        ("https://www.chess.com/member/a@b", "https://www.chess.com/member/a@b"),
        ("no url here", "no url here"),
    ],
)
def test_redact_url(text: str, expected: str) -> None:
    assert redact_url(text) == expected


def test_redact_walks_nested_values_keys_included() -> None:
    value = {"a": ["https://u:s@h/x", ("https://t@h/",)], "https://k:s@h/": 1, "n": 2}
    assert redact(value) == {
        "a": ["https://***@h/x", ("https://***@h/",)],
        "https://***@h/": 1,
        "n": 2,
    }


# -- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes", "on", " True "])
def test_parse_bool_true(value: str) -> None:
    assert parse_bool(value, "X_FLAG") is True


@pytest.mark.parametrize("value", ["false", "0", "no", "off", None])
def test_parse_bool_false(value: str | None) -> None:
    assert parse_bool(value, "X_FLAG") is False


@pytest.mark.parametrize("value", ["maybe", "2", "tru", "yes please"])
def test_parse_bool_rejects_anything_else_naming_the_setting(value: str) -> None:
    with pytest.raises(UsageError, match=f"invalid CHESS_FULL_REFRESH '{value}'"):
        parse_bool(value, "CHESS_FULL_REFRESH")


def parse(argv: list[str], **env: str) -> argparse.Namespace:
    with pytest.MonkeyPatch.context() as mp:
        for key in ("TOY_TOP_N", "TOY_FULL_REFRESH"):
            mp.delenv(key, raising=False)
        for key, value in env.items():
            mp.setenv(key, value)
        arguments = PipelineArguments(argparse.ArgumentParser(), "TOY")
        arguments.option("--top-n", "players per board", type=int, default=10)
        arguments.switch("--full-refresh", "reload")
        namespace = arguments.parser.parse_args(argv)
        resolve_switches(arguments, namespace)
    return namespace


def test_options_default_to_prefixed_env_and_flags_win() -> None:
    assert parse([]).top_n == 10
    assert parse([], TOY_TOP_N="3").top_n == 3
    assert parse([], TOY_TOP_N="").top_n == 10  # Kestra passes "" for an empty input
    assert parse(["--top-n", "5"], TOY_TOP_N="3").top_n == 5
    assert parse([]).full_refresh is False
    assert parse([], TOY_FULL_REFRESH="true").full_refresh is True
    assert parse(["--full-refresh"], TOY_FULL_REFRESH="false").full_refresh is True
    with pytest.raises(UsageError, match="TOY_FULL_REFRESH 'maybe'"):
        parse([], TOY_FULL_REFRESH="maybe")


def test_check_writable_names_the_setting_and_the_missing_directory(tmp_path: Path) -> None:
    check_writable(tmp_path / "s.json", "--summary-json")
    with pytest.raises(UsageError, match=r"--summary-json .*missing.* does not exist"):
        check_writable(tmp_path / "missing" / "s.json", "--summary-json")
    with pytest.raises(UsageError, match="is a directory"):
        check_writable(tmp_path, "--summary-json")


# -- destination ---------------------------------------------------------------------------


@pytest.mark.parametrize("execution_id", [None, "4mNxVdO2rsZ1Sv4y"])
def test_query_tag_is_json_once_dlt_fills_its_placeholders(execution_id: str | None) -> None:
    template = query_tag("chess_com", execution_id)
    # dlt formats the template with these keys (TQueryTags) for every operation.
    tag = template.format(
        table="players_games", load_id="1795939024.03", source="chess", resource="r",
        pipeline_name="chess_com",
    )  # fmt: skip
    parsed = json.loads(tag)
    assert parsed["pipeline"] == "chess_com" and parsed["table"] == "players_games"
    assert parsed["load_id"] == "1795939024.03"
    assert parsed.get("kestra_execution_id") == execution_id
    assert "'" not in tag  # it is embedded in ALTER SESSION SET QUERY_TAG = '...'


def test_query_tag_names_each_pipeline() -> None:
    tag = json.loads(query_tag("chess_leaderboards", None).format(table="t", load_id="1"))
    assert tag["pipeline"] == "chess_leaderboards"


# -- working directory and lock --------------------------------------------------------------


def test_pipelines_dir_is_under_the_current_directory_unless_dlt_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DLT_DATA_DIR", raising=False)
    assert pipelines_dir() == tmp_path / ".dlt-data" / "pipelines"
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "elsewhere"))
    assert pipelines_dir() == tmp_path / "elsewhere" / "pipelines"


def test_lock_refuses_a_second_holder_naming_the_first(tmp_path: Path) -> None:
    with RunLock(tmp_path, "toy"):
        with pytest.raises(PipelineBusy) as busy:
            RunLock(tmp_path, "toy").acquire()
        message = str(busy.value)
        assert f"pid {os.getpid()} on host {socket.gethostname()}, started 20" in message
        assert str(tmp_path / "toy.lock") in message
        RunLock(tmp_path, "other").acquire()  # another pipeline is independent
    with RunLock(tmp_path, "toy"):  # released on exit
        pass


# -- summary -----------------------------------------------------------------------------------


def test_essence_keeps_the_exception_line_of_a_traceback_redacted() -> None:
    message = (
        "Traceback (most recent call last):\n  File 'x.py', line 1\n"
        "_duckdb.OutOfMemoryException: Out of Memory Error: could not allocate\n\n"
        "The above exception was the direct cause of the following exception:\n"
        "dlt.destinations.exceptions.DatabaseTransientException: Out of Memory Error at "
        "https://u:pw@h/x\n\nPossible solutions:\n* Reducing the number of threads\n"
    )
    assert essence(message) == (
        "dlt.destinations.exceptions.DatabaseTransientException: Out of Memory Error at "
        "https://***@h/x"
    )
    assert essence("plain\nsecond") == "plain"


def test_summary_names_an_aborted_load_and_redacts_everything() -> None:
    summary = RunSummary(pipeline="toy", target="duckdb dataset 'toy'", working_dir="/w/toy")
    summary.load_failures.append(
        LoadFailure(
            step="load",
            message="OOM reading https://u:secret@h/x",
            load_id="1795.1",
            table="games",
            job="games.abc.sql",
            aborted=True,
        )
    )
    report = RunReport(players=["alice"])
    report.load_aborted()
    text = summary.text(report)
    assert text.splitlines()[0].startswith("Load into duckdb dataset 'toy' FAILED")
    assert "load failed at table games (job games.abc.sql, package 1795.1)" in text
    assert "the package was aborted" in text
    assert "players fetched, NOT committed: 1 (alice)" in text
    assert "secret" not in text and "https://***@h/x" in text
    data = summary.as_dict(report)
    assert data["ok"] is False and data["players_loaded"] == []
    assert data["load_failures"][0]["table"] == "games"
    assert "secret" not in json.dumps(data)


# -- the backfill contract ---------------------------------------------------------------------


def test_backfill_contract() -> None:
    backfill = Backfill()
    backfill.begin()
    assert not backfill.another_load()  # nothing left
    backfill.advance()
    backfill.leave(3)
    assert backfill.another_load()
    backfill.begin()  # next load: counters start again
    backfill.leave(3)
    assert not backfill.another_load(), "a load that advanced nothing must end the run"
    backfill.advance()
    backfill.halt()
    assert not backfill.another_load(), "halted (e.g. deadline): no further load"
    report = RunReport()
    report.backfill.advance()
    report.backfill.leave(2)
    assert report.another_load() and report.deferred_months == 2
    assert report.as_dict()["months_left"] == 2


def test_a_stopped_report_requests_nothing_more_and_asks_for_no_further_load() -> None:
    report = RunReport()
    client = ChessComClient("http://127.0.0.1:9/pub", "tests@example.com", stats=report.requests)
    report.client = client
    report.backfill.advance()
    report.backfill.leave(4)
    assert report.another_load() and not client.deadline_passed()
    report.stop()
    assert report.stopped and client.deadline_passed()
    assert not report.another_load()
    with pytest.raises(DeadlineReached, match="left for the next run"):
        client.profile("alice")
    assert report.requests.attempts == 0, "no request was made"
    assert report.as_dict()["deadline_reached"] is False  # a stop is not the deadline


# -- a second pipeline: source + one call --------------------------------------------------------


@dlt.source(name="toy", section="toy")
def toy(count: int = dlt.config.value) -> Any:
    @dlt.resource(name="numbers", write_disposition="merge", primary_key="n")
    def numbers() -> Iterator[dict[str, int]]:
        yield from ({"n": n, "square": n * n} for n in range(count))

    return numbers


@pytest.fixture
def toy_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith(("TOY_", "SOURCES__", "DESTINATION__", "KESTRA_", "DLT_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt-data"))
    monkeypatch.setenv("DLT_PROJECT_DIR", str(tmp_path))  # no project config
    yield tmp_path
    # run_pipeline ran dlt in this process: leave no active pipeline to later tests.
    context = Container()[PipelineContext]
    if context.is_active():
        context.deactivate()


def run_toy(
    *argv: str,
    source: Any = None,
    report: Any = None,
    after_load: Any = None,
    built: list[int] | None = None,
) -> int:
    def add_arguments(args: PipelineArguments) -> None:
        args.option("--count", "how many numbers", type=int)

    def build_source(args: argparse.Namespace) -> Any:
        if built is not None:
            built.append(1)
        make = source or toy
        return make(**({"count": args.count} if args.count is not None else {}))

    return run_pipeline(
        name="toy_numbers",
        env_prefix="TOY",
        dataset="toy",
        build_source=build_source,
        add_arguments=add_arguments,
        report=report,
        after_load=after_load,
        argv=["--destination", "duckdb", *argv],
    )


def test_a_second_pipeline_is_its_source_and_one_call(
    toy_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOY_DATASET", "numbers_ds")
    summary = toy_dir / "s.json"
    assert run_toy("--count", "5", "--summary-json", str(summary)) == EXIT_OK
    out = capsys.readouterr().out
    assert f"Loaded into duckdb dataset 'numbers_ds' ({toy_dir / 'toy_numbers.duckdb'})" in out
    assert "  numbers: 5" in out
    assert f"working directory: {toy_dir / 'dlt-data' / 'pipelines' / 'toy_numbers'}" in out
    with duckdb.connect(str(toy_dir / "toy_numbers.duckdb"), read_only=True) as con:
        rows = con.execute("select n, square from numbers_ds.numbers order by n").fetchall()
    assert rows == [(n, n * n) for n in range(5)]
    data = json.loads(summary.read_text())
    assert data["pipeline"] == "toy_numbers" and data["rows"] == {"numbers": 5}


def test_a_dataset_named_like_the_duckdb_file_is_refused_before_any_extract(
    toy_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB's catalog is the file's name: dataset `toy_numbers` in toy_numbers.duckdb
    would fail its first load after the whole extract (Binder Error: Ambiguous reference)."""
    monkeypatch.setenv("TOY_DATASET", "toy_numbers")
    built: list[int] = []
    assert run_toy("--count", "3", built=built) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "dataset 'toy_numbers' is also the name of the DuckDB file toy_numbers.duckdb" in err
    assert built == [] and not (toy_dir / "toy_numbers.duckdb").exists()


def test_second_pipeline_config_errors_name_its_own_settings(
    toy_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_toy() == EXIT_USAGE  # `count` has no default
    err = capsys.readouterr().err
    assert "missing setting(s): count" in err and "--count" in err
    assert "SOURCES__TOY__COUNT" in err
    monkeypatch.setenv("SOURCES__TOY__COUNT", "many")
    assert run_toy() == EXIT_USAGE
    assert "invalid SOURCES__TOY__COUNT 'many': expected int" in capsys.readouterr().err
    assert not (toy_dir / "toy_numbers.duckdb").exists()


def test_second_pipeline_refuses_to_run_while_its_lock_is_held(
    toy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with RunLock(toy_dir / "dlt-data" / "pipelines", "toy_numbers"):
        assert run_toy("--count", "1") == EXIT_BUSY
    assert "another run of pipeline 'toy_numbers' is in progress" in capsys.readouterr().err
    assert not (toy_dir / "toy_numbers.duckdb").exists()


def test_second_pipeline_names_an_unusable_working_directory(
    toy_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = toy_dir / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("DLT_DATA_DIR", str(blocker))
    assert run_toy("--count", "1") == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"cannot create dlt's working directory {blocker / 'pipelines'}" in err
    assert "DLT_DATA_DIR" in err


def test_headline_says_when_nothing_was_loaded() -> None:
    summary = RunSummary(pipeline="toy", target="duckdb dataset 'toy'")
    assert summary.headline(None) == "Loaded into duckdb dataset 'toy'"
    summary.errors.append("sync failed at step sync: ConnectionError: refused")
    assert summary.headline(None).startswith("Nothing loaded into duckdb dataset 'toy'")
    summary.loads = 1
    assert summary.headline(None) == "Loaded into duckdb dataset 'toy'"


def test_peak_memory_is_the_process_own_high_water_mark(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmPeak:\t 900000 kB\nVmHWM:\t  263168 kB\nVmRSS:\t 1024 kB\n")
    assert peak_memory_mb(status) == 257.0
    assert peak_memory_mb(tmp_path / "missing") is None
    assert peak_memory_mb() is not None  # this Linux process has a /proc/self/status

    summary = RunSummary(pipeline="toy", peak_memory_mb=257.0)
    assert "peak memory: 257 MB" in summary.text(None).splitlines()
    assert summary.as_dict(None)["peak_memory_mb"] == 257.0
    assert "peak memory" not in RunSummary(pipeline="toy").text(None)


# -- SIGTERM / SIGINT ------------------------------------------------------------------------


def test_first_signal_asks_to_stop_the_second_exits_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exits: list[int] = []

    def fake_exit(code: int) -> None:
        exits.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(stop_module.os, "_exit", fake_exit)
    told: list[int] = []
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals(told.append) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        _until(lambda: stop.requested)
        assert (stop.name, stop.exit_code, told) == ("SIGTERM", 143, [signal.SIGTERM])
        with pytest.raises(SystemExit):
            os.kill(os.getpid(), signal.SIGINT)
            _until(lambda: bool(exits))
    assert exits == [130] and told == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is before, "the handlers are put back"


def _until(condition: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.001)


class StopBetweenLoads:
    """A report whose source always leaves work for a further load; SIGTERM arrives
    right after the first load is committed."""

    def __init__(self) -> None:
        self.stopped = False

    def another_load(self) -> bool:
        os.kill(os.getpid(), signal.SIGTERM)
        _until(lambda: self.stopped)
        return True

    def stop(self) -> None:
        self.stopped = True


def test_sigterm_between_loads_starts_no_further_load(
    toy_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def second_signal(code: int) -> None:
        raise AssertionError("a further load ran and asked for a second signal")

    monkeypatch.setattr(stop_module.os, "_exit", second_signal)
    report, built = StopBetweenLoads(), []
    views: list[int] = []
    code = run_toy("--count", "3", report=report, built=built, after_load=views.append)
    assert code == EXIT_SIGTERM == 143
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("Stopped by SIGTERM: 1 load(s) of this run committed")
    assert "stopped by SIGTERM: no request or load was started after it" in out
    assert "loads: 1" in out
    assert built == [1], "no source was built for a further load"
    assert views == [], "no after-load step after a stop"


@dlt.source(name="endless", section="endless")
def endless(count: int = 0) -> Any:
    @dlt.resource(name="numbers", write_disposition="append")
    def numbers() -> Iterator[dict[str, int]]:
        for n in range(1_000_000):
            if n == 50:
                os.kill(os.getpid(), signal.SIGTERM)
            yield {"n": n}

    return numbers


def test_a_source_that_cannot_stop_is_stopped_by_dlt_and_its_load_aborted(
    toy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_toy(source=endless) == EXIT_SIGTERM  # no report, so no stop(): dlt's flag
    out = capsys.readouterr().out
    assert "Stopped by SIGTERM: 0 load(s)" in out
    assert "the load in progress was stopped at its extract step" in out
    assert "error:" not in out
    with duckdb.connect(str(toy_dir / "toy_numbers.duckdb"), read_only=True) as con:
        tables = con.execute("select table_name from information_schema.tables").fetchall()
    assert ("numbers",) not in tables
    # dlt's flag is lowered again: the next run in this process runs normally.
    from dlt.common.runtime import signals as dlt_signals

    assert not dlt_signals.was_signal_received()
    assert run_toy("--count", "2") == EXIT_OK


# -- the destination: tables dropped by hand, a DuckDB file held by another process ----------


@dlt.source(name="toy", section="toy")
def untouchable(count: int = 0) -> Any:
    """The toy source, but extracting it fails the test."""

    @dlt.resource(name="numbers", write_disposition="merge", primary_key="n")
    def numbers() -> Iterator[dict[str, int]]:
        raise AssertionError("nothing may be extracted")
        yield {}

    return numbers


def test_a_table_dropped_by_hand_fails_the_run_before_any_extract_until_a_full_refresh(
    toy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_toy("--count", "3") == EXIT_OK
    db = str(toy_dir / "toy_numbers.duckdb")
    with duckdb.connect(db) as con:
        con.execute("drop table toy.numbers")
    capsys.readouterr()
    assert run_toy("--count", "3", source=untouchable) == EXIT_FAILED
    out = capsys.readouterr().out
    assert "table numbers is missing from dataset 'toy'" in out
    assert "--full-refresh" in out and "extract" not in out
    assert run_toy("--count", "3", "--full-refresh") == EXIT_OK
    with duckdb.connect(db, read_only=True) as con:
        assert con.execute("select count(*) from toy.numbers").fetchone() == (3,)


LOCK_HOLDER = (
    "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
    "time.sleep(60)"
)


def test_duckdb_problems_say_what_they_are() -> None:
    wrapped = (
        "Connection with `client_type=DuckDbSqlClient` to `dataset_name=chess` failed. Please "
        "check if you configured the credentials at all and provided the right credentials "
        "values. The actual reason given is: IO Error: Could not set lock on file "
        '"/w/chess_com.duckdb": Conflicting lock is held in /usr/bin/python3.11 (PID 4242). '
        "See also https://duckdb.org/docs/current/connect/concurrency"
    )
    problem = duckdb_problem(wrapped)
    assert isinstance(problem, DestinationBusy)
    assert str(problem).startswith(
        "DuckDB file '/w/chess_com.duckdb' is locked by another process "
        "(PID 4242, /usr/bin/python3.11)"
    )
    assert "credentials" not in str(problem)
    invalid = 'IO Error: The file "/w/x.duckdb" exists, but it is not a valid DuckDB database file!'
    assert "is not a DuckDB database" in str(duckdb_problem(invalid))
    directory = 'IO Error: Could not read from file "/w/dir": Is a directory'
    assert "cannot be read (Is a directory)" in str(duckdb_problem(directory, opening=True))
    assert duckdb_problem(directory) is None, "while loading, a file is not the database"
    assert duckdb_problem("Catalog Error: Table with name x does not exist!") is None


def test_a_lock_taken_after_the_preflight_is_named_once_and_nothing_said_loaded(
    toy_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_toy("--count", "2") == EXIT_OK
    capsys.readouterr()
    # Taken between the preflight and the first use of the file.
    monkeypatch.setattr(runner_module, "check_destination", lambda pipeline: None)
    db = toy_dir / "toy_numbers.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        views: list[int] = []
        assert run_toy("--count", "2", after_load=views.append) == EXIT_FAILED
    finally:
        holder.kill()
        holder.wait()
    captured = capsys.readouterr()
    out = captured.out
    assert f"is locked by another process (PID {holder.pid}" in out
    assert out.count("locked by another process") == 1
    assert "data loaded" not in out and "configured the credentials" not in out
    assert out.splitlines()[0].startswith("Nothing loaded into duckdb dataset 'toy'")
    assert views == [], "no after-load step on a destination that cannot be opened"
