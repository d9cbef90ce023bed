"""The pipelines' alert rules under `promtool test rules` (Prometheus' own rule engine).

Synthetic series named as Kestra 1.3 and CloudNativePG export them (tools/monitoring.py
cites the code): every alert fires on its bad case and stays silent on a healthy series.
promtool comes from Debian's `prometheus` package (`.ci/run` installs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import monitoring
from tests.conftest import ROOT

RULES = ROOT / "k8s" / "monitoring" / "pipeline-rules.yaml"
FLOW = 'namespace_id="chess.pipelines",flow_id="chess-kestra-dlt",tenant_id="main"'
END = "kestra_executor_execution_end_count_total"
UP = 'up{job="kestra",instance="10.0.0.7:8081"}'
# Minutes since the start of the series (promtool's interval is 1m here). The chess flow's
# window (its cron's longest gap + its SLA) and grace, as the rules were generated.
DAY = 24 * 60
(CHESS,) = [f for f in monitoring.scheduled_flows()[0] if f.flow_id == "chess-kestra-dlt"]
WINDOW = int(CHESS.window.total_seconds() // 60)
GRACE = int(CHESS.grace.total_seconds() // 60)


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing under CI: .ci/run installs Debian's prometheus")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path


def spec() -> dict[str, Any]:
    """The rules as generated, less the per-flow rules of the other scheduled flows (each
    pipeline added gets its own; the cases below are the chess flow's)."""
    generated = yaml.safe_load(RULES.read_text())["spec"]
    for group in generated["groups"]:
        group["rules"] = [
            r for r in group["rules"] if r.get("labels", {}).get("flow_id") in (None, CHESS.flow_id)
        ]
    return generated


def alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in spec()["groups"] for r in g["rules"]}


def flat(*segments: tuple[float, int]) -> str:
    """promtool series notation: (value, minutes) segments held flat."""
    return " ".join(f"{value}+0x{minutes - 1}" for value, minutes in segments)


def firing(name: str, **labels: str) -> dict[str, Any]:
    rule = alerts()[name]
    summary = rule["annotations"]["summary"]
    for key, value in labels.items():
        summary = summary.replace(f"{{{{ $labels.{key} }}}}", value)
    return {
        "exp_labels": {**rule["labels"], **labels},
        "exp_annotations": {**rule["annotations"], "summary": summary},
    }


FLOW_LABELS = {"namespace_id": "chess.pipelines", "flow_id": "chess-kestra-dlt"}

# name -> [(case, series {name: values}, eval minute, expected alerts)]
CASES: dict[str, list[tuple[str, dict[str, str], int, list[dict[str, Any]]]]] = {
    "PipelineNoRecentSuccess": [
        (
            "a success every day",
            {
                UP: flat((1, WINDOW + 500)),
                f'{END}{{{FLOW},state="SUCCESS"}}': flat((0, 400), (1, DAY), (2, WINDOW + 100)),
            },
            WINDOW + 400,
            [],
        ),
        (
            "the last success longer ago than the window",
            {
                UP: flat((1, WINDOW + 500)),
                f'{END}{{{FLOW},state="SUCCESS"}}': flat((0, 400), (1, WINDOW + 100)),
            },
            WINDOW + 420,
            [firing("PipelineNoRecentSuccess")],
        ),
        (
            "never a success, only failures",
            {
                UP: flat((1, WINDOW + 500)),
                f'{END}{{{FLOW},state="FAILED"}}': flat((0, 400), (1, WINDOW + 100)),
            },
            WINDOW + 420,
            [firing("PipelineNoRecentSuccess")],
        ),
        (
            "a new Prometheus: too little history to say",
            {UP: flat((1, WINDOW - 60))},
            WINDOW - 70,
            [],
        ),
    ],
    "PipelineExecutionQueuedTooLong": [
        (
            "queued, then popped",
            {
                f'kestra_executor_execution_queued_count_total{{{FLOW},state="QUEUED"}}': flat(
                    (1, GRACE + 100)
                ),
                f'kestra_executor_execution_popped_count_total{{{FLOW},state="RUNNING"}}': flat(
                    (0, 30), (1, GRACE + 70)
                ),
            },
            GRACE + 90,
            [],
        ),
        (
            "queued for longer than the flow's grace",
            {
                f'kestra_executor_execution_queued_count_total{{{FLOW},state="QUEUED"}}': flat(
                    (0, 10), (1, GRACE + 90)
                )
            },
            GRACE + 90,
            [firing("PipelineExecutionQueuedTooLong")],
        ),
    ],
    "PipelineLastExecutionFailed": [
        (
            "failed, then succeeded",
            {
                f'{END}{{{FLOW},state="FAILED"}}': flat((0, 100), (1, 300)),
                f'{END}{{{FLOW},state="SUCCESS"}}': flat((0, 200), (1, 200)),
            },
            390,
            [],
        ),
        (
            "succeeded, then failed",
            {
                f'{END}{{{FLOW},state="SUCCESS"}}': flat((0, 100), (1, 300)),
                f'{END}{{{FLOW},state="FAILED"}}': flat((0, 200), (1, 200)),
            },
            390,
            [firing("PipelineLastExecutionFailed", **FLOW_LABELS)],
        ),
        (
            "never succeeded",
            {f'{END}{{{FLOW},state="KILLED"}}': flat((0, 100), (1, 300))},
            390,
            [firing("PipelineLastExecutionFailed", **FLOW_LABELS)],
        ),
        (
            "a flow outside the pipeline namespaces",
            {
                f'{END}{{namespace_id="sandbox",flow_id="x",state="FAILED"}}': flat(
                    (0, 100), (1, 300)
                ),
            },
            390,
            [],
        ),
    ],
    "PipelineSLAViolated": [
        (
            "no violation",
            {f"kestra_executor_sla_violation_count_total{{{FLOW}}}": flat((0, 120))},
            110,
            [],
        ),
        (
            "a violation",
            {f"kestra_executor_sla_violation_count_total{{{FLOW}}}": flat((0, 100), (1, 20))},
            105,
            [firing("PipelineSLAViolated", **FLOW_LABELS)],
        ),
    ],
    "KestraDown": [
        ("up", {UP: flat((1, 30))}, 20, []),
        (
            "scraped, not answering",
            {UP: flat((1, 10), (0, 20))},
            25,
            [
                {
                    **firing("KestraDown"),
                    "exp_labels": {
                        **firing("KestraDown")["exp_labels"],
                        "job": "kestra",
                        "instance": "10.0.0.7:8081",
                    },
                }
            ],
        ),
        (
            "not scraped at all",
            {'up{job="other"}': flat((1, 30))},
            20,
            [
                {
                    **firing("KestraDown"),
                    "exp_labels": {**firing("KestraDown")["exp_labels"], "job": "kestra"},
                }
            ],
        ),
    ],
    "KestraPostgresDown": [
        ("up", {'cnpg_collector_up{cluster="kestra-db",pod="kestra-db-1"}': flat((1, 30))}, 20, []),
        (
            "down",
            {'cnpg_collector_up{cluster="kestra-db",pod="kestra-db-1"}': flat((1, 5), (0, 25))},
            20,
            [firing("KestraPostgresDown")],
        ),
        (
            "not scraped",
            {'cnpg_collector_up{cluster="other"}': flat((1, 30))},
            20,
            [firing("KestraPostgresDown")],
        ),
    ],
}


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    assert set(CASES) == set(alerts())
    for name, cases in CASES.items():
        assert any(expected for *_, expected in cases), f"{name}: no case where it fires"
        assert any(not expected for *_, expected in cases), f"{name}: no healthy case"


def run_promtool(tmp_path: Path, name: str, case: str) -> subprocess.CompletedProcess[str]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(spec()))
    (label, series, minute, expected) = next(c for c in CASES[name] if c[0] == case)
    test = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": f"{name}: {label}",
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series.items()],
                "alert_rule_test": [
                    {"eval_time": f"{minute}m", "alertname": name, "exp_alerts": expected}
                ],
            }
        ],
    }
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    return subprocess.run(
        [promtool(), "test", "rules", str(path)], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("name", "case"), [(name, case[0]) for name, cases in CASES.items() for case in cases]
)
def test_alert(tmp_path: Path, name: str, case: str) -> None:
    out = run_promtool(tmp_path, name, case)
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_accepts_the_rules_file(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    generated = yaml.safe_load(RULES.read_text())["spec"]
    rules.write_text(yaml.safe_dump(generated))
    count = sum(len(group["rules"]) for group in generated["groups"])
    out = subprocess.run([promtool(), "check", "rules", str(rules)], capture_output=True, text=True)
    assert out.returncode == 0 and f"SUCCESS: {count} rules found" in out.stdout, (
        out.stdout + out.stderr
    )
