"""Every flow's tasks, executed from what Flux deploys, the way Kestra runs them.

The chain (tests/kestra/twin.py): kustomize of the apps path -> the sync Job as the kubelet
mounts it -> the stand-in Kestra store -> each task's namespace files picked with Kestra's
matching -> env rendered (inputs, trigger inputs, defaults, `??`, vars, secrets read as
SecretService does) -> `/bin/sh -c "set -e; beforeCommands; commands"` in a fresh working
directory. The container's network is the project's fake Chess.com API and fakesnow's
server (tests/snowflake_emulator/serve.py) reached by the production connector
installed from requirements.lock with its hashes, as the flow installs it.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.fake_chesscom import FakeChessCom, World, recent_months
from tests.kestra import twin
from tests.snowflake_emulator import keys as emulated_account

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.geteuid() != 0 and not os.environ.get("CI"),
        reason="needs root to lay out volumes with the kubelet's owners",
    ),
]

EMULATOR_PYTHON = ROOT / ".venv-snowflake" / "bin" / "python"
SERVE = ROOT / "tests" / "snowflake_emulator" / "serve.py"
CHESS_FLOW = "chess-kestra-dlt"
APPS = ROOT / "k8s" / "apps" / "production"


def required(path: Path, what: str) -> Path:
    if path.exists():
        return path
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing under CI ({path}): run `make install`")
    pytest.skip(f"{what} not installed: run `make install`")


@pytest.fixture(scope="module")
def module_tmp() -> Iterator[Path]:
    with twin.traversable_tmp("kestra-exec-") as path:
        yield path


@pytest.fixture(scope="module")
def deployed(flux_objects: list[dict[str, Any]], module_tmp: Path) -> twin.KestraStore:
    # Credentials Kestra accepts (the committed ones are placeholders it refuses).
    objects = twin.with_credentials(flux_objects, *twin.TEST_CREDENTIALS)
    sync = twin.run_sync(objects, module_tmp / "sync")
    assert sync.ok, sync.error
    return sync.store


@pytest.fixture
def snowflake_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def test_secrets(snowflake_key: Any) -> dict[str, str]:
    """Plain values for every key of the kestra-secrets manifest (names from the manifest:
    validate_flows.deployed_secret_names, so a new secret needs no edit here)."""
    from cryptography.hazmat.primitives import serialization

    pem = snowflake_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"twin-passphrase"),
    ).decode()
    # Real values where a run needs them (the emulator's account, user and key; a contact the
    # fake API accepts); every other key of the manifest gets a generated plain value.
    return twin.secret_values(
        {
            "SNOWFLAKE_HOST": "twin-account",
            "SNOWFLAKE_USERNAME": emulated_account.USER,
            "SNOWFLAKE_PRIVATE_KEY": pem,
            "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": "twin-passphrase",
            "CHESSCOM_CONTACT": "twin@example.com",
        }
    )


@pytest.fixture
def snowflake(shared_tmp: Path, snowflake_key: Any) -> Iterator[dict[str, str]]:
    """fakesnow's server (emulator lane) on an account set up by the project's bootstrap
    (pipelines/dlt/snowflake/bootstrap.sql with the test key, run as an administrator:
    tests/snowflake_emulator/run_on_fakesnow.py --admin), so only the bootstrap's user
    signing with the test key logs in; yields the env that points a client at it: part of
    the container's "network"."""
    from cryptography.hazmat.primitives import serialization

    python = required(EMULATOR_PYTHON, "the Snowflake emulator lane")
    db_dir = shared_tmp / "snowflake"
    db_dir.mkdir()
    public_pem = (
        snowflake_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    bootstrap = shared_tmp / "bootstrap.sql"
    bootstrap.write_text(emulated_account.bootstrap_sql(public_pem))
    admin = subprocess.run(
        [
            str(python),
            str(SERVE.with_name("run_on_fakesnow.py")),
            str(db_dir),
            "--admin",
            str(bootstrap),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert admin.returncode == 0, admin.stdout + admin.stderr
    server = subprocess.Popen(
        [str(python), str(SERVE), str(db_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline() if server.stdout else ""
        if not line:
            error = server.stderr.read() if server.stderr else ""
            pytest.fail(f"fakesnow server did not start: {error}")
        yield json.loads(line)["env"]
    finally:
        server.terminate()
        server.wait(timeout=60)


TaskRun = twin.TaskRun
run_task = twin.run_task


def namespace_of(flow: dict[str, Any]) -> str:
    return flow["namespace"]


def query(run: TaskRun, sql: str) -> list[tuple]:
    """Read back through the same connector, from the task's own venv and env."""
    code = """
import json, sys, dlt
pipeline = dlt.pipeline("twin_query", destination="snowflake", dataset_name="chess")
with pipeline.sql_client() as client:
    print(json.dumps([list(r) for r in client.execute_sql(sys.argv[1])], default=str))
"""
    # The task's own env: the credentials it rendered, the network it had.
    env = {**run.env, "DLT_DATA_DIR": str(run.workdir.parent / "query-dlt-data")}
    out = subprocess.run(
        [str(run.venv / "bin" / "python"), "-c", code, sql],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return [tuple(r) for r in json.loads(out.stdout.strip().splitlines()[-1])]


def chess_flow(store: twin.KestraStore) -> dict[str, Any]:
    return twin.deployed_flow(store, CHESS_FLOW)


def configured_players(store: twin.KestraStore, flow: dict[str, Any]) -> list[str]:
    config = store.files(namespace_of(flow))["/.dlt/config.toml"]
    return tomllib.loads(config.decode())["sources"]["chess"]["players"]


@pytest.fixture
def chess_api(deployed: twin.KestraStore) -> Iterator[tuple[FakeChessCom, World]]:
    world = World(seed=5)
    flow = chess_flow(deployed)
    world.populate(
        [*configured_players(deployed, flow), "alice", "bob"], months=3, games_per_month=6
    )
    with FakeChessCom(world, max_in_flight=3) as api:
        yield api, world


def network(api: FakeChessCom, snowflake_env: dict[str, str]) -> dict[str, str]:
    return {
        "SOURCES__CHESS__BASE_URL": api.base_url,
        "RUNTIME__REQUEST_BACKOFF_FACTOR": "0.05",
        **snowflake_env,
    }


def kestra_secrets(flux_objects: list[dict[str, Any]], values: dict[str, str]) -> dict[str, str]:
    return twin.kestra_secrets(twin.server_env_from(flux_objects, values))


def scheduled(flow: dict[str, Any], secrets: dict[str, str]) -> twin.Execution:
    """What the flow's Schedule trigger starts (its inputs, then the inputs' defaults)."""
    (trigger,) = [t for t in flow["triggers"] if t["type"].endswith(".Schedule")]
    return twin.Execution.scheduled(flow, trigger["id"], secrets)


def loaded_uuids(run: TaskRun) -> list[str]:
    return sorted(r[0] for r in query(run, "select uuid from chess.players_games"))


def test_scheduled_run_loads_the_configured_players(
    flux_objects, deployed, chess_api, snowflake, test_secrets, shared_tmp
) -> None:
    api, world = chess_api
    flow = chess_flow(deployed)
    execution = scheduled(flow, kestra_secrets(flux_objects, test_secrets))
    run = run_task(execution, deployed, "load", shared_tmp / "run", network(api, snowflake))
    assert run.result.returncode == 0, run.output
    players = configured_players(deployed, flow)
    assert f"players loaded: {len(players)}" in run.output
    served = {g["uuid"] for p in players for g in world.games_in(p)}
    assert loaded_uuids(run) == sorted(served)


CHECK_GAMES = ROOT / "tools" / "e2e" / "check_games.py"


def e2e_games_check(
    api: FakeChessCom, snowflake_env: dict[str, str], secrets: dict[str, str], root: Path
) -> subprocess.CompletedProcess[str]:
    """tools/e2e/check_games.py as the e2e job runs it, pointed at this run's services."""
    values = root / "values"
    values.mkdir(parents=True)
    for key, value in secrets.items():
        (values / key).write_text(value)
    port = json.loads(snowflake_env["DESTINATION__SNOWFLAKE__CREDENTIALS__QUERY"])["port"]
    return subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "python"),
            str(CHECK_GAMES),
            api.base_url,
            str(port),
            str(values),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_e2e_games_check_agrees_with_a_scheduled_run(
    flux_objects, deployed, chess_api, snowflake, test_secrets, shared_tmp
) -> None:
    """What the e2e workflow concludes from a SUCCESS: every served game landed, once; and
    it fails when the API serves a game the run did not load."""
    api, world = chess_api
    flow = chess_flow(deployed)
    execution = scheduled(flow, kestra_secrets(flux_objects, test_secrets))
    run = run_task(execution, deployed, "load", shared_tmp / "run", network(api, snowflake))
    assert run.result.returncode == 0, run.output
    ok = e2e_games_check(api, snowflake, test_secrets, shared_tmp / "ok")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    players = configured_players(deployed, flow)
    assert f"games of {len(players)} players in Snowflake, as served" in ok.stdout
    world.add_games(players[0], recent_months(1)[0], 1)
    late = e2e_games_check(api, snowflake, test_secrets, shared_tmp / "late")
    assert late.returncode == 1
    assert "1 served game(s) not in Snowflake" in late.stderr
    assert test_secrets["SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"] not in ok.stdout + late.stderr


def test_manual_run_with_players_months_and_full_refresh(
    flux_objects, deployed, chess_api, snowflake, test_secrets, shared_tmp
) -> None:
    api, world = chess_api
    flow = chess_flow(deployed)
    secrets = kestra_secrets(flux_objects, test_secrets)
    month = recent_months(2)[0]
    given = {"players": "alice,bob", "start_month": month, "end_month": month, "full_refresh": True}
    execution = twin.Execution.manual(flow, given, secrets)
    run = run_task(execution, deployed, "load", shared_tmp / "run", network(api, snowflake))
    assert run.result.returncode == 0, run.output
    assert "players loaded: 2 (alice, bob)" in run.output
    served = {g["uuid"] for p in ("alice", "bob") for g in world.games_in(p, [month])}
    assert loaded_uuids(run) == sorted(served)


def test_missing_secret_fails_before_the_task_starts(flux_objects, deployed, test_secrets) -> None:
    flow = chess_flow(deployed)
    server_env = twin.server_env_from(flux_objects, test_secrets)
    server_env["SECRET_SNOWFLAKE_PRIVATE_KEY"] = "not base64 at all!"  # Kestra skips it
    execution = twin.Execution.manual(flow, {}, twin.kestra_secrets(server_env))
    with pytest.raises(
        twin.RenderError, match=r"Cannot find secret for key 'SNOWFLAKE_PRIVATE_KEY'"
    ):
        execution.task_env("load")


def test_the_old_include_pattern_leaves_the_scheduled_run_without_players(
    flux_objects, deployed, chess_api, snowflake, test_secrets, shared_tmp
) -> None:
    """The include that shipped before: `.dlt/config.toml` matches nothing in Kestra."""
    api, _ = chess_api
    flow = copy.deepcopy(chess_flow(deployed))
    include = flow["tasks"][0]["namespaceFiles"]["include"]
    include[include.index("/.dlt/config.toml")] = ".dlt/config.toml"
    execution = scheduled(flow, kestra_secrets(flux_objects, test_secrets))
    run = run_task(execution, deployed, "load", shared_tmp / "run", network(api, snowflake))
    assert run.result.returncode == 2, run.output
    assert "players" in run.result.stderr
    assert not (run.workdir / ".dlt" / "config.toml").exists()


# --- every deployed flow's python tasks (issue 20) ------------------------------------------


def flow_tasks() -> list[Any]:
    """(flow id, task id) of every python Commands task of every flow Flux deploys (the flows
    ConfigMap of the rendered apps path, not a hand list); a flow without one (the alerting
    flow) has no case."""
    try:
        flows = twin.rendered_flows(twin.kustomize(APPS))
    except RuntimeError as exc:
        if os.environ.get("CI"):
            raise  # kubectl missing under CI: fail, never skip
        return [pytest.param(None, None, marks=pytest.mark.skip(reason=str(exc)))]
    return [
        pytest.param(flow_id, task, id=f"{flow_id}.{task}")
        for flow_id, flow in sorted(flows.items())
        for task in twin.python_tasks(flow)
    ]


FLOW_TASKS = flow_tasks()


def test_the_deployed_pipeline_flows_have_cases() -> None:
    assert any(param.values == ("chess-kestra-dlt", "load") for param in FLOW_TASKS), FLOW_TASKS


@pytest.mark.parametrize(("flow_id", "task_id"), FLOW_TASKS)
def test_every_python_task_starts_from_its_own_namespace_files(
    flux_objects, deployed, test_secrets, shared_tmp, flow_id, task_id
) -> None:
    """The task as Kestra runs it (only the files its include picks, its env, its
    beforeCommands) with `--help` appended: a module its include misses fails here with
    ModuleNotFoundError, as it would in Kestra."""
    flow = twin.with_script_args(twin.deployed_flow(deployed, flow_id), task_id, "--help")
    execution = twin.started(flow, kestra_secrets(flux_objects, test_secrets))
    run = run_task(execution, deployed, task_id, shared_tmp / "run", {})
    assert run.result.returncode == 0, run.output
    assert "usage:" in run.result.stdout


@pytest.mark.parametrize(("flow_id", "task_id"), FLOW_TASKS)
def test_every_python_task_with_a_fake_api_loads_into_duckdb(
    flux_objects, deployed, test_secrets, shared_tmp, flow_id, task_id
) -> None:
    """A short real load, on DuckDB, against the pipeline's own fake API
    (`tests/<package>/fake_api.py`: `twin_env()`, see twin.FAKE_API)."""
    flow = twin.deployed_flow(deployed, flow_id)
    fake = twin.fake_api(flow, task_id)
    if fake is None:
        pytest.skip(f"no {twin.FAKE_API} for {twin.script_packages(flow, task_id)}")
    flow = twin.with_script_args(flow, task_id, "--destination", "duckdb")
    execution = twin.started(flow, kestra_secrets(flux_objects, test_secrets))
    with fake as network:
        run = run_task(execution, deployed, task_id, shared_tmp / "run", network)
    assert run.result.returncode == 0, run.output
    rows = twin.duckdb_rows(run)
    assert rows and sum(rows.values()) > 0, rows
