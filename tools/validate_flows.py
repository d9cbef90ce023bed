#!/usr/bin/env python
"""Offline validator for Kestra flows: `python tools/validate_flows.py PATH...`.

Checks what Kestra 1.x's own validation enforces (required fields, id and namespace
patterns, unique ids, duplicate YAML keys, unknown properties of known types, ISO-8601
durations, retry constraints, cron syntax, input types), what Kestra 2.0 removes
(deprecated aliases), and this project's cross-checks: every `inputs.x` / `vars.x` used
is declared, every `secret('X')` is provided by the deployment's Kestra secrets
manifest, container images are pinned.

Prints `file:line: yaml.path: [rule] message` per violation; exits 1 if any, 2 on
usage errors. The real `kestra flow validate` runs in CI (.github/workflows/ci.yml).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kestra_files
import kestra_rules as rules
import manifests

ROOT = Path(__file__).resolve().parent.parent
# One source of truth for secret names: the Secret Kestra reads as SECRET_<NAME> env vars.
SECRETS_MANIFEST = ROOT / "k8s" / "infrastructure" / "production" / "kestra-secrets.sops.yaml"

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
        self, doc: Document, secrets: set[str] | None, namespace_files: list[str] | None = None
    ) -> None:
        self.doc = doc
        self.secrets = secrets
        # Stored paths (`/chess_com/x.py`) the deployment gives the flow's namespace.
        self.namespace_files = namespace_files
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
        self.check_flow(flow)
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
