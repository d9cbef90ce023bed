"""The shared alerting flow (pipelines/alert-pipeline-failures.yml) matched the way Kestra 1.3
matches a Flow trigger against an execution that changed state, and its Slack message as
the task renders it.

Modelled from Kestra 1.3's source (kestra-io/kestra 1.3.25 tree):
- executor/src/main/java/io/kestra/executor/FlowTriggerService.java computeFlowTriggers():
  no trigger from the flow's own executions (core/.../services/FlowService.java
  removeUnwanted: same tenant/namespace/id), only NORMAL executions, disabled flows and
  triggers skipped, the execution's current state must be in the trigger's `states`
  (core/.../plugin/core/trigger/Flow.java: default `State.Type.terminatedTypes()` + PAUSED),
  then every non-multiple condition must hold (ConditionService.valid: allMatch, an
  exception is logged and counts as false). With no `preconditions`, that is all
  (computeExecutionsFromFlowTriggerConditions).
- core/.../plugin/core/condition/ExecutionStatus.java test(): `in` non-empty and the state
  not in it -> false; `notIn` non-empty and the state in it -> false. The lists are
  converted to State.Type at evaluation (render(...).asList(State.Type.class)): an unknown
  name throws, hence false.
- core/.../plugin/core/condition/ExecutionNamespace.java test(): `comparison` (EQUALS
  String::equals, PREFIX String::startsWith, SUFFIX String::endsWith), else PREFIX when
  `prefix: true`, else EQUALS; an unknown comparison throws, hence false.
- core/.../models/flows/State.java Type.isTerminated().
- The new execution's `trigger` variables are Flow.Output (executionId, namespace, flowId,
  flowRevision, state, executionLabels, outputs: trigger/Flow.java evaluate(), exposed by
  core/.../runners/RunVariables.java as `trigger`); the Slack task (plugin-slack
  SlackIncomingWebhook) renders `payload` and posts it as the request body.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

ALERT = ROOT / "pipelines" / "alert-pipeline-failures.yml"
RELEASE = ROOT / "k8s" / "infrastructure" / "kestra" / "release.yaml"

# State.java State.Type, in declaration order, and isTerminated().
STATE_TYPES = (
    "CREATED SUBMITTED RUNNING PAUSED RESTARTED KILLING SUCCESS WARNING FAILED KILLED "
    "CANCELLED QUEUED RETRYING RETRIED SKIPPED BREAKPOINT RESUBMITTED"
).split()
TERMINATED = {
    "FAILED",
    "WARNING",
    "SUCCESS",
    "KILLED",
    "CANCELLED",
    "RETRIED",
    "SKIPPED",
    "RESUBMITTED",
}
DEFAULT_FLOW_TRIGGER_STATES = [s for s in STATE_TYPES if s in TERMINATED] + ["PAUSED"]


class IllegalCondition(Exception):
    """What Kestra throws evaluating a condition (caught by ConditionService.valid)."""


@dataclass
class Execution:
    namespace: str
    flow_id: str
    state: str
    id: str = "5fTqWb1kZx9Lr2Mn"
    kind: str | None = None  # ExecutionKind: null or NORMAL is a normal execution
    tenant: str = "main"
    labels: dict[str, str] = field(default_factory=dict)


def as_states(value: Any) -> list[str]:
    """Property<List<State.Type>> rendered as a list of State.Type (Jackson enum names)."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    for item in items:
        if item not in STATE_TYPES:
            raise IllegalCondition(f"Cannot deserialize value of type `State$Type` from {item!r}")
    return list(items)


def execution_status(condition: dict[str, Any], execution: Execution) -> bool:
    states_in, states_not_in = as_states(condition.get("in")), as_states(condition.get("notIn"))
    result = True
    if states_in and execution.state not in states_in:
        result = False
    if states_not_in and execution.state in states_not_in:
        result = False
    return result


COMPARISONS = {
    "EQUALS": lambda actual, matcher: actual == matcher,
    "PREFIX": lambda actual, matcher: actual.startswith(matcher),
    "SUFFIX": lambda actual, matcher: actual.endswith(matcher),
}


def execution_namespace(condition: dict[str, Any], execution: Execution) -> bool:
    if condition.get("namespace") is None:
        raise IllegalCondition("namespace is null")  # @NotNull: rejected when saved
    comparison = condition.get("comparison")
    if comparison is None:
        comparison = "PREFIX" if condition.get("prefix") is True else "EQUALS"
    if comparison not in COMPARISONS:
        raise IllegalCondition(f"No enum constant ExecutionNamespace.Comparison.{comparison}")
    return COMPARISONS[comparison](execution.namespace, str(condition["namespace"]))


CONDITIONS = {
    "io.kestra.plugin.core.condition.ExecutionStatus": execution_status,
    "io.kestra.plugin.core.condition.ExecutionNamespace": execution_namespace,
}


def condition_holds(condition: dict[str, Any], execution: Execution) -> bool:
    """ConditionService.valid for one condition: an exception is logged and is false."""
    try:
        return CONDITIONS[condition["type"]](condition, execution)
    except IllegalCondition:
        return False


def fires(flow: dict[str, Any], execution: Execution) -> list[str]:
    """Ids of the flow's Flow triggers that create an execution for this state change."""
    if (flow["namespace"], flow["id"]) == (execution.namespace, execution.flow_id):
        return []  # FlowService.removeUnwanted: never recursive
    if execution.kind not in (None, "NORMAL") or flow.get("disabled"):
        return []
    fired = []
    for trigger in flow.get("triggers") or []:
        if trigger["type"] != "io.kestra.plugin.core.trigger.Flow" or trigger.get("disabled"):
            continue
        assert "preconditions" not in trigger, "preconditions are not modelled here"
        if execution.state not in trigger.get("states", DEFAULT_FLOW_TRIGGER_STATES):
            continue
        if all(condition_holds(c, execution) for c in trigger.get("conditions") or []):
            fired.append(trigger["id"])
    return fired


def alert_flow() -> dict[str, Any]:
    return yaml.safe_load(ALERT.read_text())


# --- which executions alert ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("namespace", "flow_id", "state", "alerts"),
    [
        ("chess.pipelines", "chess-kestra-dlt", "FAILED", True),
        ("chess.pipelines", "chess-kestra-dlt", "WARNING", True),
        ("weather.pipelines", "weather-hourly", "FAILED", True),
        ("chess.pipelines", "chess-kestra-dlt", "SUCCESS", False),
        ("chess.pipelines", "chess-kestra-dlt", "RUNNING", False),
        ("chess.pipelines", "chess-kestra-dlt", "KILLED", False),
        ("chess.pipelines.sandbox", "x", "FAILED", False),
        ("pipelines", "x", "FAILED", False),
        ("chesspipelines", "x", "FAILED", False),
        ("system", "alert-pipeline-failures", "FAILED", False),
        ("system", "purge-logs", "FAILED", False),
    ],
)  # fmt: skip
def test_the_alert_fires_for_failed_pipeline_executions_only(
    namespace: str, flow_id: str, state: str, alerts: bool
) -> None:
    flow = alert_flow()
    fired = fires(flow, Execution(namespace, flow_id, state))
    assert fired == (["pipeline-failed"] if alerts else [])


def test_the_alerting_flow_cannot_alert_on_itself() -> None:
    """Two reasons, either enough: `system` does not end in `.pipelines`, and Kestra never
    triggers a flow from its own executions."""
    flow = alert_flow()
    assert not flow["namespace"].endswith(".pipelines")
    own = Execution(flow["namespace"], flow["id"], "FAILED")
    assert fires(flow, own) == []
    widened = alert_flow()
    for c in widened["triggers"][0]["conditions"]:
        if c["type"].endswith("ExecutionNamespace"):
            c.update(namespace="", comparison="PREFIX")  # every namespace
    assert fires(widened, Execution("chess.pipelines", "chess-kestra-dlt", "FAILED"))
    assert fires(widened, own) == [], "removeUnwanted"


def test_every_pipeline_flow_is_covered_and_carries_no_errors_branch() -> None:
    """Each flow of pipelines/ in a `*.pipelines` namespace alerts through the shared flow
    (a FAILED execution of it fires the trigger) instead of its own `errors:` branch."""
    alert = alert_flow()
    pipelines = [
        yaml.safe_load(p.read_text())
        for p in sorted((ROOT / "pipelines").glob("*.yml"))
        if p != ALERT
    ]
    assert pipelines
    for flow in pipelines:
        assert flow["namespace"].endswith(".pipelines"), flow["id"]
        assert "errors" not in flow, f"{flow['id']}: alerting is the shared flow's job"
        assert fires(alert, Execution(flow["namespace"], flow["id"], "FAILED"))


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"in": ["FAILD"]}, "an unknown state throws when evaluated: no alert, ever"),
        ({"comparison": "SUFIX"}, "an unknown comparison throws when evaluated"),
        ({"comparison": None}, "no comparison: EQUALS, and no namespace equals `.pipelines`"),
    ],
    ids=["misspelt-state", "misspelt-comparison", "equals"],
)
def test_a_broken_condition_silently_never_fires(change: dict[str, Any], why: str) -> None:
    flow = alert_flow()
    for c in flow["triggers"][0]["conditions"]:
        if set(change) & ({"in"} if c["type"].endswith("Status") else {"comparison"}):
            c.update(change)
            if "comparison" in c and c["comparison"] is None:
                del c["comparison"]
    assert fires(flow, Execution("chess.pipelines", "chess-kestra-dlt", "FAILED")) == [], why


# --- what it posts ---------------------------------------------------------------------------

EXPRESSION = re.compile(r"\{\{\s*(.*?)\s*\}\}")


def render(text: str, variables: dict[str, Any], secrets: dict[str, str]) -> str:
    """The expressions the alert flow uses: `scope.name` and `secret('NAME')` (Pebble
    strict variables: an undefined one fails the task)."""

    def one(match: re.Match[str]) -> str:
        expression = match.group(1)
        secret = re.fullmatch(r"secret\('([^']+)'\)", expression)
        if secret:
            return secrets[secret.group(1)]
        scope, _, name = expression.partition(".")
        if not re.fullmatch(r"\w+", name) or name not in variables.get(scope, {}):
            raise KeyError(f"unknown variable {expression!r}")
        return str(variables[scope][name])

    return EXPRESSION.sub(one, text)


def trigger_output(execution: Execution) -> dict[str, Any]:
    """trigger/Flow.java Flow.Output of the execution that ended."""
    return {
        "executionId": execution.id,
        "executionLabels": execution.labels,
        "namespace": execution.namespace,
        "flowId": execution.flow_id,
        "flowRevision": 3,
        "state": execution.state,
        "outputs": {},
    }


def slack_request(execution: Execution) -> tuple[str, dict[str, Any]]:
    flow = alert_flow()
    (task,) = flow["tasks"]
    assert task["type"] == "io.kestra.plugin.slack.notifications.SlackIncomingWebhook"
    variables = {
        "trigger": trigger_output(execution),
        "vars": flow.get("variables", {}),
        "flow": {"id": flow["id"], "namespace": flow["namespace"]},
        "execution": {"id": "alertExec000001"},
    }
    secrets = {"SLACK_WEBHOOK_URL": "https://hooks.slack.example/T/B/x"}
    url = render(task["url"], variables, secrets)
    return url, json.loads(render(task["payload"], variables, secrets))


@pytest.mark.parametrize("namespace", ["chess.pipelines", "weather.pipelines"])
def test_the_slack_message_links_the_failed_execution(namespace: str) -> None:
    failed = Execution(namespace, "some-flow", "FAILED", id="7hGxQpL3mN8vR1sT")
    url, payload = slack_request(failed)
    assert url == "https://hooks.slack.example/T/B/x"
    text = payload["text"]
    link = f"https://kestra.example.com/ui/main/executions/{namespace}/some-flow/7hGxQpL3mN8vR1sT"
    assert link in text and f"{namespace}.some-flow ended FAILED" in text
    assert "alertExec000001" not in text, "the failed execution, not the alert's own"


def test_the_alert_links_into_the_deployed_kestra() -> None:
    release = yaml.safe_load(RELEASE.read_text())
    kestra_url = release["spec"]["values"]["configurations"]["application"]["kestra"]["url"]
    assert alert_flow()["variables"]["ui_url"] == kestra_url.rstrip("/")
