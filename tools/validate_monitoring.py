#!/usr/bin/env python3
"""Validate Prometheus Operator objects against the monitoring.coreos.com schemas.

    .venv-ops/bin/python tools/validate_monitoring.py FILE...   # rendered YAML, `-` for stdin

The schemas are the pydantic models `cloudcoil-models-prometheus-operator` generates from
prometheus-operator v0.80.1's CRDs (its openAPIV3Schema: field names, types, patterns such
as a duration's), made strict here: a field the CRD does not define is an error, as the API
server's structural schema would prune it silently. Other kinds are skipped (the core
kinds have their own strict check). Prints one line per problem; exit 1 if any.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from cloudcoil.models.prometheus_operator import v1

KINDS = {
    "ServiceMonitor": v1.ServiceMonitor,
    "PodMonitor": v1.PodMonitor,
    "PrometheusRule": v1.PrometheusRule,
}
GROUP = "monitoring.coreos.com/"


def strict(schema: Any) -> Any:
    """The schema with `additionalProperties: false` wherever properties are listed."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def problems(doc: dict[str, Any]) -> list[str]:
    kind, api = doc.get("kind"), str(doc.get("apiVersion", ""))
    if not api.startswith(GROUP):
        return []
    name = f"{kind}/{doc.get('metadata', {}).get('name')}"
    model = KINDS.get(kind)
    if model is None or api != GROUP + "v1":
        return [f"{name}: {api} {kind} is not a kind this check knows"]
    found = []
    schema = strict(model.model_json_schema(by_alias=True))
    # metadata is Kubernetes' ObjectMeta: its own, looser checks
    schema["properties"]["metadata"] = {"type": "object"}
    for error in jsonschema.Draft202012Validator(schema).iter_errors(doc):
        where = ".".join(str(p) for p in error.absolute_path) or "(top)"
        found.append(f"{name}: {where}: {error.message}")
    try:
        model.model_validate(doc)
    except Exception as exc:  # the model's own validators (patterns, enums)
        found.append(f"{name}: {exc}".splitlines()[0] + " " + " ".join(str(exc).splitlines()[1:3]))
    return found


def main(paths: list[str]) -> int:
    errors: list[str] = []
    checked = 0
    for path in paths:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        for doc in yaml.safe_load_all(text):
            if isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith(GROUP):
                checked += 1
                errors += problems(doc)
    for line in errors:
        print(line)
    print(f"{checked} monitoring.coreos.com object(s) checked, {len(errors)} problem(s)")
    return 1 if errors or not checked else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["-"]))
