"""GitHub Actions workflows validate against check-jsonschema's built-in schema, offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def test_there_are_workflows() -> None:
    assert WORKFLOWS, "no workflows in .github/workflows"


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_github_schema(workflow: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            str(workflow),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_is_least_privilege_pinned_and_grouped(workflow: Path) -> None:
    spec = yaml.safe_load(workflow.read_text())
    assert spec["permissions"] == {"contents": "read"}
    assert "group" in spec["concurrency"]
    for name, job in spec["jobs"].items():
        assert "timeout-minutes" in job, f"job {name} has no timeout"
        for step in job["steps"]:
            uses = step.get("uses")
            if uses:
                ref = uses.split("@", 1)[1]
                # An exact release (vX.Y.Z) or a commit SHA, never a branch or major tag.
                assert ref.count(".") == 2 or len(ref) == 40, f"{name}: {uses} is not pinned"
