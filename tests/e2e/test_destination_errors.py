"""Destination problems stop the script before any request, naming the setting, never its value."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from tests.e2e.conftest import Pipeline, Run
from tests.fake_chesscom import FakeChessCom

pytestmark = pytest.mark.e2e

CREDENTIALS = "DESTINATION__SNOWFLAKE__CREDENTIALS__"


def run_snowflake(pipeline: Pipeline, **credentials: str) -> tuple[int, str, str]:
    env = {CREDENTIALS + key.upper(): value for key, value in credentials.items()}
    run = pipeline.run("--destination", "snowflake", **env)
    return run.returncode, run.stderr, run.output


@pytest.mark.parametrize(
    ("credentials", "secret", "names"),
    [
        # Incomplete: names every setting to set and the local alternative.
        (
            {"username": "loader", "password": "hunter2-do-not-print"},
            "hunter2-do-not-print",
            [CREDENTIALS + "HOST", CREDENTIALS + "DATABASE", "--destination duckdb"],
        ),
        # A private key that is neither PEM nor base64 of PEM/DER.
        (
            {
                "database": "ANALYTICS",
                "host": "myorg-myaccount",
                "username": "LOADER",
                "private_key": "not-a-key-but-a-secret-value",
            },
            "not-a-key-but-a-secret-value",
            [CREDENTIALS + "PRIVATE_KEY"],
        ),
        # An account that does not exist (or cannot be reached).
        (
            {
                "database": "ANALYTICS",
                "host": "no-such-org-no-such-account",
                "username": "LOADER",
                "password": "pw-do-not-print-7731",
                "query__login_timeout": "10",
            },
            "pw-do-not-print-7731",
            ["cannot connect to Snowflake", CREDENTIALS + "HOST"],
        ),
    ],
    ids=["incomplete", "malformed-key", "unknown-account"],
)
def test_destination_error_is_clear_and_early(
    pipeline: Pipeline,
    api: FakeChessCom,
    credentials: dict[str, str],
    secret: str,
    names: list[str],
) -> None:
    code, stderr, output = run_snowflake(pipeline, **credentials)
    assert code == 2, output
    for name in names:
        assert name in stderr
    assert secret not in output
    assert api.stats.paths() == [], "no request to Chess.com before the destination is usable"


# -- the DuckDB file (issue 19 item 7a) ---------------------------------------------------------
# On main, each was "check if you configured the credentials" from dlt, then "data loaded, but
# the after-load step failed" though nothing was loaded.


def assert_said_once(run: Run, what: str, api: FakeChessCom) -> None:
    assert what in run.stderr, run.output
    assert run.output.count(what) == 1, run.output
    for wrong in ("configured the credentials", "data loaded", "players loaded"):
        assert wrong not in run.output, run.output
    assert api.stats.paths() == [], "no request to Chess.com before the destination is usable"


def test_a_duckdb_file_locked_by_another_process_names_it_exit_3(
    pipeline: Pipeline, api: FakeChessCom
) -> None:
    assert pipeline.run().returncode == 0
    api.stats.reset()
    with duckdb.connect(str(pipeline.db_path)):  # held by this process, as a notebook would
        run = pipeline.run()
    assert run.returncode == 3, run.output
    assert_said_once(run, f"DuckDB file '{pipeline.db_path}' is locked by another process", api)
    assert f"(PID {os.getpid()}, " in run.stderr
    assert pipeline.run().returncode == 0, "released, the next run loads"


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (lambda p: p.write_text("not a database\n" * 100), "exists but is not a DuckDB database"),
        (lambda p: p.mkdir(), "cannot be read (Is a directory)"),
    ],
    ids=["not-duckdb", "directory"],
)
def test_a_duckdb_path_that_is_not_a_duckdb_file_says_so_exit_2(
    pipeline: Pipeline, api: FakeChessCom, make: Callable[[Path], object], what: str
) -> None:
    target = pipeline.workdir / "elsewhere.duckdb"
    make(target)
    run = pipeline.run(DESTINATION__DUCKDB__CREDENTIALS=str(target))
    assert run.returncode == 2, run.output
    assert_said_once(run, what, api)
    assert "DESTINATION__DUCKDB__CREDENTIALS" in run.stderr


def test_an_unreadable_duckdb_file_says_so_exit_2(pipeline: Pipeline, api: FakeChessCom) -> None:
    assert pipeline.run().returncode == 0
    api.stats.reset()
    if os.geteuid() == 0:
        # Root opens any file it owns; sysfs refuses even root a read-write open, so
        # DuckDB says "Permission denied" as it does to a user for a file mode 000.
        run = pipeline.run(DESTINATION__DUCKDB__CREDENTIALS="/sys/kernel/notes")
    else:
        pipeline.db_path.chmod(0)
        try:
            run = pipeline.run()
        finally:
            pipeline.db_path.chmod(0o644)
    assert run.returncode == 2, run.output
    assert_said_once(run, "cannot be read (Permission denied)", api)
