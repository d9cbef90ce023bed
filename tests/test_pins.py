"""One source of truth per pin and secret name: the copies must agree."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

import kestra_files
import validate_flows
from tests.conftest import ROOT

FLOWS = sorted((ROOT / "pipelines").glob("*.yml"))
LOCK = ROOT / "pipelines" / "dlt" / "requirements.lock"
# Every task of every flow that runs the pipelines' Python code in a container.
SCRIPT_TASKS = [
    pytest.param(task, id=f"{flow.stem}:{task['id']}")
    for flow in FLOWS
    for task in yaml.safe_load(flow.read_text())["tasks"]
    if "containerImage" in task
]


def makefile_var(name: str) -> str:
    match = re.search(rf"^{name} := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert match, f"{name} not in Makefile"
    return match.group(1)


def test_there_are_script_tasks() -> None:
    assert SCRIPT_TASKS, "no flow task runs in a container"


@pytest.mark.parametrize("task", SCRIPT_TASKS)
def test_flow_image_uses_the_pinned_uv_and_python(task: dict) -> None:
    image = task["containerImage"]
    match = re.fullmatch(r"ghcr\.io/astral-sh/uv:(\d+\.\d+\.\d+)-python(\d+\.\d+)-\S+", image)
    assert match, image
    assert match.group(1) == makefile_var("UV_VERSION")
    assert match.group(2) == (ROOT / ".python-version").read_text().strip()


def uv_binary() -> str | None:
    local = ROOT / ".venv-tools" / "bin" / "uv"
    return str(local) if local.exists() else shutil.which("uv")


def test_requirements_lock_is_exported_from_uv_lock() -> None:
    uv = uv_binary()
    if uv is None:
        if os.environ.get("CI"):
            pytest.fail("uv is missing under CI: run through make, which installs it")
        pytest.skip("uv not installed: run `make install`")
    exported = subprocess.run(
        [
            uv,
            "export",
            "--frozen",
            "--no-dev",
            "--no-emit-project",
            "--format",
            "requirements-txt",
            "-q",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def body(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("#")]

    assert body(exported) == body(LOCK.read_text()), (
        "pipelines/dlt/requirements.lock is stale: run `make lock`"
    )


@pytest.mark.parametrize("task", SCRIPT_TASKS)
def test_flow_installs_only_the_hash_locked_requirements(task: dict) -> None:
    before = " ".join(task["beforeCommands"])
    assert "--require-hashes" in before and "-r requirements.lock" in before
    deployed = validate_flows.deployed_namespace_files()
    assert deployed is not None
    spec = task["namespaceFiles"]
    picked = kestra_files.select(deployed, spec.get("include"), spec.get("exclude"))
    assert "/requirements.lock" in picked, "the task must get requirements.lock"


def test_flow_secrets_are_exactly_the_deployed_ones() -> None:
    used = {n for flow in FLOWS for n in validate_flows.EXPR_SECRET.findall(flow.read_text())}
    deployed = validate_flows.deployed_secret_names()
    assert deployed is not None
    assert used == deployed, f"only in flows: {used - deployed}, only deployed: {deployed - used}"


@pytest.mark.parametrize("task", SCRIPT_TASKS)
def test_every_include_pattern_picks_a_deployed_file(task: dict) -> None:
    """As Kestra matches them (tools/kestra_files.py), not as Path.glob or fnmatch would."""
    deployed = validate_flows.deployed_namespace_files()
    assert deployed is not None
    for pattern in task["namespaceFiles"]["include"]:
        assert kestra_files.select(deployed, [pattern], None), f"{pattern} matches nothing"
