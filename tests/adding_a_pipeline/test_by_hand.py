"""Adding a pipeline, as pipelines/README.md tells a newcomer, in a temp copy of the repo.

A toy second pipeline (its own package, script and flow, in its own namespace, on another
schedule) is new files under pipelines/ plus one regenerate command. Without that command
`make test` fails naming it; with it the flow validates, Flux's rendered apps path carries
the new files verbatim, the sync Job pushes them into the flow's own namespace, and the
script runs locally against the fake API.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import yaml

import new_pipeline
from tests.conftest import ROOT
from tests.fake_chesscom import FakeChessCom, World
from tests.kestra import twin
from tests.repo_copy import changed, copy_checkout, git, makefile_recipe, run

SOURCE = '''"""Chess.com player profiles, a toy pipeline: one resource, merged on player_id."""

from collections.abc import Iterator
from typing import Any

import dlt
from dlt.sources.helpers import requests


@dlt.source(name="profiles", section="profiles")
def profiles(
    players: list[str] = dlt.config.value,
    contact: str = dlt.config.value,
    base_url: str = "https://api.chess.com/pub",
) -> Any:
    @dlt.resource(primary_key="player_id", write_disposition="merge")
    def player_profiles() -> Iterator[dict[str, Any]]:
        headers = {"User-Agent": f"chess-profiles ({contact})"}
        for player in players:
            response = requests.get(f"{base_url}/player/{player.lower()}", headers=headers)
            response.raise_for_status()
            yield response.json()

    return player_profiles
'''

SCRIPT = '''#!/usr/bin/env python
"""Load Chess.com profiles: python pipelines/dlt/dlt-profiles.py --destination duckdb"""

import sys

from pipeline_runner import run_pipeline
from profiles import profiles


def add_arguments(args):
    args.option("--players", "comma-separated usernames")


def build_source(args):
    return profiles(players=args.players.split(",")) if args.players else profiles()


if __name__ == "__main__":
    sys.exit(
        run_pipeline(
            name="chess_profiles",
            env_prefix="PROFILES",
            dataset="profiles",
            build_source=build_source,
            add_arguments=add_arguments,
        )
    )
'''

FLOW = """id: chess-profiles
namespace: profiles.pipelines
description: Weekly Chess.com profiles of a few players (the pipeline-adding example).
labels:
  owner: data-platform
  system.readOnly: "true"
tasks:
  - id: load
    type: io.kestra.plugin.scripts.python.Commands
    containerImage: IMAGE
    namespaceFiles:
      enabled: true
      include:
        - dlt-profiles.py
        - requirements.lock
        - profiles/**
        - pipeline_runner/**
    beforeCommands:
      - uv venv --quiet /opt/venv
      - uv pip install --quiet --python /opt/venv/bin/python --require-hashes --no-deps -r requirements.lock
    commands:
      - /opt/venv/bin/python dlt-profiles.py --destination snowflake
    env:
      PROFILES_PLAYERS: hikaru,magnuscarlsen
      SOURCES__PROFILES__CONTACT: "{{ secret('CHESSCOM_CONTACT') }}"
    timeout: PT30M
triggers:
  - id: weekly
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "0 7 * * 1"
    timezone: UTC
""".replace("IMAGE", new_pipeline.container_image(ROOT))  # the pins, one copy

# The pipeline's fake API for the Kestra twin (tests/kestra/twin.py FAKE_API convention).
FAKE_API = '''"""The profiles pipeline's fake API: the twin's short load on DuckDB."""

from contextlib import contextmanager

from tests.fake_chesscom import FakeChessCom, World


@contextmanager
def twin_env():
    world = World(seed=3)
    world.populate(["hikaru", "magnuscarlsen"], months=1, games_per_month=1)
    with FakeChessCom(world) as api:
        yield {"SOURCES__PROFILES__BASE_URL": api.base_url}
'''

NEW_FILES = {
    "pipelines/dlt/profiles/__init__.py": SOURCE,
    "pipelines/dlt/dlt-profiles.py": SCRIPT,
    "pipelines/profiles.yml": FLOW,
    "tests/profiles/fake_api.py": FAKE_API,
}


@pytest.fixture(scope="module")
def repo() -> Iterator[Path]:
    """A temp copy of this checkout (traversable: the twin's sync Job runs as uid 1000)."""
    with twin.traversable_tmp("new-pipeline-") as copy:
        copy_checkout(copy)
        for name, text in NEW_FILES.items():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            (copy / name).write_text(text)
        yield copy


def test_forgetting_the_regenerate_command_fails_make_test_naming_it(repo: Path) -> None:
    assert "tools/manifests.py check" in makefile_recipe("validate")
    out = run(repo, "tools/manifests.py", "check")
    assert out.returncode == 1
    assert "run `make manifests`" in out.stderr


@pytest.fixture(scope="module")
def regenerated(repo: Path) -> Path:
    for command in makefile_recipe("manifests"):
        out = run(repo, *command.split())
        assert out.returncode == 0, out.stderr
    return repo


def test_only_pipelines_and_the_derived_files_change(regenerated: Path) -> None:
    paths = changed(regenerated)
    outside = [p for p in paths if not p.startswith("pipelines/")]
    assert outside == [
        "k8s/apps/pipelines/kustomization.yaml",
        "k8s/apps/pipelines/sync-plan.tsv",
        # its schedule gets its own alert rules (tools/monitoring.py)
        "k8s/monitoring/pipeline-rules.yaml",
        # its own tests: the fake API the Kestra twin loads from
        "tests/profiles/fake_api.py",
    ]
    assert sorted(p for p in paths if p.startswith("pipelines/")) == sorted(
        n for n in NEW_FILES if n.startswith("pipelines/")
    )
    assert run(regenerated, "tools/manifests.py", "check").returncode == 0
    assert run(regenerated, "tools/monitoring.py", "check").returncode == 0


def test_the_new_flow_validates(regenerated: Path) -> None:
    out = run(regenerated, "tools/validate_flows.py", "pipelines/")
    assert out.returncode == 0, out.stdout + out.stderr
    # The copy's flows before the new one (its base commit), plus the one added.
    before = [
        name
        for name in git(regenerated, "ls-tree", "--name-only", "HEAD", "pipelines/").split()
        if name.endswith(".yml")
    ]
    added = [n for n in NEW_FILES if n.startswith("pipelines/") and n.endswith(".yml")]
    flows = len(list((regenerated / "pipelines").glob("*.yml")))
    assert flows == len(before) + len(added) >= 2
    assert f"{flows} flow(s) checked, 0 violation(s)" in out.stderr


def test_the_rendered_apps_path_carries_the_new_pipeline(regenerated: Path) -> None:
    objects = twin.kustomize(regenerated / "k8s" / "apps" / "production")
    data = {
        cm["metadata"]["name"].rsplit("-", 1)[0]: cm["data"]
        for cm in objects
        if cm["kind"] == "ConfigMap"
    }
    assert data["pipelines-flows"]["profiles.yml"] == FLOW
    assert data["pipelines-code"]["profiles.__init__.py"] == SOURCE
    assert data["pipelines-code"]["dlt-profiles.py"] == SCRIPT
    assert "flow\tprofiles.pipelines\tprofiles.yml" in data["pipelines-sync"]["sync-plan.tsv"]


@pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("CI"), reason="needs root")
def test_the_sync_pushes_it_into_its_own_namespace(regenerated: Path) -> None:
    objects = twin.kustomize(regenerated / "k8s" / "apps" / "production") + twin.kustomize(
        regenerated / "k8s" / "infrastructure" / "production"
    )
    with twin.traversable_tmp("new-pipeline-sync-") as work:
        # The committed basic-auth pair is a placeholder Kestra refuses (tests/kestra/test_sync.py).
        sync = twin.run_sync(twin.with_credentials(objects, *twin.TEST_CREDENTIALS), work)
        assert sync.ok, sync.result.stderr + str(sync.error)
        assert "profiles.pipelines" in sync.store.namespaces()
        (flow_source,) = sync.store.flows("profiles.pipelines").values()
        assert yaml.safe_load(flow_source)["triggers"][0]["cron"] == "0 7 * * 1"
        files = sync.store.files("profiles.pipelines")
        assert files["/profiles/__init__.py"] == SOURCE.encode()
        execution = twin.Execution.scheduled(yaml.safe_load(flow_source), "weekly", {})
        picked = execution.namespace_files("load", files)
        assert {"dlt-profiles.py", "profiles/__init__.py", "requirements.lock"} <= set(picked)
        assert any(p.startswith("pipeline_runner/") for p in picked)


def test_the_new_script_runs_locally(regenerated: Path, tmp_path: Path) -> None:
    world = World(seed=3)
    world.populate(["hikaru", "magnuscarlsen"], months=1, games_per_month=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DLT_"))}
    with FakeChessCom(world) as api:
        out = subprocess.run(
            [
                sys.executable,
                str(regenerated / "pipelines" / "dlt" / "dlt-profiles.py"),
                "--destination",
                "duckdb",
                "--players",
                "hikaru,magnuscarlsen",
            ],
            cwd=tmp_path,
            env={
                **env,
                "DLT_DATA_DIR": str(tmp_path / "dlt-data"),
                "SOURCES__PROFILES__BASE_URL": api.base_url,
                "SOURCES__PROFILES__CONTACT": "tests@example.com",
            },
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert out.returncode == 0, out.stdout + out.stderr
    with duckdb.connect(str(tmp_path / "chess_profiles.duckdb"), read_only=True) as con:
        rows = con.execute("select username from profiles.player_profiles order by 1").fetchall()
    assert rows == [("hikaru",), ("magnuscarlsen",)]


def test_the_generic_checks_pass_with_two_pipelines(regenerated: Path) -> None:
    """Checks that hold for every flow, run in the copy: none assumes a single pipeline."""
    checks = ["tests/flows", "tests/test_pins.py", "tests/k8s/test_manifests.py"]
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", *checks],
        cwd=regenerated,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert re.search(r"\d+ passed", out.stdout) and "failed" not in out.stdout


def without_include(flow: dict, pattern: str) -> dict:
    flow = copy.deepcopy(flow)
    flow["tasks"][0]["namespaceFiles"]["include"].remove(pattern)
    return flow


def test_a_flow_missing_its_package_fails_make_validate_naming_it(regenerated: Path) -> None:
    broken = regenerated / "broken.yml"
    broken.write_text(yaml.safe_dump(without_include(yaml.safe_load(FLOW), "profiles/**")))
    try:
        out = run(regenerated, "tools/validate_flows.py", str(broken))
    finally:
        broken.unlink()
    assert out.returncode == 1
    assert "[namespace-files-imports]" in out.stdout
    assert "package 'profiles'" in out.stdout and "add 'profiles/**'" in out.stdout


@pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("CI"), reason="needs root")
def test_the_twin_runs_the_new_flow_and_catches_a_missed_include(regenerated: Path) -> None:
    """The twin's generic cases (tests/kestra/test_execution.py) on the copy: the new flow's
    task starts from only its picked files (`--help`), loads from its fake API into DuckDB,
    and, with `profiles/**` left out of its include, fails as Kestra would."""
    objects = twin.kustomize(regenerated / "k8s" / "apps" / "production") + twin.kustomize(
        regenerated / "k8s" / "infrastructure" / "production"
    )
    manifest = regenerated / "k8s" / "infrastructure" / "production" / "kestra-secrets.sops.yaml"
    secrets = twin.kestra_secrets(twin.server_env_from(objects, twin.secret_values({}, manifest)))
    with twin.traversable_tmp("new-pipeline-twin-") as work:
        sync = twin.run_sync(twin.with_credentials(objects, *twin.TEST_CREDENTIALS), work / "sync")
        assert sync.ok, sync.result.stderr
        assert "chess-profiles" in twin.rendered_flows(objects)
        flow = twin.deployed_flow(sync.store, "chess-profiles")
        assert twin.python_tasks(flow) == ["load"]

        def execute(flow: dict, name: str, network: dict | None = None, *args: str):
            execution = twin.started(twin.with_script_args(flow, "load", *args), secrets)
            return twin.run_task(execution, sync.store, "load", work / name, network or {})

        ok = execute(flow, "help", None, "--help")
        assert ok.result.returncode == 0, ok.output
        assert "--players" in ok.result.stdout
        missed = execute(without_include(flow, "profiles/**"), "missed", None, "--help")
        assert missed.result.returncode == 1, missed.output
        assert "ModuleNotFoundError: No module named 'profiles'" in missed.result.stderr

        fake = twin.fake_api(flow, "load", regenerated)
        assert fake is not None
        with fake as network:
            loaded = execute(flow, "load", network, "--destination", "duckdb")
        assert loaded.result.returncode == 0, loaded.output
        assert twin.duckdb_rows(loaded)["profiles.player_profiles"] == 2
