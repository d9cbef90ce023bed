"""The flows' plugins as the deployed Kestra resolves them: every type is a cited class (the
e2e job checks the image holds it), and a Docker runner's `volumes` are bound only where the
Kestra HelmRelease enables them (Docker.java, cited in tests/kestra/twin.py)."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import validate_flows
from tests.conftest import ROOT
from tests.kestra import twin

FLOWS = sorted((ROOT / "pipelines").glob("*.yml"))
CHECK = ROOT / "tools" / "e2e" / "check_plugin_types.py"
SLACK = "io.kestra.plugin.slack.notifications.SlackIncomingWebhook"


def flow(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


# The shared alerting flow's trigger and conditions (pipelines/alert-pipeline-failures.yml),
# cited here until they join twin.PLUGIN_TYPES (tests/kestra/twin.py has another owner).
ALERTING_TYPES = {
    "io.kestra.plugin.core.trigger.Flow": (
        "kestra-io/kestra 1.3 core/src/main/java/io/kestra/plugin/core/trigger/Flow.java "
        "(alias io.kestra.core.models.triggers.types.Flow)"
    ),
    "io.kestra.plugin.core.condition.ExecutionStatus": (
        "kestra-io/kestra 1.3 core/src/main/java/io/kestra/plugin/core/condition/"
        "ExecutionStatus.java (aliases ...conditions.types.ExecutionStatusCondition)"
    ),
    "io.kestra.plugin.core.condition.ExecutionNamespace": (
        "kestra-io/kestra 1.3 core/src/main/java/io/kestra/plugin/core/condition/"
        "ExecutionNamespace.java (aliases ...conditions.types.ExecutionNamespaceCondition)"
    ),
}


def test_every_plugin_type_the_flows_use_is_a_cited_class() -> None:
    used = set().union(*(twin.plugin_types(flow(f)) for f in FLOWS))
    cited = set(twin.PLUGIN_TYPES) | set(ALERTING_TYPES)
    assert used == cited, "cite each new type in twin.PLUGIN_TYPES"
    assert SLACK in used, "the failure alert's Slack task"


@pytest.mark.parametrize("path", FLOWS, ids=lambda p: p.stem)
def test_flow_volumes_are_bound_by_the_deployed_kestra(path: Path, flux_objects) -> None:
    assert twin.dropped_volumes(flow(path), flux_objects) == []


def docker_configuration(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    values = twin.find(objects, "HelmRelease", "kestra")["spec"]["values"]
    return values["configurations"]["application"]["kestra"]["plugins"]["configurations"]


def load_task() -> dict[str, Any]:
    chess = flow(ROOT / "pipelines" / "chess-kestra-dlt.yml")
    return next(t for t in chess["tasks"] if t["id"] == "load")


def test_the_uv_cache_volume_is_bound() -> None:
    task = load_task()
    assert task["taskRunner"]["volumes"], "the flow mounts its uv cache"


@pytest.mark.parametrize(
    ("change", "bound", "problem"),
    [
        (lambda c: c.clear(), False, "are dropped"),
        (lambda c: c[0].update(type=twin.DOCKER_RUNNER.upper()), True, None),
        (lambda c: c[0].update(type="io.kestra.plugin.scripts.runner.docker.Dockers"), False, "are dropped"),
        (lambda c: c[0]["values"].update({"volume-enabled": "true"}), None, "ClassCastException"),
        (lambda c: c[0]["values"].update({"volume-enabled": False}), False, "are dropped"),
        (lambda c: c.append({"type": twin.DOCKER_RUNNER, "values": {"volume-enabled": False}}), False, "are dropped"),
    ],
    ids=["no-configuration", "type-case", "other-type", "string", "false", "later-entry-wins"],
)  # fmt: skip
def test_volumes_follow_the_runner_plugin_configuration(
    flux_objects, change: Any, bound: bool | None, problem: str | None
) -> None:
    objects = copy.deepcopy(flux_objects)
    change(docker_configuration(objects))
    task = load_task()
    chess = flow(ROOT / "pipelines" / "chess-kestra-dlt.yml")
    if bound is None:
        with pytest.raises(twin.TaskFailure):
            twin.docker_binds(task, objects)
    else:
        declared = task["taskRunner"]["volumes"]
        assert twin.docker_binds(task, objects) == (declared if bound else [])
    problems = twin.dropped_volumes(chess, objects)
    assert (problems == []) if problem is None else (problem in " ".join(problems))


def test_the_legacy_property_still_enables_volumes(flux_objects) -> None:
    objects = copy.deepcopy(flux_objects)
    docker_configuration(objects).clear()
    values = twin.find(objects, "HelmRelease", "kestra")["spec"]["values"]
    kestra = values["configurations"]["application"]["kestra"]
    kestra["tasks"] = {"scripts": {"docker": {"volume-enabled": "true"}}}
    assert twin.docker_binds(load_task(), objects) == load_task()["taskRunner"]["volumes"]


# --- tools/e2e/check_plugin_types.py (run on the real image by the e2e workflow) ----------------

LISTING = """\
Core plugin: [Tasks: io.kestra.plugin.core.log.Log] [Triggers: io.kestra.plugin.core.trigger.Schedule, io.kestra.plugin.core.trigger.Flow] [Conditions: io.kestra.plugin.core.condition.ExecutionStatus, io.kestra.plugin.core.condition.ExecutionNamespace] [Task Runners: io.kestra.plugin.core.runner.Process]
Found plugin on path: /app/plugins/plugin-script-python-1.7.0.jar [Tasks: io.kestra.plugin.scripts.python.Commands, io.kestra.plugin.scripts.python.Script]
Found plugin on path: /app/plugins/kestra-script.jar [Task Runners: io.kestra.plugin.scripts.runner.docker.Docker]
Found plugin on path: /app/plugins/plugin-slack-1.1.0.jar [Tasks: io.kestra.plugin.slack.notifications.SlackIncomingWebhook, io.kestra.plugin.slack.notifications.SlackExecution]
"""  # fmt: skip


def run_check(listing: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    file = tmp_path / "listing.txt"
    file.write_text(listing)
    return subprocess.run(
        [sys.executable, CHECK, file, *FLOWS], capture_output=True, text=True, timeout=60
    )


def test_plugin_check_passes_when_the_image_lists_every_type(tmp_path: Path) -> None:
    out = run_check(LISTING, tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"{SLACK} (/app/plugins/plugin-slack-1.1.0.jar)" in out.stdout


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("io.kestra.plugin.slack.notifications.SlackIncomingWebhook,", "io.kestra.plugin.slack.SlackIncomingWebhook,"),
        ("[Triggers: io.kestra.plugin.core.trigger.Schedule, io.kestra.plugin.core.trigger.Flow] ", ""),
        ("io.kestra.plugin.core.condition.ExecutionStatus, ", ""),
    ],
    ids=["slack-1.0-class-name", "no-triggers", "no-status-condition"],
)  # fmt: skip
def test_plugin_check_fails_naming_the_missing_type(old: str, new: str, tmp_path: Path) -> None:
    out = run_check(LISTING.replace(old, new), tmp_path)
    assert out.returncode == 1
    missing = old.split("[Triggers: ")[-1].rstrip(",] ").split(", ")
    for name in missing:
        assert f"{name} is no plugin class of this image" in out.stderr


def test_plugin_check_refuses_an_empty_listing(tmp_path: Path) -> None:
    out = run_check("Usage: kestra plugins list\n", tmp_path)
    assert out.returncode == 1 and "not a `plugins list` output" in out.stderr


# --- the CI overlay's plugin defaults: the e2e network for an unchanged flow ---------------------

CI_INFRASTRUCTURE = ROOT / "k8s" / "infrastructure" / "ci"
E2E_NETWORK = {"SOURCES__CHESS__BASE_URL", "DESTINATION__SNOWFLAKE__CREDENTIALS__QUERY"}


def test_production_kestra_sets_no_plugin_defaults(flux_objects) -> None:
    assert twin.global_plugin_defaults(flux_objects) == []


def test_ci_plugin_defaults_add_the_e2e_network_and_keep_the_flows_env() -> None:
    defaults = twin.global_plugin_defaults(twin.kustomize(CI_INFRASTRUCTURE))
    task = load_task()
    env = validate_flows.apply_plugin_defaults(task, defaults)["env"]
    assert set(env) == set(task["env"]) | E2E_NETWORK
    assert {k: env[k] for k in task["env"]} == task["env"], "the flow's own env wins"
    assert env["SOURCES__CHESS__BASE_URL"].startswith("http://fake-chesscom.chess-e2e.svc")
    # Micronaut keeps a map key's case only when 3+ capitals precede its first `_`
    # (kestra-io/kestra#2844, micronaut-core#10587): AB_VALUE came out as aB_VALUE.
    for key in E2E_NETWORK:
        assert re.match(r"[A-Z]{3,}_", key), key


def test_plugin_defaults_follow_kestras_merge() -> None:
    task = {"type": "io.kestra.plugin.scripts.python.Commands", "env": {"A": "task"}, "x": [1]}
    soft = {
        "type": "io.kestra.plugin.scripts",
        "values": {"env": {"A": "d", "B": "d"}, "x": [1, 2]},
    }
    forced = {**soft, "forced": True}
    other = {"type": "io.kestra.plugin.core", "values": {"env": {"C": "d"}}}
    assert validate_flows.apply_plugin_defaults(task, [soft, other]) == {
        **task, "env": {"A": "task", "B": "d"}, "x": [1, 2],
    }  # fmt: skip
    assert validate_flows.apply_plugin_defaults(task, [forced])["env"] == {"A": "d", "B": "d"}
