#!/usr/bin/env bash
# The images the e2e cluster's kubelet needs (tools/e2e/images.py list): pulled on the runner
# first (Docker Hub's anonymous rate limit is per IP and GitHub's runners share IPs: a pull
# is retried), then loaded into the kind node, so the cluster itself pulls none of them.
# The e2e services image is built locally (tools/e2e/build-services.sh), never pulled.
#
#   tools/e2e/images.sh pull
#   tools/e2e/images.sh load CLUSTER
set -euo pipefail
cd "$(dirname "$0")/../.."

python=${PYTHON:-.venv/bin/python}
mapfile -t images < <("$python" tools/e2e/images.py list)
((${#images[@]})) || {
  echo "error: no image listed" >&2
  exit 1
}

case "${1:-}" in
  pull)
    for image in "${images[@]}"; do
      [[ $image == chess-e2e-services:* ]] && continue
      for attempt in 1 2 3; do
        docker pull --quiet "$image" && break
        ((attempt < 3)) || exit 1
        echo "pull of $image failed (attempt $attempt), retrying" >&2
        sleep $((attempt * 30))
      done
    done
    ;;
  load)
    cluster=${2:?usage: $0 load CLUSTER}
    kind load docker-image --name "$cluster" "${images[@]}"
    ;;
  *)
    echo "usage: $0 pull | load CLUSTER" >&2
    exit 2
    ;;
esac
