#!/usr/bin/env bash
# Asserts through Kestra's API (tools/e2e/check_kestra.py) that every flow of pipelines/ and
# every namespace file of pipelines/dlt/ is in the kind cluster's Kestra, and that an
# execution starts. The credentials are the ones Flux decrypted into the cluster (proving
# the SOPS path); they stay in this process's environment and are never printed.
#
#   tools/e2e/check-kestra.sh            (after tools/e2e/wait-ready.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."

namespace=kestra
port=${KESTRA_LOCAL_PORT:-18080}
python=${PYTHON:-.venv/bin/python}
work=$(mktemp -d)

secret_field() {
  kubectl -n "$namespace" get secret kestra-basic-auth -o "jsonpath={.data.$1}" | base64 -d
}
KESTRA_USER=$(secret_field username)
KESTRA_PASSWORD=$(secret_field password)
export KESTRA_USER KESTRA_PASSWORD

"$python" tools/manifests.py plan >"$work/plan.json"

kubectl -n "$namespace" port-forward svc/kestra "${port}:8080" >"$work/port-forward.log" 2>&1 &
forward=$!
trap 'kill "$forward" 2>/dev/null || true; rm -rf "$work"' EXIT

status=0
"$python" tools/e2e/check_kestra.py "http://127.0.0.1:${port}" "$work/plan.json" pipelines/dlt ||
  status=$?
if ((status != 0)); then
  echo "--- port-forward log" >&2
  cat "$work/port-forward.log" >&2
fi
exit "$status"
