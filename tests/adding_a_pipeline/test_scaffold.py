"""`make new-pipeline NAME=…` in a temp copy of the repo: what it writes passes the checks
every pipeline gets, untouched, and its own tests load into DuckDB against its fake API."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import new_pipeline
from tests.conftest import ROOT
from tests.repo_copy import changed, copy_checkout, makefile_recipe, run


def free_name(base: str = "weather") -> str:
    """`weather`, or `weather2`, ... if the repository already has one (a pipeline a user
    scaffolded under that name must not break this test)."""
    for suffix in ["", *map(str, range(2, 100))]:
        try:
            new_pipeline.check_name(base + suffix, ROOT)
        except new_pipeline.ScaffoldError:
            continue
        return base + suffix
    raise AssertionError("no free name")


NAME = free_name()
# pytest in the copy, one process (the copy's own tests, its pyproject's settings)
PYTEST = [sys.executable, "-m", "pytest", "-v", "-n", "0", "-p", "no:cacheprovider"]
WRITTEN = sorted(str(path) for path in new_pipeline.planned_files(NAME))


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("Weather", "not a valid pipeline name"),
        ("1weather", "not a valid pipeline name"),
        ("weather-stations", "not a valid pipeline name"),
        ("class", "not a valid pipeline name"),
        ("chess_com", "is taken: pipelines/dlt/chess_com/__init__.py"),
        ("unit", "is taken: tests/unit/__init__.py"),
        ("chess", "is taken: [sources.chess]"),
        ("json", "would shadow the installed module 'json'"),
        ("requests", "would shadow the installed module 'requests'"),
    ],
)
def test_a_bad_or_taken_name_is_refused_naming_it(name: str, says: str) -> None:
    with pytest.raises(new_pipeline.ScaffoldError) as refused:
        new_pipeline.check_name(name, ROOT)
    assert f"NAME={name!r}" in str(refused.value)
    assert says in str(refused.value)


def test_make_new_pipeline_runs_the_scaffold() -> None:
    assert any("tools/new_pipeline.py $(NAME)" in line for line in makefile_recipe("new-pipeline"))


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    repo = copy_checkout(tmp_path_factory.mktemp("scaffold"))
    out = run(repo, "tools/new_pipeline.py", NAME, "--cron", "0 * * * *")
    assert out.returncode == 0, out.stdout + out.stderr
    yield repo, out.stdout


@pytest.mark.e2e
def test_it_writes_the_pipeline_and_its_derived_files_only(scaffolded: tuple[Path, str]) -> None:
    repo, said = scaffolded
    assert changed(repo) == sorted(
        [
            *WRITTEN,
            "k8s/apps/pipelines/kustomization.yaml",
            "k8s/apps/pipelines/sync-plan.tsv",
            "k8s/infrastructure/production/kestra-secrets.sops.yaml",
            "k8s/monitoring/pipeline-rules.yaml",
            "pipelines/dlt/.dlt/config.toml",
            "pipelines/dlt/.dlt/secrets.toml.example",
        ]
    )
    assert all(path in said for path in WRITTEN)
    secrets = yaml.safe_load((repo / new_pipeline.SECRETS_MANIFEST).read_text())["stringData"]
    assert secrets[f"{NAME.upper()}_API_KEY"] == new_pipeline.PLACEHOLDER
    flow = yaml.safe_load((repo / f"pipelines/{NAME}.yml").read_text())
    assert (flow["id"], flow["namespace"]) == (NAME, f"{NAME}.pipelines")
    assert flow["triggers"][0]["cron"] == "0 * * * *"
    assert f"{NAME}.pipelines" in (repo / "k8s/monitoring/pipeline-rules.yaml").read_text()


@pytest.mark.e2e
def test_a_second_scaffold_of_the_same_name_is_refused(scaffolded: tuple[Path, str]) -> None:
    repo, _ = scaffolded
    out = run(repo, "tools/new_pipeline.py", NAME)
    assert out.returncode == 2
    assert f"NAME={NAME!r} is taken" in out.stderr


@pytest.mark.e2e
def test_lint_and_validate_pass_untouched(scaffolded: tuple[Path, str]) -> None:
    repo, _ = scaffolded
    for command in (
        ("-m", "ruff", "check", "."),
        ("-m", "ruff", "format", "--check", "."),
        ("tools/manifests.py", "check"),
        ("tools/monitoring.py", "check"),
        ("tools/validate_flows.py", "pipelines/"),
    ):
        out = run(repo, *command)
        assert out.returncode == 0, f"{command}: {out.stdout}{out.stderr}"


@pytest.mark.e2e
def test_its_tests_and_the_generic_checks_pass_untouched(scaffolded: tuple[Path, str]) -> None:
    """Its own tests (unit and the script end to end against its fake API, into DuckDB) and
    the checks that hold for every flow: pins, secrets, include patterns, manifests."""
    repo, _ = scaffolded
    checks = [f"tests/{NAME}", "tests/flows", "tests/test_pins.py", "tests/k8s/test_manifests.py"]
    out = subprocess.run(
        [*PYTEST, *checks],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " SKIPPED" not in out.stdout and " FAILED" not in out.stdout, out.stdout[-3000:]
    own = re.findall(rf"^tests/{NAME}/test_{NAME}\.py::(\w+) PASSED", out.stdout, re.M)
    assert len(own) == 3 and "test_the_script_loads_then_merges_what_changed" in own, own


@pytest.mark.e2e
@pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("CI"), reason="needs root")
def test_the_kestra_twin_runs_its_flow_untouched(scaffolded: tuple[Path, str]) -> None:
    """The twin's cases for every flow (tests/kestra/test_execution.py), in the copy: the
    new task starts from only the files its include picks, and loads from its fake API
    (`twin_env()`) into DuckDB."""
    repo, _ = scaffolded
    out = subprocess.run(
        [*PYTEST, "tests/kestra/test_execution.py", "-k", f"every_python_task and {NAME}"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    passed = re.findall(rf"::(test_every_python_task\w+)\[{NAME}\.load\] PASSED", out.stdout)
    assert len(passed) == 2, out.stdout[-3000:]
