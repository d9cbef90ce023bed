"""Every query of the Grafana dashboard names a metric that exists, with labels it has.

Kestra's own metrics: tools/monitoring.KESTRA_METRICS (cited to MetricRegistry.java). The
runs' own figures: what the runner really sends to Kestra, captured here by running its
`report_to_kestra` with the chess report, named as Kestra registers a script task's
metrics (DefaultRunContext.metricPrefix, Micrometer's Prometheus naming)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

import monitoring
from tests.conftest import ROOT

DASHBOARD = ROOT / "k8s" / "monitoring" / "pipelines-dashboard.json"
FLOW = ROOT / "pipelines" / "chess-kestra-dlt.yml"
METRIC = re.compile(r"\b([a-z_][a-z0-9_]*)\s*(?:\{|\[)")
BY = re.compile(r"\bby \(([^)]*)\)")


def emitted(monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (counter|timer, tags) of every metric the chess run reports to Kestra."""
    from kestra import Kestra

    from chess_com import RunReport
    from pipeline_runner.schema_changes import SchemaChange
    from pipeline_runner.summary import RunSummary

    sent: dict[str, tuple[str, frozenset[str]]] = {}

    def record(kind: str) -> Any:
        def call(name: str, value: Any, tags: dict[str, str] | None = None) -> None:
            sent[name] = (kind, frozenset(tags or {}))

        return call

    monkeypatch.setattr(Kestra, "counter", record("counter"))
    monkeypatch.setattr(Kestra, "timer", record("timer"))
    monkeypatch.setattr(Kestra, "outputs", lambda *_: None)
    report = RunReport(players=["alice"], games=3)
    report.requests.record(200, 10)
    summary = RunSummary(pipeline="chess_com", loads=1, elapsed=1.0, peak_memory_mb=200.0)
    summary.rows["players_games"] = 3
    summary.schema_changes.append(SchemaChange("players_games", "x", "text"))
    summary.report_to_kestra(report)
    return sent


def known_metrics(monkeypatch: pytest.MonkeyPatch) -> dict[str, frozenset[str]]:
    (task,) = yaml.safe_load(FLOW.read_text())["tasks"]
    prefix = monitoring.task_metric_prefix(task["type"])
    known = dict(monitoring.KESTRA_METRICS)
    for name, (kind, tags) in emitted(monkeypatch).items():
        names = (
            [f"{prefix}{name}_total"]
            if kind == "counter"
            else [f"{prefix}{name}_seconds_{p}" for p in ("count", "sum", "max")]
        )
        for full in names:
            known[full] = tags | monitoring.TASK_TAGS
    return known


def queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]


def test_task_metric_prefix_follows_kestra() -> None:
    assert (
        monitoring.task_metric_prefix("io.kestra.plugin.scripts.python.Commands")
        == "kestra_io_kestra_plugin_scripts_python_commands_"
    )
    assert monitoring.task_metric_prefix("a.b.SlackIncomingWebhook").endswith(
        "a_b_slack_incoming_webhook_"
    )


def test_every_query_names_a_metric_that_exists_with_its_labels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    known = known_metrics(monkeypatch)
    assert queries(), "no queries"
    for title, expr in queries():
        names = [n for n in METRIC.findall(expr) if n not in {"by", "on", "sum", "max"}]
        assert names, (title, expr)
        unknown = [n for n in names if n not in known]
        assert not unknown, f"{title}: {unknown} is not a metric Kestra or the runs export"
        labels = set(monitoring.EXECUTION_TAGS) | {"job", "instance", "cluster"}
        for n in names:
            labels |= known[n]
        for group in BY.findall(expr):
            missing = {label.strip() for label in group.split(",")} - labels
            assert not missing, f"{title}: grouped by {missing}, which {names} do not carry"


def test_the_runs_figures_on_the_dashboard_are_ones_the_runner_sends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent = emitted(monkeypatch)
    for name in ("rows", "games_loaded", "players_failed", "requests_by_status", "peak_memory_mb"):
        assert name in sent, f"the runner no longer sends {name}"
    assert sent["rows"][1] == {"table"} and sent["requests_by_status"][1] == {"status"}
