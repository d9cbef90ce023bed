"""One source of truth per pin and secret name: the copies must agree."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import validate_flows

FLOW = ROOT / "pipelines" / "chess-kestra-dlt.yml"
LOCK = ROOT / "pipelines" / "dlt" / "requirements.lock"


def flow_task() -> dict:
    return yaml.safe_load(FLOW.read_text())["tasks"][0]


def makefile_var(name: str) -> str:
    match = re.search(rf"^{name} := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert match, f"{name} not in Makefile"
    return match.group(1)


def test_flow_image_uses_the_pinned_uv_and_python() -> None:
    image = flow_task()["containerImage"]
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


def test_flow_installs_only_the_hash_locked_requirements() -> None:
    before = " ".join(flow_task()["beforeCommands"])
    assert "--require-hashes" in before and "-r requirements.lock" in before
    assert "requirements.lock" in flow_task()["namespaceFiles"]["include"]


def test_flow_secrets_are_exactly_the_deployed_ones() -> None:
    used = set(validate_flows.EXPR_SECRET.findall(FLOW.read_text()))
    deployed = validate_flows.deployed_secret_names()
    assert deployed is not None
    assert used == deployed, f"only in flow: {used - deployed}, only deployed: {deployed - used}"


def test_flow_namespace_files_exist() -> None:
    source = ROOT / "pipelines" / "dlt"
    for pattern in flow_task()["namespaceFiles"]["include"]:
        assert list(source.glob(pattern)), f"{pattern} matches nothing in {source}"
