"""A temp copy of this checkout as git would push it, for tests that add a pipeline to it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

# Tools the checks need, as `make install` left them (never copied: they are large).
ENVIRONMENTS = (".venv-tools", ".venv-ops")


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return out.stdout


def copy_checkout(target: Path) -> Path:
    """Tracked and new not-ignored files (uncommitted edits included), committed as `base`."""
    names = git(ROOT, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    for name in filter(None, names.split("\0")):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    git(target, "init", "-q")
    git(target, "add", "-A")
    git(target, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "base")
    for env in ENVIRONMENTS:
        if (ROOT / env).exists():
            (target / env).symlink_to(ROOT / env)
    return target


def changed(repo: Path) -> list[str]:
    """Paths changed or added since `base` (the symlinked environments left out)."""
    lines = git(repo, "status", "--porcelain", "--untracked-files=all").splitlines()
    return sorted(p for p in (line[3:] for line in lines) if p not in ENVIRONMENTS)


def run(repo: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python <args>` in the copy, with this interpreter (the project's environment)."""
    return subprocess.run(
        [sys.executable, *args], cwd=repo, capture_output=True, text=True, timeout=timeout
    )


def makefile_recipe(target: str) -> list[str]:
    """The commands of a Makefile target, with $(PY) as this interpreter."""
    text = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", text, re.M)
    assert match, f"no `make {target}`"
    return [line.strip().replace("$(PY) ", "") for line in match.group(1).splitlines()]
