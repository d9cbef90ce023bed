"""Offline checks of k8s/: every Flux path renders, kinds validate, references resolve,
checkov passes, pins agree, and no secret value is committed in clear."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

import manifests
from tests.conftest import ROOT

K8S = ROOT / "k8s"
CLUSTER = K8S / "clusters" / "production"
OPS_BIN = ROOT / ".venv-ops" / "bin"
FLOWS = sorted((ROOT / "pipelines").glob("*.yml"))
FLUX_API = {
    "GitRepository": "source.toolkit.fluxcd.io/v1",
    "HelmRepository": "source.toolkit.fluxcd.io/v1",
    "OCIRepository": "source.toolkit.fluxcd.io/v1",
    "Kustomization": "kustomize.toolkit.fluxcd.io/v1",
    "HelmRelease": "helm.toolkit.fluxcd.io/v2",
}
CRD_KINDS = {*FLUX_API, "Cluster"}
# Chart version -> the Kestra version it ships (charts/kestra/Chart.yaml appVersion).
KESTRA_CHART_APP = {"1.0.54": "v1.3.15"}
PLACEHOLDERS = {"CHANGE_ME", base64.b64encode(b"CHANGE_ME").decode()}
SOPS_VALUE = re.compile(r"^ENC\[AES256_GCM,data:.*,type:\w+\]$")


def tool(name: str, path: Path | None = None) -> str:
    """A required tool: missing under CI is a failure, elsewhere a clear skip."""
    found = str(path) if path and path.exists() else shutil.which(name)
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail(f"{name} is required under CI and was not found")
    pytest.skip(f"{name} not installed (kubectl: see tests/README.md; ops tools: `make install`)")


def load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@cache
def render(path: str) -> tuple[dict[str, Any], ...]:
    kubectl = tool("kubectl")
    out = subprocess.run(
        [kubectl, "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(ROOT / path)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, f"kustomize build {path} failed:\n{out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def flux_kustomizations() -> list[dict[str, Any]]:
    docs = [d for f in sorted(CLUSTER.rglob("*.yaml")) for d in load_all(f)]
    return [d for d in docs if d.get("kind") == "Kustomization" and "spec" in d]


KUSTOMIZATIONS = flux_kustomizations()
BY_NAME = {k["metadata"]["name"]: k for k in KUSTOMIZATIONS}


def rendered(name: str) -> tuple[dict[str, Any], ...]:
    return render(BY_NAME[name]["spec"]["path"].removeprefix("./"))


def all_rendered() -> list[dict[str, Any]]:
    return [obj for name in BY_NAME for obj in rendered(name)]


def find(kind: str, name: str) -> dict[str, Any]:
    (obj,) = [o for o in all_rendered() if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def test_cluster_has_the_expected_chain() -> None:
    assert set(BY_NAME) == {
        "flux-system",
        "infra-controllers",
        "infrastructure",
        "apps",
        "monitoring",
    }
    assert BY_NAME["infrastructure"]["spec"]["dependsOn"] == [{"name": "infra-controllers"}]
    assert BY_NAME["apps"]["spec"]["dependsOn"] == [{"name": "infrastructure"}]


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_flux_kustomization_path_renders(name: str) -> None:
    spec = BY_NAME[name]["spec"]
    path = ROOT / spec["path"].removeprefix("./")
    assert path.is_dir(), f"{name}: path {spec['path']} does not exist"
    assert rendered(name), f"{name}: renders nothing"
    assert spec["prune"] is True
    if name != "flux-system":
        assert spec.get("wait") is True, f"{name}: wait for health before dependants start"


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_flux_references_resolve(name: str) -> None:
    spec = BY_NAME[name]["spec"]
    for dep in spec.get("dependsOn", []):
        assert dep["name"] in BY_NAME, f"{name} depends on unknown {dep['name']}"
    source = spec["sourceRef"]
    repos = [o for o in rendered("flux-system") if o["kind"] == source["kind"]]
    assert source["name"] in {r["metadata"]["name"] for r in repos}
    if any(o["kind"] == "Secret" for o in rendered(name)):
        assert spec.get("decryption") == {"provider": "sops", "secretRef": {"name": "sops-age"}}


def test_flux_api_versions_are_current() -> None:
    for obj in all_rendered():
        if obj["kind"] in FLUX_API:
            assert obj["apiVersion"] == FLUX_API[obj["kind"]], obj["metadata"]["name"]


def test_helm_releases_reference_rendered_repositories() -> None:
    for name in BY_NAME:
        objects = rendered(name)
        repos = {
            (o["metadata"].get("namespace"), o["metadata"]["name"])
            for o in objects
            if o["kind"] == "HelmRepository"
        }
        for release in (o for o in objects if o["kind"] == "HelmRelease"):
            ref = release["spec"]["chart"]["spec"]["sourceRef"]
            namespace = ref.get("namespace", release["metadata"].get("namespace"))
            assert ref["kind"] == "HelmRepository"
            assert (namespace, ref["name"]) in repos, release["metadata"]["name"]
            assert re.fullmatch(r"\d+\.\d+\.\d+", release["spec"]["chart"]["spec"]["version"])


def without_sops_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as Flux applies it: kustomize-controller decrypts an encrypted resource and
    the top-level `sops:` key (unknown to strict schemas) does not reach the cluster."""
    return {k: v for k, v in obj.items() if k != "sops"}


def test_core_kinds_validate_strictly(tmp_path: Path) -> None:
    validator = tool("kubernetes-validate", OPS_BIN / "kubernetes-validate")
    core = [o for o in all_rendered() if o["kind"] not in CRD_KINDS]
    assert {"Namespace", "Secret", "Job", "ConfigMap", "NetworkPolicy"} <= {o["kind"] for o in core}
    file = tmp_path / "core.yaml"
    file.write_text(yaml.safe_dump_all([without_sops_metadata(o) for o in core]))
    out = subprocess.run(
        [validator, "--strict", "--quiet", "-k", "1.32.0", str(file)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_checkov_passes_on_rendered_manifests(tmp_path: Path) -> None:
    checkov = tool("checkov", OPS_BIN / "checkov")
    for name in BY_NAME:
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump_all(list(rendered(name))))
    out = subprocess.run(
        [
            checkov,
            "-d",
            str(tmp_path),
            "--config-file",
            str(ROOT / ".checkov.yaml"),
            "--skip-download",
            "--compact",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"Passed checks: [1-9]\d*, Failed checks: 0", out.stdout), out.stdout


def test_every_checkov_skip_has_a_reason() -> None:
    lines = (ROOT / ".checkov.yaml").read_text().splitlines()
    skips = [i for i, line in enumerate(lines) if re.match(r"\s+- CKV", line)]
    assert skips
    for i in skips:
        assert lines[i - 1].strip().startswith("#"), f"no reason above {lines[i].strip()}"


def test_kestra_version_pins_agree() -> None:
    release = find("HelmRelease", "kestra")
    chart = release["spec"]["chart"]["spec"]["version"]
    tag = release["spec"]["values"]["image"]["tag"]
    assert KESTRA_CHART_APP[chart] == tag
    assert tag.startswith("v1.3."), "flow validate / namespace update need Kestra 1.3.x"
    ci = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    assert ci["env"]["KESTRA_IMAGE"] == f"kestra/kestra:{tag}"


def test_sync_job_runs_in_the_flows_pinned_python_image() -> None:
    """sync.py needs Python's standard library only: the image the flows' tasks already pin
    (no other image to keep current)."""
    (container,) = find("Job", "pipelines-sync")["spec"]["template"]["spec"]["containers"]
    images = {
        task["containerImage"]
        for f in FLOWS
        for task in yaml.safe_load(f.read_text())["tasks"]
        if "containerImage" in task
    }
    assert images == {container["image"]}
    assert container["command"] == ["python3", "/sync/sync.py"]


def test_flow_secrets_reach_kestra_with_the_secret_prefix() -> None:
    values = find("HelmRelease", "kestra")["spec"]["values"]
    (env_from,) = values["common"]["extraEnvFrom"]
    assert env_from == {"prefix": "SECRET_", "secretRef": {"name": "kestra-secrets"}}
    secret = find("Secret", "kestra-secrets")
    used = {n for f in FLOWS for n in re.findall(r"secret\('([^']+)'\)", f.read_text())}
    assert used == set(secret["stringData"]), "every flow secret deployed, no orphan secret"


def test_kestra_secret_values_are_base64_as_kestra_requires() -> None:
    for key, value in find("Secret", "kestra-secrets")["stringData"].items():
        if SOPS_VALUE.match(value):
            continue
        base64.b64decode(value, validate=True)  # Kestra silently skips non-base64 values
        assert value, key


def test_sync_configmaps_carry_every_flow_and_code_file_verbatim() -> None:
    """What Flux applies holds pipelines/ as it is in git: nothing missing, nothing stale."""
    assert manifests.stale() == [], "k8s/apps/pipelines is stale: run `make manifests`"
    plan = manifests.build_plan()
    by_name = {
        cm["metadata"]["name"].rsplit("-", 1)[0]: cm
        for cm in rendered("apps")
        if cm["kind"] == "ConfigMap"
    }
    assert set(by_name) == {
        "pipelines-sync",
        "pipelines-flows",
        "pipelines-code",
        "pipelines-sync-credentials-revision",
    }
    code = ROOT / "pipelines" / "dlt"
    assert by_name["pipelines-code"]["data"] == {
        key: (code / path).read_text() for path, key in plan.files.items()
    }
    assert by_name["pipelines-flows"]["data"] == {f.name: f.read_text() for f in FLOWS}
    sync_dir = K8S / "apps" / "pipelines"
    assert by_name["pipelines-sync"]["data"] == {
        name: (sync_dir / name).read_text() for name in ("sync.py", "sync-plan.tsv")
    }


def test_sync_job_is_recreated_on_change_and_keeps_its_configmaps() -> None:
    assert BY_NAME["apps"]["spec"]["force"] is True
    configmaps = [
        o
        for o in rendered("apps")
        if o["kind"] == "ConfigMap" and "-revision-" not in o["metadata"]["name"]
    ]
    for cm in configmaps:
        assert re.search(r"-[a-z0-9]{10}$", cm["metadata"]["name"]), "name hash drives the rollout"
        assert cm["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/prune"] == "Disabled"
    job = find("Job", "pipelines-sync")
    names = {
        v["configMap"]["name"]
        for v in job["spec"]["template"]["spec"]["volumes"]
        if "configMap" in v
    }
    assert names == {cm["metadata"]["name"] for cm in configmaps}


def test_workloads_are_non_root_and_limited() -> None:
    job = find("Job", "pipelines-sync")["spec"]["template"]["spec"]
    assert job["securityContext"]["runAsNonRoot"] is True
    for container in job["containers"]:
        assert container["resources"]["limits"] and container["resources"]["requests"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    kestra = find("HelmRelease", "kestra")["spec"]["values"]
    assert kestra["common"]["podSecurityContext"]["runAsNonRoot"] is True
    assert kestra["common"]["resources"]["limits"] and kestra["dind"]["resources"]["limits"]
    cnpg = find("HelmRelease", "cloudnative-pg")["spec"]["values"]
    assert cnpg["resources"]["limits"]
    assert find("Cluster", "kestra-db")["spec"]["resources"]["limits"]
    assert (
        "dind" in (ROOT / "k8s" / "README.md").read_text()
        and "privileged" in (ROOT / "k8s" / "README.md").read_text()
    )


def test_namespace_has_a_default_deny_network_policy() -> None:
    policy = find("NetworkPolicy", "default-deny-ingress")
    assert policy["metadata"]["namespace"] == "kestra"
    assert policy["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}


def committed_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode == 0 and out.stdout:
        return [ROOT / line for line in out.stdout.splitlines()]
    return [p for p in ROOT.rglob("*") if p.is_file() and ".venv" not in str(p)]


def secret_leaks(files: list[Path]) -> list[str]:
    """Secret values in clear (not SOPS-encrypted, not a placeholder) and key material."""
    leaks = []
    for file in files:
        if not file.exists() or file.suffix == ".lock" or file.stat().st_size > 1_000_000:
            continue
        text = file.read_text(errors="ignore")
        if re.search(
            r"-----BEGIN (RSA |EC |OPENSSH |ENCRYPTED )?PRIVATE KEY-----\s*[A-Za-z0-9+/]{40}", text
        ):
            leaks.append(f"{file}: private key")
        if re.search(r"hooks\.slack\.com/services/T[A-Z0-9]+/", text):
            leaks.append(f"{file}: Slack webhook")
        if re.search(r"AGE-SECRET-KEY-1[0-9A-Z]{20,}", text):
            leaks.append(f"{file}: age private key")
        if file.suffix in (".yaml", ".yml") and "kind: Secret" in text:
            for doc in yaml.safe_load_all(text):
                if not doc or doc.get("kind") != "Secret":
                    continue
                for section in ("data", "stringData"):
                    for key, value in (doc.get(section) or {}).items():
                        if value not in PLACEHOLDERS and not SOPS_VALUE.match(str(value)):
                            leaks.append(f"{file}: {doc['metadata']['name']}.{key} is in clear")
    return leaks


def test_no_unencrypted_secret_values_in_git() -> None:
    """Secrets in git are SOPS-encrypted or placeholders; no key material anywhere."""
    assert secret_leaks(committed_files()) == []


def test_secret_scan_catches_clear_values_and_keys(tmp_path: Path) -> None:
    clear = tmp_path / "secret.yaml"
    clear.write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n"
        "stringData:\n  ok: CHANGE_ME\n  enc: ENC[AES256_GCM,data:abc=,iv:x,tag:y,type:str]\n"
        "  bad: hunter2\n"
    )
    key = tmp_path / "key.txt"
    key.write_text("-----BEGIN PRIVATE KEY-----\n" + "A" * 64 + "\n-----END PRIVATE KEY-----\n")
    leaks = secret_leaks([clear, key])
    assert leaks == [f"{clear}: s.bad is in clear", f"{key}: private key"]


def test_sops_rules_cover_the_secret_files() -> None:
    sops = yaml.safe_load((ROOT / ".sops.yaml").read_text())
    (rule,) = sops["creation_rules"]
    assert rule["encrypted_regex"] == "^(data|stringData)$"
    pattern = re.compile(rule["path_regex"])
    secret_files = [p for p in K8S.rglob("*.yaml") if "kind: Secret" in p.read_text()]
    assert secret_files
    for file in secret_files:
        assert pattern.search(str(file.relative_to(ROOT))), file
