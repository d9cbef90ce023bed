"""The offline flow validator: the real flow passes, each broken variant fails its rule."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import validate_flows

FLOW = ROOT / "pipelines" / "chess-kestra-dlt.yml"
VALIDATOR = ROOT / "tools" / "validate_flows.py"


def real_flow() -> dict[str, Any]:
    return yaml.safe_load(FLOW.read_text())


def rules_for(tmp_path: Path, flow: dict[str, Any] | str) -> list[validate_flows.Violation]:
    file = tmp_path / "flow.yml"
    file.write_text(flow if isinstance(flow, str) else yaml.safe_dump(flow, sort_keys=False))
    return validate_flows.validate([file], validate_flows.deployed_secret_names())


def test_every_flow_in_pipelines_is_valid() -> None:
    result = subprocess.run(
        [sys.executable, str(VALIDATOR), str(ROOT / "pipelines")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    flows = len(list((ROOT / "pipelines").glob("*.yml")))
    assert flows >= 1
    assert f"{flows} flow(s) checked, 0 violation(s)" in result.stderr


def task(flow: dict[str, Any]) -> dict[str, Any]:
    return flow["tasks"][0]


Mutation = Callable[[dict[str, Any]], None]

CASES: list[tuple[str, Mutation, str, str]] = [
    ("no id", lambda f: f.pop("id"), "required", "'id'"),
    ("no namespace", lambda f: f.pop("namespace"), "required", "'namespace'"),
    ("no tasks", lambda f: f.pop("tasks"), "required", "'tasks'"),
    ("empty tasks", lambda f: f.update(tasks=[]), "required", "non-empty"),
    ("bad flow id", lambda f: f.update(id="-chess"), "id-pattern", "'-chess'"),
    ("upper-case namespace", lambda f: f.update(namespace="Chess"), "namespace-pattern", "Chess"),
    ("dot in task id", lambda f: task(f).update(id="load.games"), "task-id-pattern", "load.games"),
    (
        "task id reused in errors",
        lambda f: f["errors"][0].update(id="load"),
        "unique-id",
        "'load' already used at tasks[0]",
    ),
    (
        "nested duplicate id",
        lambda f: f["tasks"].append(
            {
                "id": "wrap",
                "type": "io.kestra.plugin.core.flow.Sequential",
                "tasks": [
                    {"id": "alert_slack", "type": "io.kestra.plugin.core.log.Log", "message": "x"}
                ],
            }
        ),
        "unique-id",
        "'alert_slack'",
    ),
    (
        "duplicate trigger id",
        lambda f: f["triggers"].append(copy.deepcopy(f["triggers"][0])),
        "unique-id",
        "'daily'",
    ),
    (
        "unknown flow property",
        lambda f: f.update(schedule="daily"),
        "unknown-property",
        "'schedule'",
    ),
    (
        "unknown task property",
        lambda f: task(f).update(image="python:3.11"),
        "unknown-property",
        "no property 'image'",
    ),
    (
        "unknown trigger property",
        lambda f: f["triggers"][0].update(timeZone="UTC"),
        "unknown-property",
        "'timeZone'",
    ),
    (
        "unknown type",
        lambda f: task(f).update(type="io.kestra.plugin.scripts.python.Notebook"),
        "unknown-type",
        "unknown to the validator",
    ),
    (
        "deprecated type alias",
        lambda f: f["errors"][0].update(
            type="io.kestra.plugin.notifications.slack.SlackIncomingWebhook"
        ),
        "deprecated",
        "removed in Kestra 2.0",
    ),
    (
        "deprecated core alias",
        lambda f: f["triggers"][0].update(type="io.kestra.core.models.triggers.types.Schedule"),
        "deprecated",
        "io.kestra.plugin.core.trigger.Schedule",
    ),
    ("pluginDefaults", lambda f: f.update(pluginDefaults=[]), "deprecated", "2.0 drops"),
    ("bad timeout", lambda f: task(f).update(timeout="2h"), "duration", "'2h'"),
    ("calendar duration", lambda f: task(f).update(timeout="P1M"), "duration", "'P1M'"),
    ("maxAttempt", lambda f: task(f)["retry"].update(maxAttempt=3), "deprecated", "maxAttempts"),
    (
        "exponential interval >= maxInterval",
        lambda f: task(f)["retry"].update(interval="PT30M"),
        "retry",
        "must be < maxInterval",
    ),
    (
        "exponential without maxInterval",
        lambda f: task(f)["retry"].pop("maxInterval"),
        "retry",
        "needs 'maxInterval'",
    ),
    (
        "constant without interval",
        lambda f: task(f).update(retry={"type": "constant", "maxAttempts": 2}),
        "retry",
        "needs 'interval'",
    ),
    ("retry type", lambda f: task(f)["retry"].update(type="linear"), "retry", "'linear'"),
    ("bad cron", lambda f: f["triggers"][0].update(cron="61 6 * * *"), "cron", "minute field '61'"),
    ("cron field count", lambda f: f["triggers"][0].update(cron="30 6 * *"), "cron", "4 fields"),
    (
        "input name",
        lambda f: f["inputs"][0].update(name=f["inputs"][0].pop("id")),
        "deprecated",
        "'id'",
    ),
    ("BOOLEAN", lambda f: f["inputs"][3].update(type="BOOLEAN"), "deprecated", "now BOOL"),
    ("unknown input type", lambda f: f["inputs"][0].update(type="TEXT"), "input-type", "'TEXT'"),
    ("bad default", lambda f: f["inputs"][3].update(defaults="no"), "input-default", "not a BOOL"),
    (
        "bad validator",
        lambda f: f["inputs"][0].update(validator="^[a-"),
        "input-validator",
        "regex",
    ),
    (
        "required input not given by schedule",
        lambda f: f["inputs"].append({"id": "mode", "type": "STRING"}),
        "schedule-inputs",
        "'mode'",
    ),
    (
        "undeclared input used",
        lambda f: task(f)["env"].update(CHESS_X="{{ inputs.colour }}"),
        "inputs-declared",
        "inputs.colour",
    ),
    (
        "undeclared variable used",
        lambda f: task(f)["env"].update(CHESS_X="{{ vars.schema }}"),
        "vars-declared",
        "vars.schema",
    ),
    (
        "secret not deployed",
        lambda f: task(f)["env"].update(X="{{ secret('SNOWFLAKE_PASSWORD') }}"),
        "secret-provided",
        "no key SNOWFLAKE_PASSWORD",
    ),
    (
        "unpinned image",
        lambda f: task(f).update(containerImage="python:3.11"),
        "image-pinned",
        "python:3.11",
    ),
    (
        "latest image",
        lambda f: task(f).update(containerImage="python:latest"),
        "image-pinned",
        "latest",
    ),
    (
        "untagged image",
        lambda f: task(f).update(containerImage="ghcr.io/astral-sh/uv"),
        "image-pinned",
        "not pinned",
    ),
    (
        "unquoted label",
        lambda f: f["labels"].update({"system.readOnly": True}),
        "labels",
        "quote it",
    ),
    ("concurrency limit", lambda f: f["concurrency"].update(limit=0), "concurrency", "limit 0"),
    (
        "unknown runner property",
        lambda f: task(f)["taskRunner"].update(image="x"),
        "unknown-property",
        "'image'",
    ),
]


@pytest.mark.parametrize(("name", "mutate", "rule", "text"), CASES, ids=[c[0] for c in CASES])
def test_broken_variant_is_rejected(
    tmp_path: Path, name: str, mutate: Mutation, rule: str, text: str
) -> None:
    flow = real_flow()
    mutate(flow)
    violations = rules_for(tmp_path, flow)
    matching = [v for v in violations if v.rule == rule and text in str(v)]
    assert matching, f"{name}: expected [{rule}] mentioning {text!r}, got {violations}"


def test_duplicate_yaml_key_is_reported_with_line(tmp_path: Path) -> None:
    text = FLOW.read_text().replace("    timeout: PT2H\n", "    timeout: PT2H\n    timeout: PT1H\n")
    violations = rules_for(tmp_path, text)
    (dup,) = [v for v in violations if v.rule == "duplicate-key"]
    assert dup.path == "tasks[0].timeout"
    assert text.splitlines()[dup.line - 1].strip() == "timeout: PT1H"


def test_violation_line_points_at_the_bad_value(tmp_path: Path) -> None:
    text = FLOW.read_text().replace('cron: "30 6 * * *"', 'cron: "30 25 * * *"')
    (violation,) = rules_for(tmp_path, text)
    assert "cron:" in text.splitlines()[violation.line - 1]
    assert str(violation).startswith(
        f"{tmp_path / 'flow.yml'}:{violation.line}: triggers[0].cron: [cron]"
    )


def test_invalid_yaml_is_a_violation(tmp_path: Path) -> None:
    (violation,) = rules_for(tmp_path, "id: x\ntasks: [\n")
    assert violation.rule == "yaml"


def test_cli_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("id: x\nnamespace: Bad\ntasks: []\n")
    run = subprocess.run([sys.executable, str(VALIDATOR), str(bad)], capture_output=True, text=True)
    assert run.returncode == 1
    assert "namespace: [namespace-pattern]" in run.stdout
    missing = subprocess.run(
        [sys.executable, str(VALIDATOR), str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_missing_secrets_manifest_is_reported_not_skipped(tmp_path: Path) -> None:
    file = tmp_path / "flow.yml"
    file.write_text(FLOW.read_text())
    violations = validate_flows.validate([file], None)
    assert violations and all(v.rule == "secret-provided" for v in violations)


@pytest.mark.parametrize(
    ("cron", "ok"),
    [
        ("30 6 * * *", True),
        ("*/15 0-6 1,15 JAN-MAR MON-FRI", True),
        ("0 0 L * ?", True),
        ("0 9 * * 1#2", True),
        ("@daily", True),
        ("@sometimes", False),
        ("0 0 32 * *", False),
        ("0 0 * 13 *", False),
        ("5-1 * * * *", False),
        ("*/0 * * * *", False),
    ],
)
def test_cron(cron: str, ok: bool) -> None:
    assert (validate_flows.cron_problems(cron) == []) is ok


def test_include_patterns_are_checked_the_way_kestra_matches_them(tmp_path: Path) -> None:
    """The include that shipped once (`.dlt/config.toml`) matched nothing in Kestra."""
    deployed = validate_flows.deployed_namespace_files()
    assert deployed and "/.dlt/config.toml" in deployed
    flow = real_flow()
    include = task(flow)["namespaceFiles"]["include"]
    include[include.index("/.dlt/config.toml")] = ".dlt/config.toml"
    include.append("no_such_package/**")
    file = tmp_path / "flow.yml"
    file.write_text(yaml.safe_dump(flow, sort_keys=False))
    found = [
        v for v in validate_flows.validate([file], None, deployed) if v.rule == "namespace-files"
    ]
    assert [v.path for v in found] == [
        f"tasks[0].namespaceFiles.include[{include.index('.dlt/config.toml')}]",
        f"tasks[0].namespaceFiles.include[{len(include) - 1}]",
    ]
    assert "write '/.dlt/config.toml'" in found[0].message
    assert "no_such_package/**" in found[1].message and "write" not in found[1].message
    secrets = validate_flows.deployed_secret_names()
    assert validate_flows.validate([FLOW], secrets, deployed) == []
