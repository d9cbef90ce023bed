#!/usr/bin/env bash
# Deploys the e2e services (tools/e2e/services.yaml) with their inputs: the players of
# pipelines/dlt/.dlt/config.toml (what the flow's Schedule loads) for the fake Chess.com
# API, and bootstrap.sql with the job's public key for the Snowflake emulator.
#
#   tools/e2e/deploy-services.sh ACCOUNT_DIR      (after tools/e2e/e2e_values.py)
set -euo pipefail
cd "$(dirname "$0")/../.."

account=${1:?usage: $0 ACCOUNT_DIR}
python=${PYTHON:-.venv/bin/python}
namespace=chess-e2e

players=$("$python" -c '
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print(",".join(tomllib.load(f)["sources"]["chess"]["players"]))
' pipelines/dlt/.dlt/config.toml)

kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$namespace" create configmap e2e-world --from-literal=players="$players" \
  --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$namespace" create configmap snowflake-account \
  --from-file=bootstrap.sql="$account/bootstrap.sql" --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -f tools/e2e/services.yaml
kubectl -n "$namespace" rollout status deployment/fake-chesscom --timeout=5m
kubectl -n "$namespace" rollout status deployment/snowflake --timeout=5m
echo "e2e services ready: fake Chess.com API for ${players}, Snowflake emulator"
