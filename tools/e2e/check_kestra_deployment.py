"""Check Kestra's Deployment as the chart rendered it (or as the cluster holds it).

    check_kestra_deployment.py FILE      (YAML stream: `helm template` output, or
                                          `kubectl get deployment -o yaml`; `-` = stdin)

Run on the chart's real render by tools/render_charts.sh (ci.yml's `manifests` job) and on
the live Deployment by the e2e workflow. The Kestra container (`kestra-*`, chart 1.0.54
templates/deployment.yaml) must have:
- a start-up probe on /health with at least MIN_STARTUP_S to succeed
  (initialDelaySeconds + periodSeconds x failureThreshold; the kubelet restarts the
  container when it runs out);
- its own writable /tmp: an emptyDir no other container mounts (dind shares only the
  working-directory volume, mounted at the same path in both);
- the pod annotation `secrets-revision` carrying the hash-suffixed name kustomize generated
  from the Secret files, so that a changed Secret is a new pod template (a restart).
Standard library + PyYAML. Exit 1 naming every problem.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import yaml

MIN_STARTUP_S = 600
REVISION = re.compile(r"kestra-secrets-revision-[a-z0-9]{10}")


def problems(deployment: dict[str, Any]) -> list[str]:
    found = []
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    containers = {c["name"]: c for c in spec["containers"]}
    kestra = [c for n, c in containers.items() if n.startswith("kestra-") and "dind" not in n]
    if len(kestra) != 1:
        return [f"expected one Kestra container, found {sorted(containers)}"]
    (container,) = kestra
    probe = container.get("startupProbe") or {}
    budget = probe.get("initialDelaySeconds", 0) + probe.get("periodSeconds", 10) * probe.get(
        "failureThreshold", 3
    )
    if (probe.get("httpGet") or {}).get("path") != "/health":
        found.append(f"start-up probe is not an HTTP GET of /health: {probe}")
    if budget < MIN_STARTUP_S:
        found.append(f"start-up probe gives Kestra {budget}s, needs at least {MIN_STARTUP_S}s")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["mountPath"].rstrip("/") or "/": m["name"] for m in container["volumeMounts"]}
    tmp = mounts.get("/tmp")
    if tmp is None or "emptyDir" not in volumes.get(tmp, {}):
        found.append(f"/tmp of {container['name']} is not an emptyDir: {tmp}")
    else:
        sharing = [
            c["name"]
            for c in containers.values()
            if c is not container and any(m["name"] == tmp for m in c.get("volumeMounts", []))
        ]
        if sharing:
            found.append(f"/tmp volume {tmp} is also mounted in {sharing}: not Kestra's own")
    annotation = (pod["metadata"].get("annotations") or {}).get("secrets-revision", "")
    if not REVISION.fullmatch(annotation):
        found.append(
            "pod annotation secrets-revision is not a hash-suffixed kestra-secrets-revision "
            f"name: {annotation!r}"
        )
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    text = sys.stdin.read() if argv[0] == "-" else open(argv[0]).read()  # noqa: SIM115
    docs = [d for d in yaml.safe_load_all(text) if d]
    if len(docs) == 1 and docs[0].get("kind") == "List":
        docs = docs[0]["items"]
    deployments = [
        d
        for d in docs
        if d.get("kind") == "Deployment"
        and any(
            c["name"].startswith("kestra-") for c in d["spec"]["template"]["spec"]["containers"]
        )
    ]
    if len(deployments) != 1:
        print(f"error: expected one Kestra Deployment, found {len(deployments)}", file=sys.stderr)
        return 1
    (deployment,) = deployments
    found = problems(deployment)
    for problem in found:
        print(f"FAILED Deployment {deployment['metadata']['name']}: {problem}", file=sys.stderr)
    if not found:
        print(
            f"ok Deployment {deployment['metadata']['name']}: start-up probe, /tmp, secrets-revision"
        )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
