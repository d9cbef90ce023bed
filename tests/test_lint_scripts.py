"""Workflows pass actionlint (with shellcheck on their `run:` blocks) and every shell script
of the repo passes shellcheck: the e2e lane runs only in GitHub Actions, so its steps and
scripts are checked here, offline. Both linters come from the ops lane (.venv-ops)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.k8s.test_manifests import OPS_BIN, tool

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def repo_files() -> list[Path]:
    """Files git tracks or would add (untracked, not ignored); every file outside git."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if out.returncode == 0 and out.stdout:
        return [ROOT / line for line in out.stdout.splitlines()]
    return [p for p in ROOT.rglob("*") if p.is_file()]


def shell_scripts() -> list[Path]:
    """Files that bash runs: *.sh and anything with a bash/sh shebang."""
    scripts = []
    for file in repo_files():
        if not file.is_file() or any(part.startswith(".venv") for part in file.parts):
            continue
        if file.suffix == ".sh":
            scripts.append(file)
            continue
        with file.open("rb") as f:
            head = f.read(40)
        if head.startswith((b"#!/usr/bin/env bash", b"#!/bin/bash", b"#!/bin/sh")):
            scripts.append(file)
    return sorted(set(scripts))


def lint_env() -> dict[str, str]:
    # actionlint finds shellcheck on PATH for the workflows' `run:` blocks.
    return {**os.environ, "PATH": f"{OPS_BIN}{os.pathsep}{os.environ['PATH']}"}


def test_the_e2e_scripts_are_linted() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in shell_scripts()}
    assert {".ci/run", "tools/e2e/make-source.sh", "tools/e2e/check-kestra.sh"} <= names


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_shell_script_passes_shellcheck(script: Path) -> None:
    shellcheck = tool("shellcheck", OPS_BIN / "shellcheck")
    out = subprocess.run([shellcheck, str(script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_passes_actionlint(workflow: Path) -> None:
    actionlint = tool("actionlint", OPS_BIN / "actionlint")
    tool("shellcheck", OPS_BIN / "shellcheck")
    out = subprocess.run(
        [actionlint, "-no-color", "-pyflakes=", str(workflow)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=lint_env(),
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    """The linter runs and reports (an unknown context and a shellcheck finding)."""
    actionlint = tool("actionlint", OPS_BIN / "actionlint")
    tool("shellcheck", OPS_BIN / "shellcheck")
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo ${{ secret.TOKEN }}\n      - run: cd $HOME/x; ls $1\n"
    )
    out = subprocess.run(
        [actionlint, "-no-color", "-pyflakes=", str(bad)],
        capture_output=True,
        text=True,
        env=lint_env(),
    )
    assert out.returncode == 1
    assert 'undefined variable "secret"' in out.stdout
    assert "shellcheck reported issue" in out.stdout
