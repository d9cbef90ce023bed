"""The Helm charts as deployed: values, per-resource checkov skips and the CI render.

The charts themselves are not in the repo and Helm repositories are unreachable offline,
so the real render (`helm template` + kubeconform + checkov, tools/render_charts.sh)
runs in the `manifests` job of .github/workflows/ci.yml. These tests check offline what
that render relies on: the values, the skips' shape and placement, the helm-controller
model in tools/helm_releases.py, and that CI runs the script with the pinned helm.
`test_render_with_local_charts` renders for real when a developer points LOCAL_CHARTS at
chart sources (see tools/render_charts.sh); everywhere else it is skipped on purpose.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

import helm_releases
from tests.conftest import ROOT
from tests.k8s.test_manifests import OPS_BIN, render, tool

SCRIPT = ROOT / "tools" / "render_charts.sh"
WORKFLOWS = ROOT / ".github" / "workflows"
CI = WORKFLOWS / "ci.yml"
# Flux paths holding the HelmReleases: the script's defaults.
SOURCES = {
    "cloudnative-pg": "k8s/infrastructure/controllers",
    "kestra": "k8s/infrastructure/production",
}
# Where each chart puts the annotations checkov reads. checkov takes skips from the
# scanned object's own metadata.annotations (checkov 3.3 kubernetes/kubernetes_utils.py,
# get_skipped_checks), so pod-template annotations do not skip Deployment checks.
#   kestra 1.0.54 templates/deployment.yaml: deployments.<name>.annotations -> Deployment.
#   cloudnative-pg 0.27.1: commonAnnotations -> every object (templates/deployment.yaml,
#   rbac.yaml, service.yaml, ...); a check only runs on its own kinds.
SKIP_HOME = {
    "kestra": (("deployments", "standalone", "annotations"), {"Deployment"}),
    "cloudnative-pg": (
        ("commonAnnotations",),
        {"Deployment", "ClusterRole", "ClusterRoleBinding", "ServiceAccount", "Service"},
    ),
}
SKIP_VALUE = re.compile(r"(CKV2?_K8S_\d+)=([^=]{20,})")


@cache
def release(name: str) -> dict[str, Any]:
    (obj,) = [
        o
        for o in render(SOURCES[name])
        if o["kind"] == "HelmRelease" and o["metadata"]["name"] == name
    ]
    return obj


def values(name: str) -> dict[str, Any]:
    return release(name)["spec"]["values"]


def skip_annotations(tree: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """(path of the annotations map, value) for every checkov skip anywhere in the values."""
    found = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            if isinstance(key, str) and "checkov.io/skip" in key:
                found.append((path, str(value)))
            else:
                found.extend(skip_annotations(value, (*path, str(key))))
    elif isinstance(tree, list):
        for i, item in enumerate(tree):
            found.extend(skip_annotations(item, (*path, str(i))))
    return found


@cache
def checkov_entities() -> dict[str, set[str]]:
    """Check id -> the kinds checkov runs it on (`checkov --list`)."""
    checkov = tool("checkov", OPS_BIN / "checkov")
    out = subprocess.run(
        [checkov, "--list", "--framework", "kubernetes", "--skip-download"],
        capture_output=True,
        text=True,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    assert out.returncode == 0, out.stderr
    entities: dict[str, set[str]] = {}
    for line in out.stdout.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 4 and re.fullmatch(r"CKV2?_K8S_\d+", cells[2]):
            entities.setdefault(cells[2], set()).add(cells[4])
    assert len(entities) > 100, out.stdout[:500]
    return entities


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_skips_name_a_check_with_a_reason_where_checkov_reads_them(name: str) -> None:
    home, kinds = SKIP_HOME[name]
    skips = skip_annotations(values(name))
    assert skips, f"{name}: no per-resource skips"
    ids = []
    for path, value in skips:
        assert path == home, f"{name}: skip at {'.'.join(path)}, checkov reads {'.'.join(home)}"
        # checkov splits the value at `=` into exactly two parts: a second `=` breaks it.
        match = SKIP_VALUE.fullmatch(value)
        assert match, f"{name}: {value!r} is not CHECK_ID=reason (20+ chars, no '=')"
        ids.append(match.group(1))
        entities = checkov_entities().get(match.group(1))
        assert entities, f"{name}: {match.group(1)} is not a checkov check"
        assert entities & kinds, f"{name}: {match.group(1)} runs on {entities}, not on {kinds}"
    assert len(ids) == len(set(ids)), f"{name}: duplicate skips {ids}"


def test_skips_are_not_also_global() -> None:
    config = yaml.safe_load((ROOT / ".checkov.yaml").read_text())
    per_resource = {
        value.partition("=")[0] for name in SOURCES for _, value in skip_annotations(values(name))
    }
    assert not per_resource & set(config["skip-check"])


def test_kestra_container_is_hardened_since_its_skips_cover_the_whole_deployment() -> None:
    kestra = values("kestra")
    container = kestra["common"]["securityContext"]
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]
    assert kestra["common"]["podSecurityContext"]["runAsNonRoot"] is True
    # Liveness and readiness are the chart's defaults (values.yaml common.*Probe); the
    # start-up probe is ours (test_startup_probe_is_sized_and_entirely_ours).
    for probe in ("livenessProbe", "readinessProbe"):
        assert probe not in kestra["common"], f"{probe} overridden"
    # No API access needed (open-source Kestra; flows run in dind): no token.
    assert kestra["serviceAccount"]["automount"] is False


def test_kestra_has_writable_mounts_where_it_writes() -> None:
    """Read-only root: Kestra writes to java.io.tmpdir (/tmp: plugin repository,
    PluginManager), its task working directories (kestra.tasks.tmp-dir.path, core
    WorkingDirFactory) and its local storage. /tmp is Kestra's own emptyDir; the chart mounts
    its `docker-tmp` emptyDir at dind.tmpPath in Kestra and in dind when dind is on
    (templates/deployment.yaml), so that path must not be /tmp (a second mount there) and the
    working directories go under it, as in Kestra's docker-compose-dind.yml."""
    kestra = values("kestra")
    assert kestra["dind"]["enabled"] is True
    assert kestra["deployments"]["standalone"].get("dind", {}).get("enabled", True) is True
    mounts = {m["mountPath"]: m["name"] for m in kestra["common"]["extraVolumeMounts"]}
    volumes = {v["name"]: v for v in kestra["common"]["extraVolumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "Kestra's own /tmp"
    shared = kestra["dind"]["tmpPath"]
    assert shared.rstrip("/") != "/tmp" and shared.startswith("/")
    tasks = kestra["configurations"]["application"]["kestra"]["tasks"]
    assert tasks["tmp-dir"]["path"].startswith(shared), "working dirs in the shared volume"
    storage = kestra["configurations"]["application"]["kestra"]["storage"]["local"]["basePath"]
    assert storage in mounts and "persistentVolumeClaim" in volumes[mounts[storage]]


# The chart's start-up probe (kestra 1.0.54 values.yaml common.startupProbe): 1 + 120 x 1 s.
CHART_STARTUP_PROBE = {
    "httpGet": {"path": "/health", "port": "management"},
    "initialDelaySeconds": 1,
    "periodSeconds": 1,
    "timeoutSeconds": 1,
    "successThreshold": 1,
    "failureThreshold": 120,
}


def startup_budget(probe: dict[str, Any]) -> int:
    return probe["initialDelaySeconds"] + probe["periodSeconds"] * probe["failureThreshold"]


def test_startup_probe_is_sized_and_entirely_ours() -> None:
    """Helm merges our map over the chart's, so every field is set here; the kubelet
    restarts Kestra when the probe runs out, so it must cover a first start under a 2-CPU
    limit while CloudNativePG creates the database (minutes), and end before the
    HelmRelease's install timeout. The rendered Deployment is checked in CI
    (tools/e2e/check_kestra_deployment.py, from tools/render_charts.sh)."""
    kestra = values("kestra")
    probe = kestra["common"]["startupProbe"]
    assert set(probe) == set(CHART_STARTUP_PROBE), "every field ours"
    assert probe["httpGet"] == CHART_STARTUP_PROBE["httpGet"]
    assert startup_budget(CHART_STARTUP_PROBE) < 600 <= startup_budget(probe)
    timeout = release("kestra")["spec"]["timeout"]
    match = re.fullmatch(r"(\d+)m", timeout)
    assert match and startup_budget(probe) < int(match.group(1)) * 60
    assert probe["timeoutSeconds"] >= 3, "a busy JVM answers /health slowly"


def test_render_script_checks_the_kestra_deployment() -> None:
    text = SCRIPT.read_text()
    assert "tools/e2e/check_kestra_deployment.py" in text


def test_cnpg_operator_pod_has_a_network_policy_for_its_webhook() -> None:
    objects = render(SOURCES["cloudnative-pg"])
    (policy,) = [o for o in objects if o["kind"] == "NetworkPolicy"]
    assert policy["metadata"]["namespace"] == release("cloudnative-pg")["metadata"]["namespace"]
    # cloudnative-pg.selectorLabels (chart templates/_helpers.tpl) with nameOverride unset.
    assert policy["spec"]["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/name": "cloudnative-pg"}
    }
    assert "nameOverride" not in values("cloudnative-pg")
    port = values("cloudnative-pg").get("webhook", {}).get("port", 9443)
    assert policy["spec"]["ingress"] == [{"ports": [{"port": port, "protocol": "TCP"}]}]


# --- tools/helm_releases.py: the helm-controller model ---------------------------------


def hr(name: str, namespace: str | None = "apps", **spec: Any) -> dict[str, Any]:
    chart = {"chart": "c", "version": "1.2.3", "sourceRef": {"kind": "HelmRepository", "name": "r"}}
    return {
        "kind": "HelmRelease",
        "metadata": {"name": name, **({"namespace": namespace} if namespace else {})},
        "spec": {"chart": {"spec": chart}, **spec},
    }


REPO = {
    "kind": "HelmRepository",
    "metadata": {"name": "r", "namespace": "apps"},
    "spec": {"url": "https://charts.example/"},
}


def test_release_name_and_namespace_follow_helm_controller() -> None:
    """fluxcd/helm-controller api/v2/helmrelease_types.go GetReleaseName/GetReleaseNamespace."""
    assert helm_releases.release_name(hr("web")) == "web"
    assert helm_releases.release_name(hr("web", targetNamespace="prod")) == "prod-web"
    assert helm_releases.release_name(hr("web", targetNamespace="p", releaseName="x")) == "x"
    assert helm_releases.release_namespace(hr("web")) == "apps"
    assert helm_releases.release_namespace(hr("web", targetNamespace="prod")) == "prod"


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_plan_of_the_real_release(name: str, tmp_path: Path) -> None:
    docs = list(render(SOURCES[name]))
    (row,) = helm_releases.plan(docs, tmp_path)
    obj = release(name)
    chart = obj["spec"]["chart"]["spec"]
    (repo,) = [o for o in docs if o["kind"] == "HelmRepository"]
    assert row[:5] == (
        name,
        obj["metadata"]["namespace"],
        chart["chart"],
        chart["version"],
        repo["spec"]["url"],
    )
    assert yaml.safe_load(Path(row[5]).read_text()) == obj["spec"]["values"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"valuesFrom": [{"kind": "Secret", "name": "s"}]}, "valuesFrom"),
        ({"postRenderers": []}, "postRenderers"),
    ],
)
def test_plan_refuses_what_it_does_not_model(
    spec: dict[str, Any], message: str, tmp_path: Path
) -> None:
    with pytest.raises(helm_releases.PlanError, match=f"HelmRelease web: {message}"):
        helm_releases.plan([REPO, hr("web", **spec)], tmp_path)


def test_plan_refuses_a_missing_repository(tmp_path: Path) -> None:
    with pytest.raises(helm_releases.PlanError, match="HelmRepository other/r not rendered"):
        helm_releases.plan([REPO, hr("web", namespace="other")], tmp_path)


def test_place_sets_only_missing_namespaces_of_namespaced_kinds() -> None:
    docs = [
        {"kind": "Deployment", "metadata": {"name": "a"}},
        {"kind": "Service", "metadata": {"name": "b", "namespace": "elsewhere"}},
        {"kind": "ClusterRole", "metadata": {"name": "c"}},
    ]
    placed = helm_releases.place(docs, "kestra")
    assert [d["metadata"].get("namespace") for d in placed] == ["kestra", "elsewhere", None]


def workload(skips: dict[str, str], *containers: dict[str, Any]) -> dict[str, Any]:
    annotations = {f"checkov.io/skip{i}": f"{k}={v}" for i, (k, v) in enumerate(skips.items())}
    return {
        "kind": "Deployment",
        "metadata": {"name": "w", "annotations": annotations},
        "spec": {"template": {"spec": {"containers": list(containers)}}},
    }


HARDENED = {
    "name": "app",
    "livenessProbe": {"httpGet": {}},
    "readinessProbe": {"httpGet": {}},
    "securityContext": {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    },
}
SIDECAR = {"name": "dind", "securityContext": {"privileged": True}}


def test_verify_accepts_skips_that_only_cover_the_privileged_sidecar() -> None:
    skips = {check: "sidecar" for check in helm_releases.CONTAINER_CHECKS}
    assert helm_releases.verify([workload(skips, HARDENED, SIDECAR)]) == []


def test_verify_catches_a_skip_hiding_the_main_container() -> None:
    soft = {**HARDENED, "securityContext": {**HARDENED["securityContext"]}}
    del soft["securityContext"]["readOnlyRootFilesystem"]
    problems = helm_releases.verify([workload({"CKV_K8S_22": "dind"}, soft, SIDECAR)])
    assert problems == [
        "Deployment w: skip CKV_K8S_22 hides container app, which lacks a read-only root filesystem"
    ]
    problems = helm_releases.verify([workload({"CKV_K8S_8": "why"}, HARDENED)])
    assert problems == ["Deployment w: skips CKV_K8S_8 with no privileged container"]


def test_skipped_checks_are_read_as_checkov_reads_them() -> None:
    doc = workload({"CKV_K8S_16": "reason here"})
    doc["metadata"]["annotations"]["other"] = "CKV_K8S_1=not a skip key"
    assert helm_releases.skipped_checks(doc) == {"CKV_K8S_16": "reason here"}


# --- CI wiring and pins ----------------------------------------------------------------


def workflow(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def test_ci_renders_the_charts_from_their_helm_repositories() -> None:
    ci = workflow(CI)
    assert re.fullmatch(r"v\d+\.\d+\.\d+", ci["env"]["HELM_VERSION"])
    steps = [s.get("run", "") for s in ci["jobs"]["manifests"]["steps"]]
    install = next(i for i, run in enumerate(steps) if "get.helm.sh" in run)
    assert "${HELM_VERSION}" in steps[install] and "sha256sum -c" in steps[install]
    (render_step,) = [i for i, run in enumerate(steps) if "tools/render_charts.sh" in run]
    assert install < render_step
    assert any(".venv-ops/.synced" in run for run in steps[:render_step])
    # Real Helm repositories in CI: no local chart override anywhere in the job.
    job = ci["jobs"]["manifests"]
    assert "LOCAL_CHARTS" not in yaml.safe_dump(job) and "LOCAL_CHARTS" not in ci.get("env", {})


def test_render_script_defaults_are_the_flux_paths_with_helm_releases() -> None:
    text = SCRIPT.read_text()
    match = re.search(r"set -- (.+)\n", text)
    assert match and sorted(match.group(1).split()) == sorted(SOURCES.values())


def test_helm_version_pins_agree() -> None:
    """HELM_VERSION is pinned in ci.yml; any other workflow naming it must agree."""
    pinned = workflow(CI)["env"]["HELM_VERSION"]
    for path in sorted(WORKFLOWS.glob("*.yml")):
        spec = workflow(path)
        scopes = [spec.get("env") or {}] + [j.get("env") or {} for j in spec["jobs"].values()]
        for scope in scopes:
            assert scope.get("HELM_VERSION", pinned) == pinned, path.name


def test_render_refuses_a_local_chart_of_another_version(tmp_path: Path) -> None:
    """The script never renders a chart version other than the HelmRelease's pin."""
    tool("kubectl")
    chart = tmp_path / "charts" / "kestra"
    chart.mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: kestra\nversion: 0.0.1\n")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "HELM_VERSION")}
    out = subprocess.run(
        [str(SCRIPT), SOURCES["kestra"]],
        capture_output=True,
        text=True,
        env={**env, "LOCAL_CHARTS": str(tmp_path / "charts"), "RENDER_DIR": str(tmp_path / "o")},
    )
    assert out.returncode != 0
    version = release("kestra")["spec"]["chart"]["spec"]["version"]
    assert f"is chart kestra 0.0.1, the HelmRelease pins {version}" in out.stderr


def test_render_with_local_charts(tmp_path: Path) -> None:
    """Developer opt-in: LOCAL_CHARTS=DIR with chart sources (kestra/, cloudnative-pg/ with
    its dependency in charts/), helm from HELM or PATH. Not in `make test` (no chart
    sources offline): the `manifests` CI job runs the same script on the real charts."""
    charts = os.environ.get("LOCAL_CHARTS")
    if not charts:
        pytest.skip("LOCAL_CHARTS not set: the chart render runs in ci.yml's manifests job")
    helm = os.environ.get("HELM") or shutil.which("helm")
    assert helm, "LOCAL_CHARTS is set but helm is not found (set HELM or put it on PATH)"
    out = subprocess.run(
        [str(SCRIPT)],
        capture_output=True,
        text=True,
        env={**os.environ, "HELM": helm, "RENDER_DIR": str(tmp_path)},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    summaries = re.findall(r"Passed checks: (\d+), Failed checks: (\d+)", out.stdout)
    assert len(summaries) == len(SOURCES) and all(failed == "0" for _, failed in summaries)
