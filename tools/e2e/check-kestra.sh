#!/usr/bin/env bash
# Asserts through Kestra's API (tools/e2e/check_kestra.py) that every flow of pipelines/ and
# every namespace file of pipelines/dlt/ is in the kind cluster's Kestra and that each flow,
# run as its Schedule runs it, ends in SUCCESS; then that the games the fake Chess.com API
# served landed in the Snowflake emulator (tools/e2e/check_games.py). The Kestra credentials
# are the ones Flux decrypted into the cluster (proving the SOPS path); they stay in this
# process's environment and are never printed.
#
#   tools/e2e/check-kestra.sh VALUES_DIR      (after tools/e2e/wait-ready.sh)
#   tools/e2e/check-kestra.sh --no-run        (API, flows and files only)
set -euo pipefail
cd "$(dirname "$0")/../.."

namespace=kestra
services=chess-e2e
port=${KESTRA_LOCAL_PORT:-18080}
chesscom_port=18765
snowflake_port=18766
python=${PYTHON:-.venv/bin/python}
values=${1:?usage: $0 VALUES_DIR | --no-run}
work=$(mktemp -d)

secret_field() {
  kubectl -n "$namespace" get secret kestra-basic-auth -o "jsonpath={.data.$1}" | base64 -d
}
KESTRA_USER=$(secret_field username)
KESTRA_PASSWORD=$(secret_field password)
export KESTRA_USER KESTRA_PASSWORD

"$python" tools/manifests.py plan >"$work/plan.json"

forwards=()
forward() { # namespace service local_port
  kubectl -n "$1" port-forward "svc/$2" "$3:8080" >"$work/port-forward-$2.log" 2>&1 &
  forwards+=("$!")
}
forward "$namespace" kestra "$port"
if [[ $values != --no-run ]]; then
  forward "$services" fake-chesscom "$chesscom_port"
  forward "$services" snowflake "$snowflake_port"
fi
trap 'kill "${forwards[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

status=0
args=("http://127.0.0.1:${port}" "$work/plan.json" pipelines/dlt)
[[ $values == --no-run ]] && args+=(--no-run)
"$python" tools/e2e/check_kestra.py "${args[@]}" || status=$?
if ((status == 0)) && [[ $values != --no-run ]]; then
  "$python" tools/e2e/check_games.py "http://127.0.0.1:${chesscom_port}/pub" "$snowflake_port" \
    "$values" || status=$?
fi
if ((status != 0)); then
  for log in "$work"/port-forward-*.log; do
    echo "--- ${log##*/}" >&2
    cat "$log" >&2
  done
fi
exit "$status"
