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

import validate_flows
from tests.conftest import ROOT

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


def errors_task(flow: dict[str, Any]) -> dict[str, Any]:
    """A flow-level `errors:` task (pipeline flows have none: alerting is a shared flow)."""
    slack = {"id": "alert_slack", "type": "io.kestra.plugin.core.log.Log", "message": "failed"}
    return flow.setdefault("errors", [slack])[0]


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
        lambda f: errors_task(f).update(id="load"),
        "unique-id",
        "'load' already used at tasks[0]",
    ),
    (
        "nested duplicate id",
        lambda f: (
            errors_task(f)
            and f["tasks"].append(
                {
                    "id": "wrap",
                    "type": "io.kestra.plugin.core.flow.Sequential",
                    "tasks": [
                        {
                            "id": "alert_slack",
                            "type": "io.kestra.plugin.core.log.Log",
                            "message": "x",
                        }
                    ],
                }
            )
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
        lambda f: errors_task(f).update(
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


# -- every local module a python task imports is picked by its include (issue 20) -----------


def import_rules(tmp_path: Path, flow: dict[str, Any], code_dir: Path | None = None) -> list:
    file = tmp_path / "flow.yml"
    file.write_text(yaml.safe_dump(flow, sort_keys=False))
    doc = validate_flows.load(file)
    return validate_flows.task_import_violations(doc, code_dir or validate_flows.CODE_DIR)


def test_the_chess_flow_picks_everything_its_script_imports(tmp_path: Path) -> None:
    script = validate_flows.CODE_DIR / "dlt-chess-snowflake.py"
    needed = {
        p.relative_to(validate_flows.CODE_DIR).as_posix()
        for p in validate_flows.local_imports(script)
    }
    assert {"dlt-chess-snowflake.py", "warehouse.py", "chess_com/__init__.py"} <= needed
    assert "pipeline_runner/__init__.py" in needed
    assert not any(p.startswith("snowflake/") for p in needed)  # SQL only: not a package
    assert import_rules(tmp_path, real_flow()) == []


@pytest.mark.parametrize(
    ("drop", "named", "pattern"),
    [
        ("chess_com/**", "package 'chess_com'", "'chess_com/**'"),
        ("warehouse.py", "module 'warehouse'", "'warehouse.py'"),
        ("pipeline_runner/**", "package 'pipeline_runner'", "'pipeline_runner/**'"),
        ("dlt-chess-snowflake.py", "runs 'dlt-chess-snowflake.py'", "'dlt-chess-snowflake.py'"),
    ],
)
def test_a_flow_missing_a_local_import_fails_naming_it(
    tmp_path: Path, drop: str, named: str, pattern: str
) -> None:
    """Broken on purpose: the include loses one thing the script imports."""
    flow = real_flow()
    task(flow)["namespaceFiles"]["include"].remove(drop)
    (found,) = import_rules(tmp_path, flow)
    assert found.rule == "namespace-files-imports"
    assert found.path == "tasks[0].namespaceFiles.include"
    assert "'chess-kestra-dlt'" in found.message and "task 'load'" in found.message
    assert named in found.message and f"add {pattern}" in found.message
    # `make validate` (the CLI on pipelines/) reports it too.
    out = subprocess.run(
        [sys.executable, str(VALIDATOR), str(tmp_path / "flow.yml")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1 and "[namespace-files-imports]" in out.stdout


def test_a_narrower_pattern_that_misses_one_module_names_it(tmp_path: Path) -> None:
    flow = real_flow()
    include = task(flow)["namespaceFiles"]["include"]
    include[include.index("pipeline_runner/**")] = "pipeline_runner/__init__.py"
    (found,) = import_rules(tmp_path, flow)
    assert "/pipeline_runner/destination.py" in found.message
    assert "/pipeline_runner/__init__.py" not in found.message  # that one is picked
    assert "add 'pipeline_runner/**'" in found.message


def weather_code(root: Path) -> Path:
    """A second pipeline beside chess: a package with a relative import, a dotted import
    and `from x import submodule`, reached only through the package."""
    code = root / "dlt"
    (code / "weather" / "api").mkdir(parents=True)
    (code / "pipeline_runner").mkdir()
    (code / "pipeline_runner" / "__init__.py").write_text("import json\n")
    (code / "weather" / "__init__.py").write_text(
        "import dlt\nfrom .client import get\n\n\n"
        '@dlt.source(name="weather", section="weather")\ndef weather(): ...\n'
    )
    (code / "weather" / "client.py").write_text("from weather.api import endpoints\n")
    (code / "weather" / "api" / "__init__.py").write_text("")
    (code / "weather" / "api" / "endpoints.py").write_text("import requests\n")
    (code / "weather" / "unused.py").write_text("raise SystemExit\n")
    (code / "units.py").write_text("")
    (code / "dlt-weather.py").write_text(
        "import sys\nimport units\nimport weather.client\n"
        "from pipeline_runner import run_pipeline\n"
    )
    (code / ".dlt").mkdir()
    (code / ".dlt" / "config.toml").write_text('[sources.weather]\ncities = ["Oslo"]\n')
    return code


def weather_flow(*include: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "id": "weather",
        "namespace": "weather.pipelines",
        "tasks": [
            {
                "id": "load",
                "type": "io.kestra.plugin.scripts.python.Commands",
                "namespaceFiles": {"enabled": True, "include": list(include)},
                "commands": ["exec /opt/venv/bin/python dlt-weather.py --destination snowflake"],
                "env": env or {},
            }
        ],
    }


def test_transitive_relative_and_dotted_imports_are_followed(tmp_path: Path) -> None:
    code = weather_code(tmp_path)
    needed = {
        p.relative_to(code).as_posix()
        for p in validate_flows.local_imports(code / "dlt-weather.py")
    }
    assert needed == {
        "dlt-weather.py",
        "units.py",
        "pipeline_runner/__init__.py",
        "weather/__init__.py",
        "weather/client.py",
        "weather/api/__init__.py",
        "weather/api/endpoints.py",
    }
    full = ["dlt-weather.py", "units.py", "pipeline_runner/**", "weather/**", "/.dlt/config.toml"]
    assert import_rules(tmp_path, weather_flow(*full), code) == []
    # Only the files the script really imports count: weather/unused.py is not needed.
    exact = [*full[:3], "weather/__init__.py", "weather/client.py", "weather/api/*.py"]
    assert import_rules(tmp_path, weather_flow(*exact, "/.dlt/config.toml"), code) == []


def test_the_weather_flow_without_its_package_fails_naming_it(tmp_path: Path) -> None:
    """Issue 20: the include lists the script and the runner but not `weather/**`."""
    code = weather_code(tmp_path)
    flow = weather_flow("dlt-weather.py", "units.py", "pipeline_runner/**", "/.dlt/config.toml")
    (found,) = import_rules(tmp_path, flow, code)
    assert "flow 'weather', task 'load'" in found.message
    assert "package 'weather'" in found.message and "add 'weather/**'" in found.message
    assert "/weather/unused.py" not in found.message  # not imported: not needed


def test_settings_of_the_scripts_source_in_config_toml_need_it_picked(tmp_path: Path) -> None:
    code = weather_code(tmp_path)
    flow = weather_flow("dlt-weather.py", "units.py", "pipeline_runner/**", "weather/**")
    (found,) = import_rules(tmp_path, flow, code)
    assert "[sources.weather]: cities" in found.message
    assert "add '/.dlt/config.toml'" in found.message
    # ... unless the task's env gives each of them.
    given = weather_flow(
        *flow["tasks"][0]["namespaceFiles"]["include"], env={"SOURCES__WEATHER__CITIES": '["Oslo"]'}
    )
    assert import_rules(tmp_path, given, code) == []


@pytest.mark.parametrize(
    ("command", "script"),
    [
        ("python dlt-weather.py", "dlt-weather.py"),
        ("exec /opt/venv/bin/python ./dlt-weather.py --destination duckdb", "dlt-weather.py"),
        ("X=1 python3.11 -u -W ignore dlt-weather.py", "dlt-weather.py"),
        ("uv pip install -r requirements.lock && python dlt-weather.py", "dlt-weather.py"),
        ("echo python dlt-weather.py", None),
        ("python -c 'import weather'", None),
    ],
)
def test_python_runs_are_read_as_the_shell_splits_them(command: str, script: str | None) -> None:
    runs = validate_flows.python_runs([command])
    assert [r.script for r in runs] == ([script] if script else [])


def test_tasks_without_python_are_not_checked(tmp_path: Path) -> None:
    flow = {
        "id": "alert-failures",
        "namespace": "system",
        "tasks": [{"id": "log", "type": "io.kestra.plugin.core.log.Log", "message": "x"}],
    }
    assert import_rules(tmp_path, flow) == []


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


# --- the shared alerting flow: Flow trigger and its conditions (Kestra 1.3 rules) ------------

ALERT_FLOW = ROOT / "pipelines" / "alert-pipeline-failures.yml"


def alert_flow() -> dict[str, Any]:
    return yaml.safe_load(ALERT_FLOW.read_text())


def alert_trigger(flow: dict[str, Any]) -> dict[str, Any]:
    return flow["triggers"][0]


def condition(flow: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in alert_trigger(flow)["conditions"] if c["type"].endswith(kind))


def test_the_alerting_flow_is_valid(tmp_path: Path) -> None:
    assert rules_for(tmp_path, alert_flow()) == []
    kinds = [c["type"] for c in alert_trigger(alert_flow())["conditions"]]
    assert kinds == [
        "io.kestra.plugin.core.condition.ExecutionStatus",
        "io.kestra.plugin.core.condition.ExecutionNamespace",
    ]


ALERT_CASES: list[tuple[str, Mutation, str, str]] = [
    ("misspelt state", lambda f: condition(f, "ExecutionStatus").update(**{"in": ["FAILD"]}), "state", "'FAILD'"),
    ("lower-case state", lambda f: condition(f, "ExecutionStatus")["in"].append("failed"), "state", "'failed'"),
    ("misspelt comparison", lambda f: condition(f, "ExecutionNamespace").update(comparison="SUFIX"), "condition", "'SUFIX'"),
    ("no namespace", lambda f: condition(f, "ExecutionNamespace").pop("namespace"), "required", "'namespace'"),
    ("misspelt condition", lambda f: condition(f, "ExecutionStatus").update(type="io.kestra.plugin.core.condition.ExecutionState"), "unknown-type", "ExecutionState"),
    ("misspelt property", lambda f: condition(f, "ExecutionNamespace").update(comparision="SUFFIX"), "unknown-property", "'comparision'"),
    ("status matching all", lambda f: condition(f, "ExecutionStatus").pop("in"), "condition", "matches every state"),
    ("trigger state CREATED", lambda f: alert_trigger(f).update(states=["CREATED"]), "state", "'CREATED'"),
    ("misspelt trigger property", lambda f: alert_trigger(f).update(state=["FAILED"]), "unknown-property", "'state'"),
    ("preconditions without id", lambda f: alert_trigger(f).update(preconditions={"where": []}), "required", "'id'"),
    (
        "precondition filter type",
        lambda f: alert_trigger(f).update(
            preconditions={"id": "p", "where": [{"id": "w", "filters": [{"field": "NAMESPACE", "type": "ENDSWITH", "value": ".pipelines"}]}]}
        ),
        "preconditions",
        "'ENDSWITH'",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "mutate", "rule", "text"), ALERT_CASES, ids=[c[0] for c in ALERT_CASES]
)
def test_broken_alerting_trigger_is_rejected(
    tmp_path: Path, name: str, mutate: Mutation, rule: str, text: str
) -> None:
    flow = alert_flow()
    mutate(flow)
    violations = rules_for(tmp_path, flow)
    matching = [v for v in violations if v.rule == rule and text in str(v)]
    assert matching, f"{name}: expected [{rule}] mentioning {text!r}, got {violations}"


# --- flows are checked with Kestra's instance plugin defaults merged in ----------------------

# The settings every pipeline task repeats, as `kestra.plugins.defaults` would carry them
# (evaluated for issue 20, not deployed: the production HelmRelease sets none today). UV_*
# become uv flags: Micronaut decapitalizes a config map key with < 3 capitals before `_`.
PROPOSED_DEFAULTS = [
    {
        "type": "io.kestra.plugin.scripts.python.Commands",
        "values": {
            # the pin's copy in the flow (tests/test_pins.py checks it), not another copy
            "containerImage": task(real_flow())["containerImage"],
            "taskRunner": {
                "type": "io.kestra.plugin.scripts.runner.docker.Docker",
                "pullPolicy": "IF_NOT_PRESENT",
                "volumes": ["/tmp/kestra-uv-cache:/cache/uv"],
                "killGracePeriod": "PT90S",
            },
            "beforeCommands": [
                "uv venv --quiet /opt/venv",
                "uv pip install --quiet --cache-dir /cache/uv --link-mode copy --python /opt/venv/bin/python --require-hashes --no-deps -r requirements.lock",
            ],
            "env": {
                "KESTRA_EXECUTION_ID": "{{ execution.id }}",
                **{
                    f"DESTINATION__SNOWFLAKE__CREDENTIALS__{key}": f"{{{{ secret('SNOWFLAKE_{key}') }}}}"
                    for key in ("HOST", "USERNAME", "PRIVATE_KEY", "PRIVATE_KEY_PASSPHRASE")
                },
            },
        },
    }
]  # fmt: skip
SHARED = ("containerImage", "taskRunner", "beforeCommands")


def trimmed_flow() -> dict[str, Any]:
    """The chess flow without what PROPOSED_DEFAULTS supplies."""
    flow = real_flow()
    for key in SHARED:
        task(flow).pop(key)
    for key in [*PROPOSED_DEFAULTS[0]["values"]["env"], "UV_CACHE_DIR", "UV_LINK_MODE"]:
        task(flow)["env"].pop(key, None)
    return flow


def with_defaults(tmp_path: Path, flow: dict[str, Any], defaults: list[dict[str, Any]]) -> list:
    file = tmp_path / "flow.yml"
    file.write_text(yaml.safe_dump(flow, sort_keys=False))
    doc = validate_flows.load(file)
    return validate_flows.FlowChecker(
        doc, validate_flows.deployed_secret_names(), None, defaults
    ).check()


def test_production_defaults_are_read_from_the_helmrelease() -> None:
    assert validate_flows.global_plugin_defaults() == []  # none deployed yet


def test_a_flow_relying_on_plugin_defaults_is_checked_with_them(tmp_path: Path) -> None:
    assert with_defaults(tmp_path, trimmed_flow(), PROPOSED_DEFAULTS) == []
    merged = validate_flows.apply_plugin_defaults(trimmed_flow(), PROPOSED_DEFAULTS)
    assert task(merged)["taskRunner"]["killGracePeriod"] == "PT90S"
    assert task(merged)["env"]["CHESS_DATASET"] == "{{ vars.dataset }}", "the flow's own env stays"


@pytest.mark.parametrize(
    ("change", "rule", "text"),
    [
        (lambda v: v.update(containerImage="ghcr.io/astral-sh/uv:latest"), "image-pinned", "not pinned"),
        (lambda v: v["taskRunner"].update(killGracePeriode="PT90S"), "unknown-property", "killGracePeriode"),
        (lambda v: v["env"].update(X="{{ secret('SNOWFLAKE_PASSWORD') }}"), "secret-provided", "SNOWFLAKE_PASSWORD"),
        (lambda v: v.update(image="x"), "unknown-property", "'image'"),
    ],
    ids=["unpinned-image", "runner-typo", "unknown-secret", "unknown-property"],
)  # fmt: skip
def test_a_broken_plugin_default_is_reported_on_the_flows_using_it(
    tmp_path: Path, change: Mutation, rule: str, text: str
) -> None:
    defaults = copy.deepcopy(PROPOSED_DEFAULTS)
    change(defaults[0]["values"])
    violations = with_defaults(tmp_path, trimmed_flow(), defaults)
    assert [v for v in violations if v.rule == rule and text in str(v)], violations


def test_plugin_defaults_merge_as_kestra_merges_them() -> None:
    """PluginDefaultService.defaults + MapUtils.deepMerge: a non-forced default fills what
    the task lacks (maps key by key), lists are extended not replaced, a forced default
    wins, and the type matches by prefix."""
    plugin = {
        "type": "io.kestra.plugin.scripts.python.Commands",
        "env": {"A": "task"},
        "beforeCommands": ["b"],
    }
    soft = {
        "type": "io.kestra.plugin.scripts",
        "values": {"env": {"A": "d", "B": "d"}, "beforeCommands": ["a", "b"]},
    }
    forced = {
        "type": "io.kestra.plugin.scripts.python.Commands",
        "forced": True,
        "values": {"env": {"A": "f"}},
    }
    other = {"type": "io.kestra.plugin.core", "values": {"env": {"C": "d"}}}
    merged = validate_flows.apply_plugin_defaults(plugin, [soft, other])
    assert merged == {**plugin, "env": {"A": "task", "B": "d"}, "beforeCommands": ["a", "b"]}
    assert validate_flows.apply_plugin_defaults(plugin, [forced, soft])["env"] == {
        "A": "f",
        "B": "d",
    }
    assert validate_flows.apply_plugin_defaults({**plugin, "pluginDefaultsRef": "x"}, [soft]) == {
        **plugin,
        "pluginDefaultsRef": "x",
    }
