#!/usr/bin/env python
"""Offline validator for Kestra flows: `python tools/validate_flows.py PATH...`.

Checks what Kestra 1.x's own validation enforces (required fields, id and namespace
patterns, unique ids, duplicate YAML keys, unknown properties of known types, ISO-8601
durations, retry constraints, cron syntax, input types), what Kestra 2.0 removes
(deprecated aliases), and this project's cross-checks: every `inputs.x` / `vars.x` used
is declared, every `secret('X')` is provided by the deployment's Kestra secrets
manifest, container images are pinned, and each `python <script>.py` task's
`namespaceFiles.include` picks the script and every local module it imports
(`task_import_violations`).

Prints `file:line: yaml.path: [rule] message` per violation; exits 1 if any, 2 on
usage errors. The real `kestra flow validate` runs in CI (.github/workflows/ci.yml).
"""

from __future__ import annotations

import argparse
import ast
import copy
import functools
import re
import shlex
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kestra_files
import kestra_rules as rules
import manifests

ROOT = Path(__file__).resolve().parent.parent
# One source of truth for secret names: the Secret Kestra reads as SECRET_<NAME> env vars.
SECRETS_MANIFEST = ROOT / "k8s" / "infrastructure" / "production" / "kestra-secrets.sops.yaml"
# What the flows' namespace files are made of (tools/manifests.py): scripts and their imports.
CODE_DIR = ROOT / "pipelines" / "dlt"

EXPR_INPUT = re.compile(r"inputs\.([A-Za-z0-9_-]+)|inputs\[\s*['\"]([^'\"]+)['\"]\s*\]")
EXPR_VAR = re.compile(r"vars\.([A-Za-z0-9_-]+)")
EXPR_SECRET = re.compile(r"secret\(\s*['\"]([^'\"]+)['\"]\s*\)")


@dataclass(frozen=True)
class Violation:
    file: str
    line: int
    path: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.path or '<flow>'}: [{self.rule}] {self.message}"


@dataclass
class Document:
    """A parsed YAML file with the line of every path, for precise messages."""

    file: str
    data: Any
    lines: dict[str, int] = field(default_factory=dict)
    duplicates: list[tuple[str, int]] = field(default_factory=list)

    def line_of(self, path: str) -> int:
        while path and path not in self.lines:
            path = re.sub(r"(\.[^.\[]+|\[\d+\])$", "", path)
        return self.lines.get(path, 1)


def join(path: str, key: object) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def load(file: Path) -> Document:
    """Parse keeping line numbers and catching duplicate keys (PyYAML keeps the last)."""
    text = file.read_text()
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    constructor = yaml.SafeLoader("")
    doc = Document(str(file), None)

    def convert(node: yaml.Node, path: str) -> Any:
        doc.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = constructor.construct_object(key_node, deep=True)
                if key in result:
                    doc.duplicates.append((join(path, key), key_node.start_mark.line + 1))
                result[key] = convert(value_node, join(path, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [convert(item, join(path, i)) for i, item in enumerate(node.value)]
        return constructor.construct_object(node, deep=True)

    doc.data = convert(node, "") if node is not None else None
    return doc


def deployed_secret_names(manifest: Path = SECRETS_MANIFEST) -> set[str] | None:
    """Secret names Kestra will know: the keys of the deployment's Secret, which the
    HelmRelease loads with envFrom prefix SECRET_ (Kestra reads SECRET_<NAME>)."""
    if not manifest.exists():
        return None
    names: set[str] = set()
    for obj in yaml.safe_load_all(manifest.read_text()):
        if obj and obj.get("kind") == "Secret":
            for section in ("data", "stringData"):
                names.update(obj.get(section) or {})
    return names


def strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string in a value with its path (expressions live in strings)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, join(path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from strings(item, join(path, i))


class FlowChecker:
    def __init__(
        self,
        doc: Document,
        secrets: set[str] | None,
        namespace_files: list[str] | None = None,
        plugin_defaults: list[dict[str, Any]] | None = None,
    ) -> None:
        self.doc = doc
        self.secrets = secrets
        # Stored paths (`/chess_com/x.py`) the deployment gives the flow's namespace.
        self.namespace_files = namespace_files
        # Kestra's instance-level `kestra.plugins.defaults` (None: the production HelmRelease's).
        self.plugin_defaults = (
            global_plugin_defaults() if plugin_defaults is None else plugin_defaults
        )
        self.violations: list[Violation] = []

    def report(self, path: str, rule: str, message: str) -> None:
        self.violations.append(
            Violation(self.doc.file, self.doc.line_of(path), path, rule, message)
        )

    def check(self) -> list[Violation]:
        for path, line in self.doc.duplicates:
            self.violations.append(
                Violation(self.doc.file, line, path, "duplicate-key", "key appears twice")
            )
        flow = self.doc.data
        if not isinstance(flow, dict):
            self.report("", "flow-structure", "a flow must be a YAML mapping")
            return self.violations
        # Checked as Kestra runs it: with the instance's plugin defaults merged in, so a
        # property a default supplies (image, runner, secrets) is checked too.
        self.check_flow(apply_plugin_defaults(flow, self.plugin_defaults))
        return self.violations

    # -- flow level -------------------------------------------------------------------
    def check_flow(self, flow: dict[str, Any]) -> None:
        for key in ("id", "namespace", "tasks"):
            if key not in flow:
                self.report("", "required", f"missing required property {key!r}")
        for key in flow:
            if key in rules.DEPRECATED_PROPERTIES:
                self.report(key, "deprecated", rules.DEPRECATED_PROPERTIES[key])
            elif key not in rules.FLOW_PROPERTIES:
                self.report(key, "unknown-property", f"unknown flow property {key!r}")
        self.check_pattern(flow, "id", rules.FLOW_ID, "id")
        self.check_pattern(flow, "namespace", rules.NAMESPACE, "namespace")
        if "tasks" in flow and not (isinstance(flow["tasks"], list) and flow["tasks"]):
            self.report("tasks", "required", "tasks must be a non-empty list")
        self.check_labels(flow.get("labels"))
        inputs = self.check_inputs(flow.get("inputs"))
        seen: dict[str, str] = {}
        for key in ("tasks", "errors", "finally", "afterExecution"):
            self.check_tasks(flow.get(key), key, seen)
        self.check_triggers(flow.get("triggers"), inputs)
        if "retry" in flow:
            self.check_retry(flow["retry"], "retry")
        self.check_concurrency(flow.get("concurrency"))
        self.check_sla(flow.get("sla"))
        self.check_references(flow, inputs)

    def check_pattern(
        self, obj: dict[str, Any], key: str, pattern: re.Pattern[str], what: str, path: str = ""
    ) -> None:
        value = obj.get(key)
        if value is None:
            return
        if not isinstance(value, str) or not pattern.match(value):
            self.report(
                join(path, key), f"{what}-pattern", f"{value!r} does not match {pattern.pattern}"
            )

    def check_labels(self, labels: Any) -> None:
        if labels is None:
            return
        if not isinstance(labels, dict):
            self.report("labels", "labels", "labels must be a mapping of strings")
            return
        for key, value in labels.items():
            if not isinstance(value, str):
                self.report(
                    join("labels", key),
                    "labels",
                    f"label value {value!r} is a {type(value).__name__}: quote it",
                )

    def check_inputs(self, inputs: Any) -> dict[str, dict[str, Any]]:
        declared: dict[str, dict[str, Any]] = {}
        if inputs is None:
            return declared
        if not isinstance(inputs, list):
            self.report("inputs", "inputs", "inputs must be a list")
            return declared
        for i, item in enumerate(inputs):
            path = join("inputs", i)
            if not isinstance(item, dict):
                self.report(path, "inputs", "an input must be a mapping")
                continue
            if "name" in item and "id" not in item:
                self.report(join(path, "name"), "deprecated", "inputs use 'id', not 'name'")
            input_id = item.get("id") or item.get("name")
            if input_id is None:
                self.report(path, "required", "input without 'id'")
                continue
            self.check_pattern(item, "id", rules.INPUT_ID, "input-id", path)
            if input_id in declared:
                self.report(join(path, "id"), "unique-id", f"input {input_id!r} declared twice")
            declared[str(input_id)] = item
            kind = item.get("type")
            if kind in rules.DEPRECATED_INPUT_TYPES:
                new = rules.DEPRECATED_INPUT_TYPES[kind]
                self.report(join(path, "type"), "deprecated", f"input type {kind} is now {new}")
            elif kind not in rules.INPUT_TYPES:
                self.report(join(path, "type"), "input-type", f"unknown input type {kind!r}")
            for key in item:
                if key not in rules.INPUT_PROPERTIES and key != "name":
                    self.report(
                        join(path, key), "unknown-property", f"unknown input property {key!r}"
                    )
            self.check_input_value(item, path)
        return declared

    def check_input_value(self, item: dict[str, Any], path: str) -> None:
        validator = item.get("validator")
        if validator is not None:
            try:
                re.compile(str(validator))
            except re.error as exc:
                self.report(join(path, "validator"), "input-validator", f"invalid regex: {exc}")
        default = item.get("defaults")
        kind = item.get("type")
        if default is None or (isinstance(default, str) and "{{" in default):
            return
        expected = {"BOOL": bool, "INT": int, "FLOAT": (int, float), "STRING": str}.get(kind)
        if expected and (not isinstance(default, expected) or (kind == "INT" and default is True)):
            self.report(join(path, "defaults"), "input-default", f"{default!r} is not a {kind}")
        elif kind == "STRING" and validator and not re.fullmatch(str(validator), default):
            self.report(join(path, "defaults"), "input-default", f"{default!r} fails its validator")

    # -- tasks ------------------------------------------------------------------------
    def check_tasks(self, tasks: Any, path: str, seen: dict[str, str]) -> None:
        if tasks is None:
            return
        if not isinstance(tasks, list):
            self.report(path, "tasks", f"{path} must be a list of tasks")
            return
        for i, task in enumerate(tasks):
            task_path = join(path, i)
            if not isinstance(task, dict):
                self.report(task_path, "tasks", "a task must be a mapping")
                continue
            self.check_component(task, task_path, seen, "task")
            for key in rules.NESTED_TASK_KEYS:
                if key in task:
                    self.check_tasks(task[key], join(task_path, key), seen)

    def check_component(
        self, obj: dict[str, Any], path: str, seen: dict[str, str], what: str
    ) -> None:
        """Checks shared by tasks and triggers: id, type, properties, durations, retry."""
        obj_id = obj.get("id")
        if obj_id is None:
            self.report(path, "required", f"{what} without 'id'")
        else:
            self.check_pattern(obj, "id", rules.TASK_ID, f"{what}-id", path)
            if obj_id in seen:
                self.report(
                    join(path, "id"), "unique-id", f"id {obj_id!r} already used at {seen[obj_id]}"
                )
            else:
                seen[obj_id] = path
        kind = obj.get("type")
        if kind is None:
            self.report(path, "required", f"{what} without 'type'")
            return
        if kind in rules.DEPRECATED_TYPES:
            self.report(
                join(path, "type"),
                "deprecated",
                f"{kind} is an alias removed in Kestra 2.0: use {rules.DEPRECATED_TYPES[kind]}",
            )
            return
        allowed = rules.KNOWN_TYPES.get(kind)
        if allowed is None:
            self.report(join(path, "type"), "unknown-type", f"{kind} is unknown to the validator")
            return
        for key in obj:
            if key in rules.DEPRECATED_PROPERTIES:
                self.report(join(path, key), "deprecated", rules.DEPRECATED_PROPERTIES[key])
            elif key not in allowed:
                self.report(join(path, key), "unknown-property", f"{kind} has no property {key!r}")
        if "timeout" in obj:
            self.check_duration(obj["timeout"], join(path, "timeout"))
        if "retry" in obj:
            self.check_retry(obj["retry"], join(path, "retry"))
        if "containerImage" in obj:
            self.check_image(obj["containerImage"], join(path, "containerImage"))
        if "taskRunner" in obj:
            self.check_task_runner(obj["taskRunner"], join(path, "taskRunner"))
        if isinstance(obj.get("namespaceFiles"), dict):
            for key in obj["namespaceFiles"]:
                if key not in rules.NAMESPACE_FILES:
                    self.report(
                        join(join(path, "namespaceFiles"), key),
                        "unknown-property",
                        f"namespaceFiles has no property {key!r}",
                    )
            self.check_namespace_files(obj["namespaceFiles"], join(path, "namespaceFiles"))

    def check_namespace_files(self, spec: dict[str, Any], path: str) -> None:
        """Each include pattern picks at least one deployed file, as Kestra matches them."""
        if self.namespace_files is None or spec.get("enabled") is False:
            return
        include = spec.get("include") or []
        for i, pattern in enumerate(include if isinstance(include, list) else []):
            if not isinstance(pattern, str) or "{{" in pattern:
                continue
            if kestra_files.select(self.namespace_files, [pattern], None):
                continue
            hint = ""
            if kestra_files.select(self.namespace_files, ["/" + pattern], None):
                hint = (
                    f": Kestra stores it as '/{pattern}' and adds '**/' only to patterns "
                    f"that start with a letter or digit; write '/{pattern}'"
                )
            self.report(
                join(join(path, "include"), i),
                "namespace-files",
                f"{pattern!r} matches none of the {len(self.namespace_files)} files deployed "
                f"from pipelines/dlt/{hint}",
            )

    def check_task_runner(self, runner: Any, path: str) -> None:
        if not isinstance(runner, dict) or runner.get("type") not in rules.TASK_RUNNER_TYPES:
            kind = runner.get("type") if isinstance(runner, dict) else runner
            self.report(path, "unknown-type", f"task runner {kind!r} is unknown to the validator")
            return
        for key in runner:
            if key not in rules.KNOWN_TYPES[runner["type"]]:
                self.report(
                    join(path, key), "unknown-property", f"task runner has no property {key!r}"
                )

    def check_image(self, image: Any, path: str) -> None:
        if not isinstance(image, str) or "{{" in image:
            return
        if not (rules.IMAGE_DIGEST.search(image) or rules.IMAGE_TAG_PINNED.match(image)):
            self.report(
                path,
                "image-pinned",
                f"{image!r} is not pinned: use an exact x.y.z version tag or a digest",
            )

    def check_duration(self, value: Any, path: str) -> None:
        if isinstance(value, str) and "{{" in value:
            return
        if not isinstance(value, str) or not rules.DURATION.match(value):
            self.report(
                path, "duration", f"{value!r} is not an ISO-8601 duration (e.g. PT30M, P1DT2H)"
            )

    def check_retry(self, retry: Any, path: str) -> None:
        if not isinstance(retry, dict):
            self.report(path, "retry", "retry must be a mapping")
            return
        kind = retry.get("type")
        if kind not in rules.RETRY_TYPES:
            self.report(
                join(path, "type"),
                "retry",
                f"retry type {kind!r}: use constant, exponential or random",
            )
            return
        allowed = rules.RETRY_COMMON | rules.RETRY_TYPES[kind]
        for key in retry:
            if key in rules.DEPRECATED_PROPERTIES:
                self.report(join(path, key), "deprecated", rules.DEPRECATED_PROPERTIES[key])
            elif key not in allowed:
                self.report(
                    join(path, key), "unknown-property", f"{kind} retry has no property {key!r}"
                )
        for key in rules.RETRY_DURATIONS:
            if key in retry:
                self.check_duration(retry[key], join(path, key))
        attempts = retry.get("maxAttempts")
        if attempts is not None and (not isinstance(attempts, int) or attempts < 1):
            self.report(
                join(path, "maxAttempts"), "retry", f"maxAttempts {attempts!r} must be >= 1"
            )
        for key in rules.RETRY_REQUIRED[kind]:
            if key not in retry:
                self.report(path, "retry", f"{kind} retry needs {key!r}")
        if kind == "constant":
            return
        low, high = rules.RETRY_REQUIRED[kind]  # the interval must be below the maximum
        lo, hi = seconds(retry.get(low)), seconds(retry.get(high))
        if lo is not None and hi is not None and lo >= hi:
            self.report(
                join(path, low), "retry", f"{low} {retry[low]} must be < {high} {retry[high]}"
            )

    def check_concurrency(self, concurrency: Any) -> None:
        if concurrency is None:
            return
        if not isinstance(concurrency, dict):
            self.report("concurrency", "concurrency", "concurrency must be a mapping")
            return
        limit = concurrency.get("limit")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            self.report(
                "concurrency.limit", "concurrency", f"limit {limit!r} must be an integer >= 1"
            )
        behavior = concurrency.get("behavior", "QUEUE")
        if behavior not in rules.CONCURRENCY_BEHAVIORS:
            self.report("concurrency.behavior", "concurrency", f"unknown behavior {behavior!r}")

    def check_sla(self, sla: Any) -> None:
        """Kestra 1.3 core/.../models/flows/sla/SLA.java: `id`, `type` (MAX_DURATION needs
        `duration`, EXECUTION_ASSERTION needs `assert`) and `behavior` are required."""
        if sla is None:
            return
        if not isinstance(sla, list):
            self.report("sla", "sla", "sla must be a list")
            return
        for i, item in enumerate(sla):
            path = f"sla[{i}]"
            if not isinstance(item, dict):
                self.report(path, "sla", "an SLA must be a mapping")
                continue
            for key in ("id", "type", "behavior"):
                if key not in item:
                    self.report(path, "sla", f"missing required property {key!r}")
            kind = item.get("type")
            if kind not in rules.SLA_TYPES and kind is not None:
                self.report(join(path, "type"), "sla", f"unknown SLA type {kind!r}")
            if item.get("behavior") not in rules.SLA_BEHAVIORS and "behavior" in item:
                self.report(join(path, "behavior"), "sla", f"unknown behavior {item['behavior']!r}")
            needed = rules.SLA_TYPES.get(kind)
            if needed and needed not in item:
                self.report(path, "sla", f"a {kind} SLA needs {needed!r}")
            extra = set(item) - {"id", "type", "behavior", "labels", *rules.SLA_TYPES.values()}
            for key in sorted(extra):
                self.report(join(path, key), "unknown-property", f"unknown SLA property {key!r}")
            if kind == "MAX_DURATION" and "duration" in item:
                self.check_duration(item["duration"], join(path, "duration"))

    # -- triggers ---------------------------------------------------------------------
    def check_triggers(self, triggers: Any, inputs: dict[str, dict[str, Any]]) -> None:
        if triggers is None:
            return
        if not isinstance(triggers, list):
            self.report("triggers", "triggers", "triggers must be a list")
            return
        seen: dict[str, str] = {}
        for i, trigger in enumerate(triggers):
            path = join("triggers", i)
            if not isinstance(trigger, dict):
                self.report(path, "triggers", "a trigger must be a mapping")
                continue
            self.check_component(trigger, path, seen, "trigger")
            if trigger.get("type") == "io.kestra.plugin.core.trigger.Schedule":
                self.check_schedule(trigger, path, inputs)
            if trigger.get("type") == "io.kestra.plugin.core.trigger.Flow":
                self.check_flow_trigger(trigger, path)
            if "conditions" in trigger:
                self.check_conditions(trigger["conditions"], join(path, "conditions"))

    def check_states(self, states: Any, path: str, allowed: set[str]) -> None:
        """A list of State.Type names (an expression is checked by Kestra at run time)."""
        if isinstance(states, str) and "{{" in states:
            return
        if not isinstance(states, list):
            self.report(path, "state", "must be a list of execution states")
            return
        for i, state in enumerate(states):
            if isinstance(state, str) and "{{" in state:
                continue
            if state not in allowed:
                self.report(
                    join(path, i),
                    "state",
                    f"{state!r} is not an execution state here (one of {', '.join(sorted(allowed))})",
                )

    def check_flow_trigger(self, trigger: dict[str, Any], path: str) -> None:
        """Kestra 1.3 core/.../plugin/core/trigger/Flow.java: `states` (default every
        terminal state and PAUSED; never CREATED), `preconditions` (Preconditions: `id`
        required, matching TASK_ID; `where` filters with their enums)."""
        if "states" in trigger:
            self.check_states(trigger["states"], join(path, "states"), rules.FLOW_TRIGGER_STATES)
        pre = trigger.get("preconditions")
        if pre is None:
            return
        pre_path = join(path, "preconditions")
        if not isinstance(pre, dict):
            self.report(pre_path, "preconditions", "preconditions must be a mapping")
            return
        for key in pre:
            if key not in rules.PRECONDITION_PROPERTIES:
                self.report(
                    join(pre_path, key), "unknown-property", f"preconditions has no {key!r}"
                )
        if "id" not in pre:
            self.report(pre_path, "required", "preconditions need an 'id'")
        else:
            self.check_pattern(pre, "id", rules.TASK_ID, "preconditions-id", pre_path)
        for i, upstream in enumerate(pre.get("flows") or []):
            if isinstance(upstream, dict) and "states" in upstream:
                self.check_states(
                    upstream["states"],
                    join(join(join(pre_path, "flows"), i), "states"),
                    rules.STATE_TYPES,
                )
        for i, where in enumerate(pre.get("where") or []):
            where_path = join(join(pre_path, "where"), i)
            if not isinstance(where, dict) or "id" not in where or not where.get("filters"):
                self.report(where_path, "required", "a `where` entry needs 'id' and 'filters'")
                continue
            for j, item in enumerate(where["filters"]):
                item_path = join(join(where_path, "filters"), j)
                item = item if isinstance(item, dict) else {}
                if item.get("field") not in rules.PRECONDITION_FILTER_FIELDS:
                    self.report(item_path, "preconditions", f"unknown field {item.get('field')!r}")
                if item.get("type") not in rules.PRECONDITION_FILTER_TYPES:
                    self.report(item_path, "preconditions", f"unknown type {item.get('type')!r}")

    def check_conditions(self, conditions: Any, path: str) -> None:
        """Each condition's type is known, with its properties, required ones and enums
        (kestra_rules.CONDITION_TYPES, from core/.../plugin/core/condition/*.java)."""
        if not isinstance(conditions, list):
            self.report(path, "conditions", "conditions must be a list")
            return
        for i, condition in enumerate(conditions):
            cond_path = join(path, i)
            if not isinstance(condition, dict) or "type" not in condition:
                self.report(cond_path, "required", "a condition needs a 'type'")
                continue
            kind = condition["type"]
            if kind not in rules.CONDITION_TYPES:
                self.report(
                    join(cond_path, "type"), "unknown-type", f"{kind} is unknown to the validator"
                )
                continue
            allowed, required, enums = rules.CONDITION_TYPES[kind]
            for key in condition:
                if key not in allowed:
                    self.report(
                        join(cond_path, key), "unknown-property", f"{kind} has no property {key!r}"
                    )
            for key in sorted(required - set(condition)):
                self.report(cond_path, "required", f"{kind} needs {key!r}")
            for key, values in enums.items():
                if key not in condition:
                    continue
                value = condition[key]
                if isinstance(value, list):
                    self.check_states(value, join(cond_path, key), values)
                elif not (isinstance(value, str) and "{{" in value) and value not in values:
                    self.report(
                        join(cond_path, key),
                        "condition",
                        f"{key} {value!r} is not one of {', '.join(sorted(values))}",
                    )
            if (
                kind.endswith(".ExecutionStatus")
                and not condition.get("in")
                and not condition.get("notIn")
            ):
                self.report(
                    cond_path,
                    "condition",
                    "ExecutionStatus without `in` or `notIn` matches every state",
                )

    def check_schedule(
        self, trigger: dict[str, Any], path: str, inputs: dict[str, dict[str, Any]]
    ) -> None:
        cron = trigger.get("cron")
        if cron is None:
            self.report(path, "required", "Schedule needs 'cron'")
        else:
            for problem in cron_problems(str(cron), bool(trigger.get("withSeconds"))):
                self.report(join(path, "cron"), "cron", problem)
        given = trigger.get("inputs") or {}
        for name in given:
            if name not in inputs:
                self.report(
                    join(join(path, "inputs"), name),
                    "inputs-declared",
                    f"input {name!r} is not declared",
                )
        for name, spec in inputs.items():
            if spec.get("required", True) and "defaults" not in spec and name not in given:
                self.report(
                    join(path, "inputs"),
                    "schedule-inputs",
                    f"required input {name!r} has no default: the schedule must supply it",
                )

    # -- project cross-checks ---------------------------------------------------------
    def check_references(self, flow: dict[str, Any], inputs: dict[str, dict[str, Any]]) -> None:
        variables = flow.get("variables") or {}
        for path, text in strings(flow, ""):
            for match in EXPR_INPUT.finditer(text):
                name = match.group(1) or match.group(2)
                if name not in inputs:
                    self.report(path, "inputs-declared", f"inputs.{name} is used but not declared")
            for name in EXPR_VAR.findall(text):
                if name not in variables:
                    self.report(path, "vars-declared", f"vars.{name} is used but not declared")
            for name in EXPR_SECRET.findall(text):
                if self.secrets is None:
                    self.report(
                        path,
                        "secret-provided",
                        f"cannot check secret {name!r}: no secrets manifest at {SECRETS_MANIFEST}",
                    )
                elif name not in self.secrets:
                    self.report(
                        path,
                        "secret-provided",
                        f"secret {name!r} is not provided by the deployment "
                        f"(no key {name} in {SECRETS_MANIFEST.relative_to(ROOT)})",
                    )


# The production Kestra HelmRelease: its `kestra.plugins.defaults` apply to every flow.
KESTRA_RELEASE = ROOT / "k8s" / "infrastructure" / "kestra" / "release.yaml"


@functools.cache
def global_plugin_defaults(release: Path = KESTRA_RELEASE) -> list[dict[str, Any]]:
    """`kestra.plugins.defaults` of the HelmRelease's application configuration
    (core/.../services/PluginGlobalDefaultConfiguration.java, prefix `kestra.plugins`)."""
    if not release.exists():
        return []
    values = yaml.safe_load(release.read_text())["spec"]["values"]
    kestra = values.get("configurations", {}).get("application", {}).get("kestra", {})
    return copy.deepcopy(list((kestra.get("plugins") or {}).get("defaults") or []))


def deep_merge(a: Any, b: Any) -> Any:
    """core/.../utils/MapUtils.java deepMerge/mergeValues: maps merge key by key (`b` wins on
    a scalar), a null side yields the other, collections are `a` + the items of `b` not in
    `a` (mergeCollections: a list is never replaced, only extended)."""
    if a is None:
        return copy.deepcopy(b)
    if b is None:
        return copy.deepcopy(a)
    if isinstance(a, dict) and isinstance(b, dict):
        merged = copy.deepcopy(a)
        for key, value in b.items():
            merged[key] = deep_merge(merged.get(key), value)
        return merged
    if isinstance(a, list) and isinstance(b, list):
        return [*copy.deepcopy(a), *(copy.deepcopy(i) for i in b if i not in a)]
    return copy.deepcopy(b)


def apply_plugin_defaults(node: Any, defaults: list[dict[str, Any]]) -> Any:
    """core/.../services/PluginDefaultService.java innerInjectDefault + recursiveDefaults +
    defaults(): every mapping with a `type` (tasks, triggers, task runners, conditions), its
    children first, gets the defaults whose `type` equals its type or is a prefix of it;
    first the non-forced ones, each only filling what is still missing
    (deepMerge(default, plugin)), then the forced ones (deepMerge(plugin, default)). A
    plugin with `pluginDefaultsRef` skips non-forced type defaults."""
    if not defaults:
        return node
    if isinstance(node, list):
        return [apply_plugin_defaults(item, defaults) for item in node]
    if not isinstance(node, dict):
        return node
    result = {k: apply_plugin_defaults(v, defaults) for k, v in node.items()}
    kind = result.get("type")
    if not isinstance(kind, str):
        return result
    for forced in (False, True):
        if not forced and "pluginDefaultsRef" in result:
            continue
        for default in defaults:
            prefix = str(default.get("type", ""))
            if bool(default.get("forced")) != forced or not prefix or not kind.startswith(prefix):
                continue
            values = default.get("values") or {}
            result = deep_merge(result, values) if forced else deep_merge(values, result)
    return result


def seconds(value: Any) -> float | None:
    match = rules.DURATION.match(value) if isinstance(value, str) else None
    if not match:
        return None
    d, h, m, sec = (match.group(k) for k in ("d", "h", "m", "s"))
    total = int(d or 0) * 86400 + int(h or 0) * 3600 + int(m or 0) * 60 + float(sec or 0)
    return -total if match.group("sign") else total


def cron_problems(cron: str, with_seconds: bool = False) -> list[str]:
    """Problems with a cron expression (5 fields, or 6 with seconds, or a macro)."""
    cron = cron.strip()
    if cron.startswith("@"):
        return [] if cron in rules.CRON_MACROS else [f"unknown cron macro {cron!r}"]
    parts = cron.split()
    fields = (("second", 0, 59, {}), *rules.CRON_FIELDS) if with_seconds else rules.CRON_FIELDS
    if len(parts) != len(fields):
        return [f"{cron!r} has {len(parts)} fields, expected {len(fields)}"]
    problems = []
    for part, (name, low, high, names) in zip(parts, fields, strict=True):
        for item in part.split(","):
            if not cron_item_ok(item, low, high, names, name):
                problems.append(
                    f"{name} field {item!r} in {cron!r} is invalid (range {low}-{high})"
                )
    return problems


def cron_item_ok(item: str, low: int, high: int, names: dict[str, int], field: str) -> bool:
    base, _, step = item.partition("/")
    if step and (not step.isdigit() or int(step) == 0):
        return False
    if base in ("*", "?"):
        return base == "*" or field in ("day of month", "day of week")
    if field == "day of month" and re.fullmatch(r"L|LW|\d{1,2}W|L-\d{1,2}", base):
        return True
    if field == "day of week" and re.fullmatch(r"[0-7A-Z]{1,3}(#[1-5]|L)", base):
        base = re.sub(r"(#[1-5]|L)$", "", base)

    def value(token: str) -> int | None:
        if token.upper() in names:
            return names[token.upper()]
        return int(token) if token.isdigit() else None

    bounds = [value(t) for t in base.split("-", 1)]
    if any(v is None or not low <= v <= high for v in bounds):
        return False
    return len(bounds) == 1 or bounds[0] <= bounds[1]  # type: ignore[operator]


# -- the local code each python task imports ---------------------------------------------
# A task's working directory holds only the namespace files its `include` picks
# (kestra_files.select); `python <script>.py` puts that directory first on sys.path, so every
# local module the script imports, however indirectly, must be picked too, or the run ends in
# ModuleNotFoundError in Kestra while every offline check passes.

TASK_KEYS = ("tasks", "errors", "finally", "afterExecution")
_PYTHON = re.compile(r"^python(\d+(\.\d+)*)?$")
_SHELL_SEPARATORS = {";", "&&", "||", "|", "&", "(", ")"}
# Interpreter options that take a value (`python -W ignore x.py`).
_PYTHON_VALUE_OPTIONS = {"-W", "-X", "-Q"}


@dataclass(frozen=True)
class PythonRun:
    """One `python <script>.py ...` (or `python -m module`) in a task's commands."""

    command: int  # index in `commands`
    script: str | None  # working-dir path of the script, None for `-m`
    module: str | None = None


def python_runs(commands: Any) -> list[PythonRun]:
    """Every python invocation of a task's `commands`, read the way `/bin/sh -c` splits them:
    `python x.py`, `exec /opt/venv/bin/python x.py`, `python3.11 -u x.py`, `python -m pkg`."""
    runs: list[PythonRun] = []
    for index, line in enumerate(commands if isinstance(commands, list) else []):
        if not isinstance(line, str) or "{{" in line:
            continue
        try:
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            tokens = list(lexer)
        except ValueError:
            continue
        simple: list[list[str]] = [[]]
        for token in tokens:
            if token in _SHELL_SEPARATORS:
                simple.append([])
            else:
                simple[-1].append(token)
        for words in simple:
            while words and (words[0] in ("exec", "env", "nohup") or "=" in words[0]):
                words = words[1:]  # `exec`, `env X=1`, `X=1 python ...`
            if not words or not _PYTHON.match(PurePosixPath(words[0]).name):
                continue
            rest = iter(words[1:])
            for word in rest:
                if word == "-m":
                    runs.append(PythonRun(index, None, next(rest, None)))
                    break
                if word == "-c":
                    break
                if word in _PYTHON_VALUE_OPTIONS:
                    next(rest, None)
                    continue
                if word.startswith("-"):
                    continue
                while word.startswith("./"):
                    word = word[2:]
                runs.append(PythonRun(index, word))
                break
    return runs


def _module_file(code_dir: Path, parts: list[str]) -> Path | None:
    """`a.b` under code_dir: a/b.py, a/b/__init__.py, or a/b/ (a namespace package)."""
    base = code_dir.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return base if base.is_dir() else None


def local_imports(script: Path, root: Path | None = None) -> set[Path]:
    """The script and every local module file it imports, transitively: modules and
    packages under `root` (the script's directory, which `python <script>` puts first on
    sys.path), including `from x import y` of a submodule, relative imports inside packages
    and dotted imports (each parent package's `__init__.py` runs too). Third-party and stdlib
    imports are not under root and are ignored; so is a directory without `__init__.py`
    (`snowflake/` of SQL files does not shadow the installed `snowflake` package), but a
    module file inside one (`from ns import mod`: ns/mod.py) counts."""
    code_dir = root or script.parent
    needed: set[Path] = set()
    todo = [script]
    while todo:
        file = todo.pop()
        if file in needed:
            continue
        needed.add(file)
        if file.is_dir() or file.suffix != ".py":
            continue
        try:
            tree = ast.parse(file.read_text(), str(file))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        package = list(file.relative_to(code_dir).parts[:-1])
        targets: list[list[str]] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.extend(alias.name.split(".") for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    if file == script and not package:
                        continue  # a relative import in a top-level script fails anyway
                    base = package[: len(package) - node.level + 1]
                else:
                    base = []
                module = [*base, *(node.module.split(".") if node.module else [])]
                if module:
                    targets.append(module)
                for alias in node.names:  # `from pkg import submodule`
                    if alias.name != "*":
                        targets.append([*module, alias.name])
        for parts in targets:
            for depth in range(1, len(parts) + 1):  # a.b.c runs a, a.b and a.b.c
                found = _module_file(code_dir, parts[:depth])
                if found is None:
                    break
                if found.is_file():
                    todo.append(found)
    return needed


def include_hint(code_dir: Path, file: Path) -> str:
    """The include pattern that picks a missing file: its top-level package (`weather/**`)
    or its own name at the top (`warehouse.py`, `dlt-weather.py`)."""
    rel = file.relative_to(code_dir)
    return f"{rel.parts[0]}/**" if len(rel.parts) > 1 else rel.as_posix()


def task_import_violations(
    doc: Document, code_dir: Path = CODE_DIR, namespace_files: list[str] | None = None
) -> list[Violation]:
    """For each task that runs `python <script>.py`: the script and each local module it
    imports (transitively) must be picked by the task's `namespaceFiles.include`, matched
    as Kestra matches it (kestra_files.select), and deployed. One violation per missing
    package or module, naming the flow, the task and the pattern to add."""
    flow = doc.data
    if not isinstance(flow, dict):
        return []
    violations: list[Violation] = []
    flow_id = flow.get("id", "<flow>")

    def flag(where: str, message: str) -> None:
        violations.append(
            Violation(doc.file, doc.line_of(where), where, "namespace-files-imports", message)
        )

    def tasks(items: Any, path: str) -> Iterator[tuple[dict[str, Any], str]]:
        for i, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, dict):
                yield item, join(path, i)
                for key in rules.NESTED_TASK_KEYS:
                    yield from tasks(item.get(key), join(join(path, i), key))

    for key in TASK_KEYS:
        for task, path in tasks(flow.get(key), key):
            spec = task.get("namespaceFiles")
            spec = spec if isinstance(spec, dict) else {}
            enabled = bool(spec) and spec.get("enabled", True) is not False
            include = spec.get("include") if isinstance(spec.get("include"), list) else None
            exclude = spec.get("exclude") if isinstance(spec.get("exclude"), list) else None
            if include and any(not isinstance(p, str) or "{{" in p for p in include):
                continue  # rendered at run time: not decidable here
            at = join(path, "namespaceFiles.include") if spec else path
            for run in python_runs(task.get("commands")):
                where = join(join(path, "commands"), run.command)
                if run.script is not None:
                    script = code_dir / run.script
                    if not script.is_file():
                        flag(
                            where,
                            f"flow {flow_id!r}, task {task.get('id')!r} runs "
                            f"{run.script!r}, which is not a file under {display(code_dir)}/",
                        )
                        continue
                    needed = local_imports(script)
                else:
                    found = _module_file(code_dir, (run.module or "").split("."))
                    if found is None or not found.is_file():
                        continue  # an installed module (`python -m pip`)
                    needed = local_imports(found, code_dir)
                files = sorted(needed)
                stored = [kestra_files.stored_path(display(f, code_dir)) for f in files]
                picked = set(kestra_files.select(stored, include, exclude)) if enabled else set()
                missing: dict[str, list[str]] = {}
                for file, path_ in zip(files, stored, strict=True):
                    if path_ not in picked:
                        missing.setdefault(include_hint(code_dir, file), []).append(path_)
                    elif namespace_files is not None and path_ not in namespace_files:
                        missing.setdefault(f"(not deployed) {path_}", []).append(path_)
                for hint, paths in sorted(missing.items()):
                    if hint.startswith("(not deployed)"):
                        message = (
                            f"flow {flow_id!r}, task {task.get('id')!r}: {run.script or run.module}"
                            f" needs {paths[0]}, which is not deployed (git-ignored?)"
                        )
                    else:
                        what = (
                            f"package {hint[:-3]!r}"
                            if hint.endswith("/**")
                            else f"module {hint.removesuffix('.py')!r}"
                        )
                        why = "" if enabled else " (namespaceFiles is not enabled)"
                        message = (
                            f"flow {flow_id!r}, task {task.get('id')!r}: "
                            f"{run.script or run.module} imports {what}, not picked by "
                            f"namespaceFiles.include{why} ({', '.join(paths[:3])}"
                            f"{', ...' if len(paths) > 3 else ''}): add {hint!r}"
                        )
                        if hint == run.script:
                            message = (
                                f"flow {flow_id!r}, task {task.get('id')!r} runs {hint!r}, "
                                f"not picked by namespaceFiles.include{why}: add {hint!r}"
                            )
                    flag(at, message)
                config = config_violation(task, files, code_dir, include, exclude, enabled)
                if config:
                    flag(at, f"flow {flow_id!r}, task {task.get('id')!r}: {config}")
    return violations


DLT_CONFIG = "/.dlt/config.toml"
SOURCE_DECORATORS = ("dlt.source", "source")


def source_sections(files: Iterable[Path]) -> set[str]:
    """`section=` (else `name=`) of every `@dlt.source(...)` in these modules."""
    sections: set[str] = set()
    for file in files:
        try:
            tree = ast.parse(file.read_text(), str(file))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for deco in node.decorator_list:
                if isinstance(deco, ast.Call) and ast.unparse(deco.func) in SOURCE_DECORATORS:
                    given = {
                        k.arg: k.value.value
                        for k in deco.keywords
                        if isinstance(k.value, ast.Constant) and isinstance(k.value.value, str)
                    }
                    section = given.get("section") or given.get("name")
                    if section:
                        sections.add(section)
    return sections


def config_violation(
    task: dict[str, Any],
    files: list[Path],
    code_dir: Path,
    include: list[str] | None,
    exclude: list[str] | None,
    enabled: bool,
) -> str | None:
    """The one case of dlt config decidable offline: the script's own source has settings
    under `[sources.<section>]` in .dlt/config.toml, the include does not pick that file, and
    the task's env does not give every one of them (`SOURCES__<SECTION>__<KEY>`): in Kestra
    the source would run without them. (General sections, `[runtime]`, `[load]`..., apply to
    every pipeline and have dlt defaults: not checked.)"""
    import tomllib

    config_file = code_dir / ".dlt" / "config.toml"
    if not config_file.is_file():
        return None
    if enabled and kestra_files.select([DLT_CONFIG], include, exclude):
        return None
    try:
        sources = tomllib.loads(config_file.read_text()).get("sources") or {}
    except (tomllib.TOMLDecodeError, OSError):
        return None
    env = {str(k).upper() for k in (task.get("env") or {})}
    for section in sorted(source_sections(files)):
        settings = sources.get(section)
        if not isinstance(settings, dict):
            continue
        keys = [
            k
            for k, v in settings.items()
            if not isinstance(v, dict) and f"SOURCES__{section}__{k}".upper() not in env
        ]
        if keys:
            return (
                f"its source {section!r} has settings in .dlt/config.toml "
                f"([sources.{section}]: {', '.join(keys)}) that the task does not get: add "
                f"'{DLT_CONFIG}' to namespaceFiles.include (with the leading '/') or set "
                f"{', '.join(f'SOURCES__{section.upper()}__{k.upper()}' for k in keys[:2])}"
                f"{', ...' if len(keys) > 2 else ''} in env"
            )
    return None


def display(path: Path, base: Path = ROOT) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def flow_files(paths: Iterable[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.glob("*.y*ml") if p.suffix in (".yml", ".yaml")))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such file or directory: {raw}")
    return files


def deployed_namespace_files(root: Path = ROOT) -> list[str] | None:
    """The stored paths every flow namespace gets (tools/manifests.py's convention)."""
    try:
        return sorted("/" + p for p in manifests.build_plan(root).files)
    except manifests.ConventionError:
        return None  # reported by `make manifests` / its check, with a better message


def validate(
    files: Iterable[Path], secrets: set[str] | None, namespace_files: list[str] | None = None
) -> list[Violation]:
    violations: list[Violation] = []
    for file in files:
        try:
            doc = load(file)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark else 1
            violations.append(Violation(str(file), line, "", "yaml", str(exc).splitlines()[0]))
            continue
        violations.extend(FlowChecker(doc, secrets, namespace_files).check())
        violations.extend(task_import_violations(doc, CODE_DIR, namespace_files))
    return violations


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="flow files or directories of *.yml flows")
    parser.add_argument(
        "--secrets-manifest",
        type=Path,
        default=SECRETS_MANIFEST,
        help="Secret manifest whose SECRET_<NAME> keys Kestra receives",
    )
    args = parser.parse_args(argv)
    try:
        files = flow_files(args.paths)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not files:
        print(f"error: no flow files in {' '.join(args.paths)}", file=sys.stderr)
        return 2
    violations = validate(
        files, deployed_secret_names(args.secrets_manifest), deployed_namespace_files()
    )
    for violation in violations:
        print(violation)
    print(f"{len(files)} flow(s) checked, {len(violations)} violation(s)", file=sys.stderr)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
