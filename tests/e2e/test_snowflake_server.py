"""The production dependency set loading over HTTP into a Snowflake emulator.

The lock venv is built the way the Kestra flow builds /opt/venv (pipelines/chess-kestra-dlt.yml:
`uv venv`, then `uv pip install --require-hashes --no-deps -r requirements.lock`), so the client
is the real snowflake-connector-python 5.x, unpatched. It reaches fakesnow's server mode
(tests/snowflake_emulator/serve.py, in the emulator lane) through one setting the test adds,
DESTINATION__SNOWFLAKE__CREDENTIALS__QUERY (connector host/port/protocol), and logs in with an
encrypted private key, as the flow does; the server accepts only that key's JWT.
Recipe and caveats: /work/notes/snowflake-server.md (copied into the README by the lead).
"""

from __future__ import annotations

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

pytestmark = pytest.mark.e2e

UV = ROOT / ".venv-tools" / "bin" / "uv"
LOCK = ROOT / "pipelines" / "dlt" / "requirements.lock"
SERVE = ROOT / "tests" / "snowflake_emulator" / "serve.py"
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
def key_pair(tmp_path_factory: pytest.TempPathFactory, lock_python: Path) -> dict[str, str]:
    """An encrypted private key (PEM, as the flow's secret) and its public key."""
    made = subprocess.run(
        [str(lock_python), "-c", (
            "import json, sys\n"
            "from cryptography.hazmat.primitives import serialization as s\n"
            "from cryptography.hazmat.primitives.asymmetric import rsa\n"
            "key = rsa.generate_private_key(public_exponent=65537, key_size=2048)\n"
            "private = key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8,\n"
            "    s.BestAvailableEncryption(sys.argv[1].encode())).decode()\n"
            "public = key.public_key().public_bytes(s.Encoding.PEM,\n"
            "    s.PublicFormat.SubjectPublicKeyInfo).decode()\n"
            "print(json.dumps({'private': private, 'public': public}))\n"
        ), PASSPHRASE],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(made.stdout)


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
        return {**connect, "account": "emulated-account", "user": "LOADER"}

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
    public_key = tmp_path / "loader.pub.pem"
    public_key.write_text(key_pair["public"])
    with (db_dir / "server.log").open("w") as log:
        process = subprocess.Popen(
            [str(LANE_PYTHON), str(SERVE), str(db_dir), "--public-key", str(public_key)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={
                **os.environ,
                "PYTHONWARNINGS": "ignore",
                # shim.py logs each session QUERY_TAG here: what QUERY_HISTORY would show.
                "FAKESNOW_QUERY_TAG_LOG": str(db_dir / "query_tags.log"),
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
        self, private_key: str, data_dir: str, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        env = self.pipeline.env(
            DLT_DATA_DIR=str(self.pipeline.workdir / data_dir),
            DESTINATION__SNOWFLAKE__CREDENTIALS__DATABASE="ANALYTICS",
            DESTINATION__SNOWFLAKE__CREDENTIALS__HOST="emulated-account",
            DESTINATION__SNOWFLAKE__CREDENTIALS__USERNAME="LOADER",
            DESTINATION__SNOWFLAKE__CREDENTIALS__PRIVATE_KEY=private_key,
            DESTINATION__SNOWFLAKE__CREDENTIALS__PRIVATE_KEY_PASSPHRASE=PASSPHRASE,
            DESTINATION__SNOWFLAKE__CREDENTIALS__WAREHOUSE="LOADING_WH",
            DESTINATION__SNOWFLAKE__CREDENTIALS__ROLE="CHESS_LOADER",
            PYTHONWARNINGS="ignore",
            **self.server.env,  # the only thing the twin adds: where the account is
            **extra,
        )
        return subprocess.run(
            [str(self.python), str(SCRIPT), "--destination", "snowflake"],
            cwd=self.pipeline.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def query(self, sql: str, private_key: str) -> list[dict[str, Any]]:
        settings = {
            **self.server.connect_settings(),
            "database": "ANALYTICS",
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
    # The files went up by HTTP PUT into the server's stage, under its db dir, not /tmp.
    staged = list((server.db_dir / "tmp").glob("fakesnow_bucket_*/ANALYTICS/*/*/*/*.parquet"))
    assert {p.parts[-3] for p in staged} >= {"%PLAYERS_GAMES", "%PLAYERS_PROFILES"}

    # A new pod has no local pipeline state: dlt restores it from the account (the state row
    # went up as JSON and was copied by column name), so nothing final is downloaded again.
    api.stats.reset()
    second = warehouse.run(key, "dlt-second")
    assert second.returncode == 0, second.stdout + second.stderr + server.stop()
    assert api.stats.counts()[("games", 200)] == 0, api.stats.paths(200)
    again = [r["uuid"] for r in warehouse.query("select uuid from chess.players_games", key)]
    assert sorted(again) == sorted(loaded)
    loads = warehouse.query("select status from chess._dlt_loads", key)
    assert loads == [{"status": 0}, {"status": 0}]

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
    assert "cannot connect to Snowflake" in run.stderr
    assert "BEGIN ENCRYPTED PRIVATE KEY" not in run.stdout + run.stderr
    assert "login rejected: JWT not valid for the registered public key" in server.stop()
