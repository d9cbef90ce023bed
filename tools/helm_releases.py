"""What Flux's helm-controller would install, read from kustomize-rendered manifests.

    helm_releases.py plan RENDERED.yaml OUT_DIR   one TSV line per HelmRelease:
        release  namespace  chart  version  repo_url  values_file
    helm_releases.py place NAMESPACE < chart.yaml > placed.yaml

`plan` writes each release's `spec.values` to OUT_DIR/<namespace>-<name>.values.yaml.
Release name and namespace follow helm-controller's own rules (fluxcd/helm-controller,
api/v2/helmrelease_types.go: GetReleaseName, GetReleaseNamespace). Features this script
does not model (valuesFrom, valuesFiles, postRenderers, OCI/Git chart sources) are
refused with an error naming the release, never silently ignored.

`place` puts namespaced objects without a namespace into the release namespace, as
`helm install --namespace` does: chart templates such as Kestra's leave it out.

    helm_releases.py verify RENDERED.yaml...

`verify` keeps per-resource checkov skips honest: a container-level check skipped on a
workload (annotation `checkov.io/skipN: CHECK_ID=reason`) may only be failed by that
workload's privileged containers (the dind sidecar); every other container must pass it,
since checkov would report nothing once the whole workload is skipped.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

# Kinds that have no namespace; every other kind in these charts is namespaced.
CLUSTER_SCOPED = frozenset(
    {
        "APIService",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "MutatingWebhookConfiguration",
        "Namespace",
        "PersistentVolume",
        "PriorityClass",
        "StorageClass",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
    }
)
UNSUPPORTED_SPEC = ("valuesFrom", "postRenderers", "chartRef")


class PlanError(ValueError):
    """A HelmRelease this script cannot render the way helm-controller would."""


def release_name(release: dict[str, Any]) -> str:
    """helm-controller GetReleaseName: releaseName, else [targetNamespace-]name."""
    spec, name = release["spec"], release["metadata"]["name"]
    if spec.get("releaseName"):
        return str(spec["releaseName"])
    if spec.get("targetNamespace"):
        return f"{spec['targetNamespace']}-{name}"
    return str(name)


def release_namespace(release: dict[str, Any]) -> str:
    """helm-controller GetReleaseNamespace: targetNamespace, else the object's namespace."""
    namespace = release["spec"].get("targetNamespace") or release["metadata"].get("namespace")
    if not namespace:
        raise PlanError(f"HelmRelease {release['metadata']['name']} has no namespace")
    return str(namespace)


def plan(docs: list[dict[str, Any]], out_dir: Path) -> list[tuple[str, ...]]:
    """One row per HelmRelease: release, namespace, chart, version, repo URL, values file."""
    repos = {
        (d["metadata"].get("namespace"), d["metadata"]["name"]): d
        for d in docs
        if d.get("kind") == "HelmRepository"
    }
    rows = []
    for release in (d for d in docs if d.get("kind") == "HelmRelease"):
        name, spec = release["metadata"]["name"], release["spec"]
        namespace = release["metadata"].get("namespace")
        unsupported = [key for key in UNSUPPORTED_SPEC if key in spec]
        chart = spec.get("chart", {}).get("spec", {})
        if "valuesFiles" in chart:
            unsupported.append("chart.spec.valuesFiles")
        if unsupported:
            raise PlanError(f"HelmRelease {name}: {', '.join(unsupported)} not supported here")
        ref = chart["sourceRef"]
        if ref["kind"] != "HelmRepository":
            raise PlanError(f"HelmRelease {name}: source kind {ref['kind']} not supported here")
        key = (ref.get("namespace", namespace), ref["name"])
        repo = repos.get(key)
        if repo is None:
            raise PlanError(f"HelmRelease {name}: HelmRepository {key[0]}/{key[1]} not rendered")
        if repo["spec"].get("type") == "oci":
            raise PlanError(f"HelmRelease {name}: OCI HelmRepository not supported here")
        values = out_dir / f"{namespace}-{name}.values.yaml"
        values.write_text(yaml.safe_dump(spec.get("values") or {}, sort_keys=False))
        rows.append(
            (
                release_name(release),
                release_namespace(release),
                str(chart["chart"]),
                str(chart["version"]),
                str(repo["spec"]["url"]),
                str(values),
            )
        )
    return rows


def place(docs: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """Give namespaced objects without a namespace the release namespace."""
    for doc in docs:
        if doc.get("kind") not in CLUSTER_SCOPED:
            doc.setdefault("metadata", {}).setdefault("namespace", namespace)
    return docs


# Container-level checkov checks and what passing means for one container.
CONTAINER_CHECKS: dict[str, tuple[str, Callable[[dict[str, Any]], bool]]] = {
    "CKV_K8S_8": ("a liveness probe", lambda c: bool(c.get("livenessProbe"))),
    "CKV_K8S_9": ("a readiness probe", lambda c: bool(c.get("readinessProbe"))),
    "CKV_K8S_16": ("no privileged mode", lambda c: not _security(c).get("privileged")),
    "CKV_K8S_20": (
        "allowPrivilegeEscalation false",
        lambda c: _security(c).get("allowPrivilegeEscalation") is False,
    ),
    "CKV_K8S_22": (
        "a read-only root filesystem",
        lambda c: _security(c).get("readOnlyRootFilesystem") is True,
    ),
    "CKV_K8S_28": ("capabilities drop ALL", lambda c: "ALL" in _dropped(c)),
    "CKV_K8S_37": ("capabilities drop ALL", lambda c: "ALL" in _dropped(c)),
}
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


def _security(container: dict[str, Any]) -> dict[str, Any]:
    return container.get("securityContext") or {}


def _dropped(container: dict[str, Any]) -> list[str]:
    return (_security(container).get("capabilities") or {}).get("drop") or []


def skipped_checks(doc: dict[str, Any]) -> dict[str, str]:
    """Check id -> reason, read as checkov does (kubernetes_utils.get_skipped_checks:
    annotation keys containing `checkov.io/skip`, value split at `=`)."""
    annotations = (doc.get("metadata") or {}).get("annotations") or {}
    skips = {}
    for key, value in annotations.items():
        if "checkov.io/skip" in key:
            check, _, reason = str(value).partition("=")
            skips[check.strip()] = reason.strip()
    return skips


def verify(docs: list[dict[str, Any]]) -> list[str]:
    """Skips that would hide a failing non-privileged container, one message each."""
    problems = []
    for doc in (d for d in docs if d.get("kind") in WORKLOADS):
        name = f"{doc['kind']} {doc['metadata']['name']}"
        pod = doc["spec"]["template"]["spec"]
        skipped = [c for c in skipped_checks(doc) if c in CONTAINER_CHECKS]
        privileged = [c for c in pod["containers"] if _security(c).get("privileged")]
        if skipped and not privileged:
            problems.append(f"{name}: skips {', '.join(skipped)} with no privileged container")
        for check in skipped:
            wanted, passes = CONTAINER_CHECKS[check]
            for container in pod["containers"]:
                if container not in privileged and not passes(container):
                    problems.append(
                        f"{name}: skip {check} hides container {container['name']},"
                        f" which lacks {wanted}"
                    )
    return problems


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "plan":
        docs = [d for d in yaml.safe_load_all(Path(argv[1]).read_text()) if d]
        try:
            rows = plan(docs, Path(argv[2]))
        except PlanError as error:
            print(f"helm_releases: {error}", file=sys.stderr)
            return 1
        for row in rows:
            print("\t".join(row))
        return 0
    if len(argv) == 2 and argv[0] == "place":
        docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
        yaml.safe_dump_all(place(docs, argv[1]), sys.stdout, sort_keys=False)
        return 0
    if len(argv) >= 2 and argv[0] == "verify":
        problems = [
            f"{file}: {problem}"
            for file in argv[1:]
            for problem in verify([d for d in yaml.safe_load_all(Path(file).read_text()) if d])
        ]
        for problem in problems:
            print(f"helm_releases: {problem}", file=sys.stderr)
        return 1 if problems else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
