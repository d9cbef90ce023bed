"""The images the e2e cluster's kubelet pulls, from the manifests: pre-pulled on the runner
and `kind load`ed, so the cluster pulls nothing from Docker Hub (rate limits) or elsewhere.

    images.py list                 one image per line
    images.py check < pods.json    `kubectl get pods -A -o json`: no container of the
                                   kestra and chess-e2e namespaces runs a Docker Hub image
                                   that is not listed (others are only reported)

Sources: the Kestra HelmRelease (image.tag, dind.base.rootless.image.tag) over the chart's
defaults for the repositories (kestra 1.0.54 values.yaml: image.repository `kestra/kestra`,
dind.base.rootless.image.repository `docker`), the CloudNativePG Cluster's imageName, the
sync Job's image, and the e2e services image (tools/e2e/build-services.sh). Not listed:
the CloudNativePG operator (ghcr.io, from its chart) and what the Kestra task pulls inside
dind (ghcr.io/astral-sh/uv, the flow's containerImage): kind cannot load into dind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRASTRUCTURE = "k8s/infrastructure/ci"
APPS = "k8s/apps/production"
SERVICES_IMAGE = "chess-e2e-services:ci"
CHART_DEFAULTS = {"kestra": "kestra/kestra", "dind": "docker"}
NAMESPACES = ("kestra", "chess-e2e")


def render(path: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["kubectl", "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(ROOT / path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def images() -> list[str]:
    objects = render(INFRASTRUCTURE) + render(APPS)
    found = []
    for obj in objects:
        kind, spec = obj["kind"], obj.get("spec", {})
        if kind == "HelmRelease" and obj["metadata"]["name"] == "kestra":
            values = spec["values"]
            image = values.get("image", {})
            found.append(f"{image.get('repository', CHART_DEFAULTS['kestra'])}:{image['tag']}")
            dind = values["dind"]["base"][values["dind"].get("mode", "rootless")]["image"]
            found.append(f"{dind.get('repository', CHART_DEFAULTS['dind'])}:{dind['tag']}")
        elif kind == "Cluster":
            found.append(spec["imageName"])
        elif kind == "Job":
            found += [c["image"] for c in spec["template"]["spec"]["containers"]]
    return [*sorted(set(found)), SERVICES_IMAGE]


def docker_hub(image: str) -> bool:
    """A reference without a registry host is Docker Hub's (docker/distribution reference:
    the first component is a host only if it has a `.` or `:` or is `localhost`)."""
    first, _, rest = image.partition("/")
    return not rest or not ("." in first or ":" in first or first == "localhost")


def unlisted(pods: dict[str, Any], listed: list[str]) -> list[str]:
    """`namespace/pod: image` of containers whose image is not in `listed`."""
    found = []
    for pod in pods["items"]:
        namespace = pod["metadata"]["namespace"]
        if namespace not in NAMESPACES:
            continue
        spec = pod["spec"]
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            if container["image"] not in listed:
                found.append(f"{namespace}/{pod['metadata']['name']}: {container['image']}")
    return found


def main(argv: list[str]) -> int:
    if argv == ["list"]:
        print("\n".join(images()))
        return 0
    if argv == ["check"]:
        pulled = unlisted(json.load(sys.stdin), images())
        problems = [p for p in pulled if docker_hub(p.rsplit(": ", 1)[1])]
        for other in sorted(set(pulled) - set(problems)):
            print(f"note {other} was pulled from its registry")
        for problem in problems:
            print(
                f"FAILED {problem} was pulled, not pre-loaded (add it to tools/e2e/images.py)",
                file=sys.stderr,
            )
        if not problems:
            print(
                "ok no Docker Hub image of " + ", ".join(NAMESPACES) + " was pulled by the cluster"
            )
        return 1 if problems else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
