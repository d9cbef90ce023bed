"""Kestra's pod as deployed: a changed Secret file restarts Kestra and re-runs the sync, and
tools/e2e/check_kestra_deployment.py (run on the chart's real render in CI and on the live
Deployment in the e2e workflow) catches a short start-up probe, a shared /tmp and a missing
secrets revision.

Why an annotation restarts: the Deployment controller names a ReplicaSet by the hash of the
pod template (kubernetes pkg/controller/deployment/sync.go getNewReplicaSet,
controller.ComputeHash of `spec.template`), so any template change rolls the pods (here
Recreate); Kestra then reads the Secrets again at start-up. A Job's template is immutable:
Flux (`force: true` on `apps`) re-creates it.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.k8s.test_manifests import tool

CHECK = ROOT / "tools" / "e2e" / "check_kestra_deployment.py"
INFRASTRUCTURE = "k8s/infrastructure/production"
APPS = "k8s/apps/production"
SECRETS = ("kestra-secrets.sops.yaml", "kestra-basic-auth.sops.yaml")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of what Flux builds from (k8s/ and pipelines/)."""
    for part in ("k8s", "pipelines"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def build(tree: Path, path: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [
            tool("kubectl"),
            "kustomize",
            "--load-restrictor",
            "LoadRestrictionsNone",
            str(tree / path),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def kestra_annotations(tree: Path) -> dict[str, str]:
    (release,) = [o for o in build(tree, INFRASTRUCTURE) if o["kind"] == "HelmRelease"]
    return release["spec"]["values"]["common"]["podAnnotations"]


def job_annotations(tree: Path) -> dict[str, str]:
    (job,) = [o for o in build(tree, APPS) if o["kind"] == "Job"]
    return job["spec"]["template"]["metadata"]["annotations"]


def edit_secret(tree: Path, name: str) -> None:
    """What `$EDITOR` + `sops --encrypt --in-place` does to the file: new content."""
    file = tree / INFRASTRUCTURE / name
    file.write_text(file.read_text().replace("CHANGE_ME", "CHANGED", 1))


@pytest.mark.parametrize("secret", SECRETS)
def test_a_changed_secret_file_is_a_new_kestra_pod_template(tree: Path, secret: str) -> None:
    before = kestra_annotations(tree)
    assert before["secrets-revision"].startswith("kestra-secrets-revision-")
    (revision,) = [
        o
        for o in build(tree, INFRASTRUCTURE)
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == before["secrets-revision"]
    ]
    assert set(revision["data"]) == set(SECRETS), "the name hashes every Secret file"
    edit_secret(tree, secret)
    assert kestra_annotations(tree)["secrets-revision"] != before["secrets-revision"]


def test_only_the_basic_auth_secret_re_runs_the_sync(tree: Path) -> None:
    before = job_annotations(tree)["credentials-revision"]
    assert before.startswith("pipelines-sync-credentials-revision-")
    edit_secret(tree, "kestra-secrets.sops.yaml")
    assert job_annotations(tree)["credentials-revision"] == before
    edit_secret(tree, "kestra-basic-auth.sops.yaml")
    assert job_annotations(tree)["credentials-revision"] != before


def test_other_changes_leave_the_revisions_alone(tree: Path) -> None:
    before = kestra_annotations(tree), job_annotations(tree)
    policy = tree / "k8s" / "infrastructure" / "kestra" / "network-policy.yaml"
    policy.write_text(policy.read_text() + "\n# a comment\n")
    assert (kestra_annotations(tree), job_annotations(tree)) == before


# --- tools/e2e/check_kestra_deployment.py ----------------------------------------------------


def chart_deployment() -> dict[str, Any]:
    """The parts of the Deployment chart kestra 1.0.54 renders from our values
    (templates/deployment.yaml: container `kestra-<type>`, extraVolumeMounts then the dind
    mounts at dind.tmpPath, the dind container `kestra-<type>-docker-dind`, podAnnotations on
    the template), as `helm template` printed it for k8s/infrastructure/production."""
    return {
        "kind": "Deployment",
        "metadata": {"name": "kestra-standalone"},
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {"secrets-revision": "kestra-secrets-revision-hc628297gh"}
                },
                "spec": {
                    "containers": [
                        {
                            "name": "kestra-standalone",
                            "startupProbe": {
                                "httpGet": {"path": "/health", "port": "management"},
                                "initialDelaySeconds": 10,
                                "periodSeconds": 5,
                                "timeoutSeconds": 3,
                                "successThreshold": 1,
                                "failureThreshold": 120,
                            },
                            "volumeMounts": [
                                {"name": "kestra-config", "mountPath": "/app/confs/_default.yml"},
                                {"name": "storage", "mountPath": "/app/storage"},
                                {"name": "tmp", "mountPath": "/tmp"},
                                {"name": "docker-dind-socket", "mountPath": "/dind"},
                                {"name": "docker-tmp", "mountPath": "/tmp/kestra-wd/"},
                            ],
                        },
                        {
                            "name": "kestra-standalone-docker-dind",
                            "volumeMounts": [
                                {"name": "docker-dind-socket", "mountPath": "/dind/"},
                                {"name": "docker-tmp", "mountPath": "/tmp/kestra-wd/"},
                            ],
                        },
                    ],
                    "volumes": [
                        {"name": "kestra-config", "configMap": {"name": "kestra-config"}},
                        {"name": "docker-dind-socket", "emptyDir": {}},
                        {"name": "docker-tmp", "emptyDir": {}},
                        {
                            "name": "storage",
                            "persistentVolumeClaim": {"claimName": "kestra-storage"},
                        },
                        {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
                    ],
                },
            }
        },
    }


def run_check(docs: list[dict[str, Any]], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    file = tmp_path / "rendered.yaml"
    file.write_text(yaml.safe_dump_all(docs))
    return subprocess.run([sys.executable, CHECK, file], capture_output=True, text=True, timeout=60)


def test_check_passes_on_the_deployment_our_values_render(tmp_path: Path) -> None:
    out = run_check(
        [{"kind": "Service", "metadata": {"name": "kestra"}}, chart_deployment()], tmp_path
    )
    assert out.returncode == 0, out.stderr


def chart_default_probe(d: dict[str, Any]) -> None:
    probe = d["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    probe.update(initialDelaySeconds=1, periodSeconds=1, timeoutSeconds=1)


def shared_tmp(d: dict[str, Any]) -> None:
    """The chart with dind.tmpPath /tmp/ and no /tmp of Kestra's own (before the fix)."""
    spec = d["spec"]["template"]["spec"]
    for container in spec["containers"]:
        mounts = container["volumeMounts"]
        container["volumeMounts"] = [
            {**m, "mountPath": "/tmp/"} if m["name"] == "docker-tmp" else m
            for m in mounts
            if m["name"] != "tmp"
        ]


def no_revision(d: dict[str, Any]) -> None:
    d["spec"]["template"]["metadata"]["annotations"] = {
        "secrets-revision": "kestra-secrets-revision"
    }


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (chart_default_probe, "start-up probe gives Kestra 121s, needs at least 600s"),
        (shared_tmp, "/tmp volume docker-tmp is also mounted in ['kestra-standalone-docker-dind']"),
        (no_revision, "pod annotation secrets-revision is not a hash-suffixed"),
    ],
    ids=["chart-default-probe", "dind-tmp", "no-hash"],
)
def test_check_fails_naming_the_problem(break_it: Any, message: str, tmp_path: Path) -> None:
    deployment = copy.deepcopy(chart_deployment())
    break_it(deployment)
    out = run_check([deployment], tmp_path)
    assert out.returncode == 1
    assert message in out.stderr, out.stderr


def test_check_reads_kubectls_list_output(tmp_path: Path) -> None:
    out = run_check([{"kind": "List", "items": [chart_deployment()]}], tmp_path)
    assert out.returncode == 0, out.stderr
