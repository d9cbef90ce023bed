"""Destination problems stop the script before any request, naming the setting, never its value."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Pipeline
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
