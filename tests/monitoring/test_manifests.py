"""The monitoring manifests (k8s/monitoring): valid against the monitoring.coreos.com
schemas, pointed at what the cluster really runs, and deployed on their own by Flux."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from tests.conftest import ROOT

MONITORING = ROOT / "k8s" / "monitoring"
OPS_PYTHON = ROOT / ".venv-ops" / "bin" / "python"
VALIDATE = ROOT / "tools" / "validate_monitoring.py"


def rendered() -> str:
    out = subprocess.run(
        ["kubectl", "kustomize", str(MONITORING)], capture_output=True, text=True, check=True
    )
    return out.stdout


def objects() -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(rendered()) if d}


def validate(text: str) -> subprocess.CompletedProcess[str]:
    if not OPS_PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail("the ops lane (.venv-ops) is missing under CI: run `make install`")
        pytest.skip("ops lane not installed: `make install`")
    return subprocess.run(
        [str(OPS_PYTHON), str(VALIDATE), "-"], input=text, capture_output=True, text=True
    )


def test_monitoring_objects_validate_against_the_crd_schemas() -> None:
    out = validate(rendered())
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 monitoring.coreos.com object(s) checked, 0 problem(s)" in out.stdout


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        (("  - interval: 30s", "  - interval: 30s\n    scrapeTimeOut: 10s"), "scrapeTimeOut"),
        (("      for: 10m", "      for: 10 minutes"), "for"),
        (("  podMetricsEndpoints:", "  podMetricEndpoints:"), "podMetricEndpoints"),
    ],
)
def test_the_schema_check_rejects_what_the_crd_does_not_define(
    broken: tuple[str, str], problem: str
) -> None:
    text = rendered()
    assert broken[0] in text
    out = validate(text.replace(broken[0], broken[1], 1))
    assert out.returncode == 1 and problem in out.stdout, out.stdout


def test_scrape_targets_match_the_deployed_kestra_and_database() -> None:
    objs = objects()
    release = yaml.safe_load((ROOT / "k8s/infrastructure/kestra/release.yaml").read_text())
    name = release["spec"].get("releaseName", release["metadata"]["name"])
    monitor = objs[("ServiceMonitor", "kestra")]["spec"]
    # the chart labels its Service with these (kestra-1.0.54 _helpers.tpl kestra.labels)
    assert monitor["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "kestra",
        "app.kubernetes.io/instance": name,
    }
    assert monitor["endpoints"][0]["port"] == "management"
    assert monitor["endpoints"][0]["path"] == "/prometheus"
    (cluster,) = [
        d
        for d in yaml.safe_load_all((ROOT / "k8s/infrastructure/kestra/postgres.yaml").read_text())
        if d and d["kind"] == "Cluster"
    ]
    pods = objs[("PodMonitor", "kestra-db")]["spec"]
    assert pods["selector"]["matchLabels"]["cnpg.io/cluster"] == cluster["metadata"]["name"]
    rules = yaml.dump(objs[("PrometheusRule", "pipelines")]["spec"], width=10**6)
    assert f'cnpg_collector_up{{cluster="{cluster["metadata"]["name"]}"}}' in rules
    policy = objs[("NetworkPolicy", "prometheus-scrape")]["spec"]["ingress"][0]
    assert {p["port"] for p in policy["ports"]} == {8081, 9187}
    for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
        (obj,) = [o for (k, _), o in objs.items() if k == kind]
        assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert obj["metadata"]["namespace"] == "kestra"


def test_the_dashboard_reaches_grafanas_sidecar() -> None:
    config = objects()[("ConfigMap", "pipelines-dashboard")]
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert yaml.safe_load(config["data"]["pipelines-dashboard.json"])["uid"] == "pipelines"


def test_monitoring_is_its_own_flux_kustomization_nothing_depends_on() -> None:
    cluster = ROOT / "k8s" / "clusters" / "production"
    docs = [
        d for f in sorted(cluster.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d
    ]
    flux = {
        d["metadata"]["name"]: d for d in docs if d.get("kind") == "Kustomization" and "spec" in d
    }
    assert flux["monitoring"]["spec"]["path"] == "./k8s/monitoring"
    assert flux["monitoring"]["spec"]["dependsOn"] == [{"name": "infrastructure"}]
    for name, doc in flux.items():
        assert {"name": "monitoring"} not in doc["spec"].get("dependsOn", []), name
    # the CI cluster has no Prometheus Operator: monitoring is not deployed there
    ci = [p.read_text() for p in (ROOT / "k8s" / "clusters" / "ci").rglob("*.yaml")]
    assert not any("k8s/monitoring" in text for text in ci)


def test_rules_are_up_to_date() -> None:
    out = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "tools" / "monitoring.py"), "check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
