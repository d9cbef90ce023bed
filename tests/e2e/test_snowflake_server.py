"""The production dependency set loading over HTTP into a Snowflake emulator.

The lock venv is built the way the Kestra flow builds /opt/venv (pipelines/chess-kestra-dlt.yml:
`uv venv`, then `uv pip install --require-hashes --no-deps -r requirements.lock`), so the client
is the real snowflake-connector-python 5.x, unpatched. It reaches fakesnow's server mode
(tests/snowflake_emulator/serve.py, in the emulator lane) through one setting the test adds,
DESTINATION__SNOWFLAKE__CREDENTIALS__QUERY (connector host/port/protocol), and logs in with an
encrypted private key, as the flow does. The account is set up first by the project's
bootstrap (pipelines/dlt/snowflake/bootstrap.sql, run as an administrator): the server then
accepts only the service user's JWT signed with the key the bootstrap registered, and applies
the bootstrap's role and grants (tests/snowflake_emulator/account.py).
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, SCRIPT
from tests.e2e.conftest import Pipeline
from tests.fake_chesscom import FakeChessCom, World, recent_months
from tests.kestra import twin
from tests.snowflake_emulator.keys import (
    DATABASE,
    FORMS,
    ROLE,
    USER,
    WAREHOUSE,
    KeyPair,
    bootstrap_sql,
)  # fmt: skip

pytestmark = pytest.mark.e2e

UV = ROOT / ".venv-tools" / "bin" / "uv"
LOCK = ROOT / "pipelines" / "dlt" / "requirements.lock"
SERVE = ROOT / "tests" / "snowflake_emulator" / "serve.py"
RUN_ON_FAKESNOW = ROOT / "tests" / "snowflake_emulator" / "run_on_fakesnow.py"
CREDENTIALS = "DESTINATION__SNOWFLAKE__CREDENTIALS__"
# The emulator lane runs the server; FAKESNOW_SERVER_PYTHON points at another interpreter with
# the same lane installed (e.g. while the lane's lock is being updated).
LANE_PYTHON = Path(
    os.environ.get("FAKESNOW_SERVER_PYTHON") or ROOT / ".venv-snowflake" / "bin" / "python"
)
PASSPHRASE = "emulator-passphrase"
EXECUTION_ID = "4Hq9ZsVbT2mLx7Kd"
QUERY_SCRIPT = """
import json, sys
from datetime import date, datetime
from decimal import Decimal
import snowflake.connector
settings, sql = json.loads(sys.argv[1]), sys.argv[2]
def plain(v):
    return v.isoformat() if isinstance(v, (date, datetime)) else (
        float(v) if isinstance(v, Decimal) else v)
with snowflake.connector.connect(**settings) as conn:
    cur = conn.cursor()
    cur.execute(sql)
    names = [c[0].lower() for c in cur.description]
    print(json.dumps([dict(zip(names, map(plain, row))) for row in cur.fetchall()]))
"""


def unavailable(reason: str) -> None:
    """Missing tooling fails under CI (the project must install it) and skips elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def locked_version(package: str) -> str:
    match = re.search(rf"^{re.escape(package)}==(\S+)", LOCK.read_text(), re.M)
    assert match, f"{package} is not pinned in {LOCK}"
    return match.group(1)


@pytest.fixture(scope="session")
def lock_python() -> Iterator[Path]:
    """A venv built from requirements.lock exactly as the flow builds /opt/venv."""
    if not UV.exists():
        unavailable(f"{UV} is missing: run `make install`")
    with tempfile.TemporaryDirectory(prefix="lockvenv-") as tmp:
        venv = Path(tmp) / "venv"
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
        steps = (
            [str(UV), "venv", "--quiet", str(venv), "--python", sys.executable],
            [str(UV), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
             "--require-hashes", "--no-deps", "-r", str(LOCK)],
        )  # fmt: skip
        for step in steps:
            built = subprocess.run(step, env=env, capture_output=True, text=True, timeout=600)
            if built.returncode != 0:
                unavailable(f"cannot build the lock venv ({step[1:3]}): {built.stderr[-2000:]}")
        yield venv / "bin" / "python"


@pytest.fixture(scope="session")
def keys() -> KeyPair:
    return KeyPair.generate()


@pytest.fixture(scope="session")
def key_pair(keys: KeyPair) -> dict[str, str]:
    """An encrypted private key (PEM, as the flow's secret) and its public key."""
    private = keys.encode("PEM", "PKCS8", PASSPHRASE).decode()
    return {"private": private, "public": keys.public_pem}


@dataclass
class EmulatorServer:
    """serve.py running in the lane; `info` is the JSON line it printed."""

    process: subprocess.Popen[str]
    db_dir: Path
    info: dict[str, Any]

    @property
    def env(self) -> dict[str, str]:
        return self.info["env"]

    def connect_settings(self) -> dict[str, Any]:
        connect = json.loads(self.env["DESTINATION__SNOWFLAKE__CREDENTIALS__QUERY"])
        return {**connect, "account": "emulated-account", "user": USER}

    def stop(self) -> str:
        """SIGTERM (what a twin or a pod gets), then the server's stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return (self.db_dir / "server.log").read_text()


@pytest.fixture
def server(tmp_path: Path, key_pair: dict[str, str]) -> Iterator[EmulatorServer]:
    if not LANE_PYTHON.exists():
        unavailable(f"the Snowflake emulator lane is missing ({LANE_PYTHON}): run `make install`")
    db_dir = tmp_path / "snowflake"
    db_dir.mkdir()
    # The account as the project's bootstrap sets it up, registering the test's public key.
    bootstrap = tmp_path / "bootstrap.sql"
    bootstrap.write_text(bootstrap_sql(key_pair["public"]))
    admin = subprocess.run(
        [str(LANE_PYTHON), str(RUN_ON_FAKESNOW), str(db_dir), "--admin", str(bootstrap)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert admin.returncode == 0, admin.stdout + admin.stderr
    with (db_dir / "server.log").open("w") as log:
        process = subprocess.Popen(
            [str(LANE_PYTHON), str(SERVE), str(db_dir)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={
                **os.environ,
                "PYTHONWARNINGS": "ignore",
                # shim.py logs each session QUERY_TAG here: what QUERY_HISTORY would show,
                # and every statement received, as sent.
                "FAKESNOW_QUERY_TAG_LOG": str(db_dir / "query_tags.log"),
                "FAKESNOW_SQL_LOG": str(db_dir / "sql.log"),
            },
        )
    deadline = time.monotonic() + 60
    line = ""
    while not line and time.monotonic() < deadline and process.poll() is None:
        if select.select([process.stdout], [], [], 0.2)[0]:
            line = process.stdout.readline()  # type: ignore[union-attr]
    emulator = EmulatorServer(process, db_dir, json.loads(line) if line else {})
    try:
        if not line:
            log = emulator.stop()
            if "ModuleNotFoundError" in log:
                unavailable(
                    "the emulator lane lacks fakesnow's server extra (uvicorn, starlette): "
                    "tests/snowflake_emulator/pyproject.toml needs fakesnow[server]\n" + log[-500:]
                )
            pytest.fail(f"serve.py printed no settings:\n{log}")
        yield emulator
    finally:
        emulator.stop()


class Warehouse:
    """The lock venv's script and queries, talking to the server over HTTP."""

    def __init__(self, python: Path, server: EmulatorServer, pipeline: Pipeline) -> None:
        self.python = python
        self.server = server
        self.pipeline = pipeline

    def run(
        self, private_key: str | None, data_dir: str, *args: str, **extra: str | None
    ) -> subprocess.CompletedProcess[str]:
        settings: dict[str, str | None] = {
            "DLT_DATA_DIR": str(self.pipeline.workdir / data_dir),
            CREDENTIALS + "DATABASE": DATABASE,
            CREDENTIALS + "HOST": "emulated-account",
            CREDENTIALS + "USERNAME": USER,
            CREDENTIALS + "PRIVATE_KEY": private_key,
            CREDENTIALS + "PRIVATE_KEY_PASSPHRASE": PASSPHRASE,
            CREDENTIALS + "WAREHOUSE": WAREHOUSE,
            CREDENTIALS + "ROLE": ROLE,
            "PYTHONWARNINGS": "ignore",
            **self.server.env,  # the only thing the twin adds: where the account is
        }
        env = self.pipeline.env(**{**settings, **extra})
        return subprocess.run(
            [str(self.python), str(SCRIPT), "--destination", "snowflake", *args],
            cwd=self.pipeline.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def query(self, sql: str, private_key: str) -> list[dict[str, Any]]:
        settings = {
            **self.server.connect_settings(),
            "database": DATABASE,
            "schema": "CHESS",
            "private_key": private_key,
            "private_key_password": PASSPHRASE,
        }
        out = subprocess.run(
            [str(self.python), "-c", QUERY_SCRIPT, json.dumps(settings), sql],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def warehouse(lock_python: Path, server: EmulatorServer, pipeline: Pipeline) -> Warehouse:
    return Warehouse(lock_python, server, pipeline)


def test_lock_venv_holds_the_production_connector(lock_python: Path) -> None:
    # The client under test is the locked 5.x connector with its Rust core, not the lane's <5.
    version = subprocess.run(
        [str(lock_python), "-c", "import snowflake.connector as c; print(c.__version__)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert version == locked_version("snowflake-connector-python")
    assert int(version.split(".")[0]) >= 5


def test_script_loads_over_http_and_a_fresh_run_resumes_from_the_account(
    warehouse: Warehouse,
    server: EmulatorServer,
    api: FakeChessCom,
    world: World,
    key_pair: dict[str, str],
) -> None:
    key = key_pair["private"]
    first = warehouse.run(key, "dlt-first", KESTRA_EXECUTION_ID=EXECUTION_ID)
    # Exit 0 also means the views after the load were created (the script fails otherwise).
    assert first.returncode == 0, first.stdout + first.stderr + server.stop()
    assert "Loaded into snowflake dataset 'chess'" in first.stdout

    loaded = [r["uuid"] for r in warehouse.query("select uuid from chess.players_games", key)]
    assert sorted(loaded) == sorted(world.all_games())
    columns = {
        r["column_name"]: r["data_type"]
        for r in warehouse.query(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'CHESS' and table_name = 'PLAYERS_GAMES'",
            key,
        )
    }
    assert columns["END_TIME"] == "TIMESTAMP_TZ"
    assert columns["RATED"] == "BOOLEAN"
    # The session query tags reached the account: a DBA finds the loads by Kestra execution.
    tags = [json.loads(t) for t in (server.db_dir / "query_tags.log").read_text().splitlines()]
    assert tags and all(t["kestra_execution_id"] == EXECUTION_ID for t in tags)
    assert {"players_games", "players_archives"} <= {t["table"] for t in tags}
    # The files went up by HTTP PUT into the server's stage, under its db dir, not /tmp, and
    # each was removed once copied (keep_staged_files=False): the stages are empty.
    uploaded = (server.db_dir / "stage_uploads.log").read_text().split()
    assert {Path(p).parts[-3] for p in uploaded} >= {"%PLAYERS_GAMES", "%PLAYERS_PROFILES"}
    bucket = server.db_dir / "tmp"
    assert [p for p in bucket.glob("fakesnow_bucket_*/**/*") if p.is_file()] == []
    sent = [
        json.loads(line)["sql"] for line in (server.db_dir / "sql.log").read_text().splitlines()
    ]
    assert len([s for s in sent if s.startswith("REMOVE ")]) == len(uploaded)
    # The DDL the production client sent: TIMESTAMP_TZ for every timestamp (fakesnow would
    # report TIMESTAMP_TZ whatever the DDL said), a dataset created by dlt.
    ddl = [s for s in sent if s.startswith(("CREATE TABLE", "ALTER TABLE"))]
    assert {t for d in ddl for t in re.findall(r"\b(TIMESTAMP\w*)", d)} == {"TIMESTAMP_TZ"}
    assert 'CREATE SCHEMA "CHESS"' in sent

    # A new pod has no local pipeline state: dlt restores it from the account (the state row
    # went up as JSON and was copied by column name), so nothing final is downloaded again.
    api.stats.reset()
    second = warehouse.run(key, "dlt-second")
    assert second.returncode == 0, second.stdout + second.stderr + server.stop()
    assert api.stats.counts()[("games", 200)] == 0, api.stats.paths(200)
    again = [r["uuid"] for r in warehouse.query("select uuid from chess.players_games", key)]
    assert sorted(again) == sorted(loaded)
    # Every load of both runs completed (the run history, pipeline_runner/history.py, adds
    # loads of its own schema and of the pipeline state).
    loads = warehouse.query("select status from chess._dlt_loads where schema_name = 'chess'", key)
    assert len(loads) >= 2 and {r["status"] for r in loads} == {0}

    # New games in the current month: merged on uuid (dlt's delete-insert from the staging
    # dataset, a multi-statement transaction), nothing duplicated.
    current = recent_months(1)[0]
    new = {g["uuid"] for g in world.add_games("Alice", current, 3, opponent="Bob_B")}
    third = warehouse.run(key, "dlt-second")
    assert third.returncode == 0, third.stdout + third.stderr + server.stop()
    merged = [r["uuid"] for r in warehouse.query("select uuid from chess.players_games", key)]
    assert sorted(merged) == sorted({*loaded, *new})


def test_a_key_the_account_does_not_know_is_refused(
    warehouse: Warehouse, lock_python: Path, server: EmulatorServer
) -> None:
    other = subprocess.run(
        [str(lock_python), "-c", (
            "import sys\n"
            "from cryptography.hazmat.primitives import serialization as s\n"
            "from cryptography.hazmat.primitives.asymmetric import rsa\n"
            "key = rsa.generate_private_key(public_exponent=65537, key_size=2048)\n"
            "print(key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8,\n"
            "    s.BestAvailableEncryption(sys.argv[1].encode())).decode())\n"
        ), PASSPHRASE],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    run = warehouse.run(other, "dlt-refused")
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Snowflake refused the key pair" in run.stderr
    assert "BEGIN ENCRYPTED PRIVATE KEY" not in run.stdout + run.stderr
    assert "login rejected: JWT not valid for the registered public key" in server.stop()


# PEM forms dlt 1.31 cannot read as they are (issue 23, item 4): the script hands each to dlt
# as base64 (pipeline_runner.destination.private_key_for_dlt). Every form is also checked,
# faster, in tests/unit/test_snowflake_destination.py.
@pytest.mark.parametrize(
    "form", ["rsa-traditional-encrypted", "literal-newlines", "base64-wrapped-pem"]
)
def test_key_forms_through_the_kestra_secret_log_in_over_http(
    warehouse: Warehouse, server: EmulatorServer, keys: KeyPair, form: str
) -> None:
    """The value goes where the flow reads it: the Kestra Secret (base64 once, as k8s/README.md
    says), SecretService's decoding (tests/kestra/twin.py), `{{ secret('SNOWFLAKE_PRIVATE_KEY')
    }}` in the task's env; the server accepts only a JWT signed by the registered key."""
    assert form in FORMS
    value, passphrase = keys.form(form)
    server_env = {
        "SECRET_SNOWFLAKE_PRIVATE_KEY": base64.b64encode(value.encode()).decode(),
        "SECRET_SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": base64.b64encode(passphrase.encode()).decode(),
    }
    secrets = twin.kestra_secrets(server_env)
    assert secrets["SNOWFLAKE_PRIVATE_KEY"] == value
    run = warehouse.run(
        secrets["SNOWFLAKE_PRIVATE_KEY"], f"dlt-{form}", "--players", "alice",
        "--start-month", recent_months(1)[0],
        **{CREDENTIALS + "PRIVATE_KEY_PASSPHRASE": secrets["SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"]},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr + server.stop()
    assert "login rejected" not in server.stop()


def test_the_production_client_sends_role_and_warehouse_the_preflight_checks(
    warehouse: Warehouse, server: EmulatorServer, api: FakeChessCom, key_pair: dict[str, str]
) -> None:
    """The 5.x connector's login names the warehouse: one the role cannot use is reported
    by the preflight (the user's DEFAULT_WAREHOUSE would otherwise pass), before any request."""
    run = warehouse.run(key_pair["private"], "dlt-wh", **{CREDENTIALS + "WAREHOUSE": "OTHER_WH"})
    assert run.returncode == 2, run.stdout + run.stderr
    assert "GRANT USAGE ON WAREHOUSE OTHER_WH TO ROLE CHESS_LOADER" in run.stderr
    assert api.stats.paths() == []


def test_a_password_login_is_refused_with_what_to_do(
    warehouse: Warehouse, server: EmulatorServer, api: FakeChessCom
) -> None:
    run = warehouse.run(
        None,  # type: ignore[arg-type]
        "dlt-password",
        **{CREDENTIALS + "PRIVATE_KEY_PASSPHRASE": None, CREDENTIALS + "PASSWORD": "pw-4471"},
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Snowflake refused the password login" in run.stderr
    assert "TYPE = SERVICE" in run.stderr and "pw-4471" not in run.stdout + run.stderr
    assert "login refused: 390100" in server.stop()
    assert api.stats.paths() == []
