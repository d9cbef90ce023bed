"""tools/kestra_files.py against Kestra's rules and the real JDK glob matcher."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import kestra_files

HARNESS = Path(__file__).with_name("GlobMatch.java")

GLOBS = [
    "*.py", "**/*.py", "**.py", "/*.py", "chess_com/*", "**/chess_com/**", "**/chess_com/*",
    ".dlt/config.toml", "/.dlt/config.toml", "**/.dlt/**", "**/.dlt/*", "/.dlt/*",
    "?ess_com/**", "/[a-c]*", "/[!a-c]*", "/[^a]*", "/x[-a]y", "/{a,b}.py", "/{*.py,*.toml}",
    "**/{requirements.lock,*.py}", "/a\\*b", "/dir/[a-z]/f", "**/*.{yml,yaml}", "/a/**/b",
    "**", "*", "/a.b+c(d)", "[a-", "{a,{b}}", "/[a/b]",
]  # fmt: skip
PATHS = [
    "/a.py", "/dlt-chess-snowflake.py", "/chess_com/client.py", "/chess_com/sub/x.py",
    "/x/chess_com/y.py", "/.dlt/config.toml", "/.dlt/secrets.toml", "/requirements.lock",
    "/b.py", "/c.toml", "/a*b", "/aXb", "/dir/q/f", "/dir/qq/f", "/flow.yaml", "/a/b",
    "/a/x/y/b", "/a.b+c(d)", "/x-y", "/xay", "/^x",
]  # fmt: skip


def test_the_include_that_broke_scheduled_runs_matches_nothing() -> None:
    stored = ["/.dlt/config.toml", "/chess_com/client.py", "/dlt-chess-snowflake.py"]
    assert kestra_files.select(stored, [".dlt/config.toml"], None) == []
    assert kestra_files.select(stored, ["/.dlt/config.toml"], None) == ["/.dlt/config.toml"]
    assert kestra_files.select(stored, ["**/.dlt/**"], None) == ["/.dlt/config.toml"]


def test_word_patterns_get_a_recursive_prefix() -> None:
    assert kestra_files.kestra_pattern("chess_com/**") == "glob:**/chess_com/**"
    assert kestra_files.kestra_pattern(".dlt/x") == "glob:.dlt/x"
    assert kestra_files.kestra_pattern("/x") == "glob:/x"
    assert kestra_files.kestra_pattern("regex:.*") == "regex:.*"
    stored = ["/chess_com/client.py", "/a/chess_com/b.py", "/chess_com.py"]
    assert kestra_files.select(stored, ["chess_com/**"], None) == stored[:2]


def test_excludes_win_and_no_include_means_everything() -> None:
    stored = ["/a.py", "/b.toml", "/c/d.py"]
    assert kestra_files.select(stored, None, None) == stored
    # `*.py` does not start with a word character: no `**/` prefix, and `*` stops at the
    # leading `/`, so it excludes nothing. `**.py` does what one would expect.
    assert kestra_files.select(stored, None, ["*.py"]) == stored
    assert kestra_files.select(stored, None, ["**.py"]) == ["/b.toml"]
    assert kestra_files.select(stored, ["**"], ["/c/**"]) == ["/a.py", "/b.toml"]


def test_stored_and_working_dir_paths() -> None:
    assert kestra_files.stored_path(".dlt/config.toml") == "/.dlt/config.toml"
    assert kestra_files.working_dir_path("/.dlt/config.toml") == ".dlt/config.toml"
    assert kestra_files.working_dir_path("/chess_com/a.py") == "chess_com/a.py"


def java() -> str:
    found = shutil.which("java")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("java (a JDK) is required under CI: .ci/run installs it")
    pytest.skip("no JDK: install openjdk-17-jdk-headless to compare with the JVM's matcher")


def python_answer(glob: str, path: str) -> str:
    try:
        regex = kestra_files.compile_pattern("glob:" + glob)
    except (kestra_files.GlobError, Exception):
        return "error"
    return "true" if regex.fullmatch(path) else "false"


def test_glob_port_agrees_with_the_jvm_matcher() -> None:
    pairs = list(itertools.product(GLOBS, PATHS))
    out = subprocess.run(
        [java(), str(HARNESS)],
        input="".join(f"{g}\t{p}\n" for g, p in pairs),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    jvm = out.stdout.split()
    assert len(jvm) == len(pairs)
    disagree = [
        (g, p, j, py)
        for (g, p), j in zip(pairs, jvm, strict=True)
        if j != (py := python_answer(g, p))
    ]
    assert disagree == []
    assert "true" in jvm and "false" in jvm and "error" in jvm
