"""A pipeline script reads the `.dlt/` beside it from whichever directory it is run,
without setting DLT_PROJECT_DIR itself (pipeline_runner.workdir.use_script_project_dir)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dlt
import duckdb
import pytest
from dlt.common.configuration.container import Container
from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext

from pipeline_runner.workdir import use_script_project_dir
from tests.conftest import ROOT, SOURCE_DIR

# The pipelines/README shape: no sys.path edit, no DLT_PROJECT_DIR.
SCRIPT = """
import sys

import dlt
from pipeline_runner import run_pipeline


@dlt.source(name="weather", section="weather")
def weather(base_url: str = dlt.config.value):
    @dlt.resource(name="stations", write_disposition="replace")
    def stations():
        yield {"base_url": base_url}

    return stations


def build_source(args):
    return weather()


if __name__ == "__main__":
    sys.exit(run_pipeline(name="weather_stations", env_prefix="WEATHER", dataset="weather",
                          build_source=build_source))
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    directory = tmp_path / "project"
    (directory / ".dlt").mkdir(parents=True)
    (directory / ".dlt" / "config.toml").write_text(
        '[sources.weather]\nbase_url = "https://weather.example/api"\n'
    )
    (directory / "dlt-weather.py").write_text(SCRIPT)
    return directory


def run_script(
    script: Path, cwd: Path, tmp_path: Path, **extra: str
) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DLT_", "SOURCES__", "WEATHER_", "DESTINATION__", "KESTRA_"))
    }
    # pipeline_runner is found as it is beside the chess script; the script's own directory
    # is first on sys.path (`python path/script.py`).
    env |= {"PYTHONPATH": str(SOURCE_DIR), "DLT_DATA_DIR": str(tmp_path / "dlt-data"), **extra}
    return subprocess.run(
        [sys.executable, str(script), "--destination", "duckdb"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_script_run_from_elsewhere_reads_the_dlt_settings_beside_it(
    project: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"  # stands for the repo root: no .dlt/ of its own
    elsewhere.mkdir()
    run = run_script(project / "dlt-weather.py", elsewhere, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    with duckdb.connect(str(elsewhere / "weather_stations.duckdb"), read_only=True) as con:
        rows = con.execute("select base_url from weather.stations").fetchall()
    assert rows == [("https://weather.example/api",)]


def test_dlt_project_dir_set_by_the_caller_wins(project: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty-project"
    (empty / ".dlt").mkdir(parents=True)
    run = run_script(project / "dlt-weather.py", tmp_path, tmp_path, DLT_PROJECT_DIR=str(empty))
    assert run.returncode == 2, run.stdout + run.stderr
    assert "missing setting(s): base_url" in run.stderr


@pytest.fixture
def restore_dlt_context(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.delenv("DLT_PROJECT_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    yield
    monkeypatch.undo()  # DLT_PROJECT_DIR and the directory as they were
    Container()[PluggableRunContext].reload_providers()


def test_a_run_context_already_in_use_reads_the_new_project_dir(
    project: Path, tmp_path: Path, restore_dlt_context: None
) -> None:
    # dlt read its TOML providers (from the current directory, no .dlt/) before the runner ran
    assert dlt.current.run_context() is not None
    with pytest.raises(KeyError):
        dlt.config["sources.weather.base_url"]
    module = project / "builder.py"
    module.write_text("def build_source(args):\n    return None\n")
    spec = importlib.util.spec_from_file_location("builder", module)
    assert spec and spec.loader
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)

    assert use_script_project_dir(builder.build_source) == project
    assert os.environ["DLT_PROJECT_DIR"] == str(project)
    assert dlt.config["sources.weather.base_url"] == "https://weather.example/api"
    # set by the caller: left alone
    assert use_script_project_dir(builder.build_source) is None
    # a builder defined where there is no .dlt/ (here: this test file): dlt's own rule
    del os.environ["DLT_PROJECT_DIR"]
    assert use_script_project_dir(test_dlt_project_dir_set_by_the_caller_wins) is None
    assert "DLT_PROJECT_DIR" not in os.environ
    assert not (ROOT / "tests" / "unit" / ".dlt").exists()
