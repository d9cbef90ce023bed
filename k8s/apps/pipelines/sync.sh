#!/usr/bin/env bash
# Pushes the flows of pipelines/ and the files of pipelines/dlt/ into Kestra, one flow
# namespace at a time: namespace files first, then the flows, so that a new flow never
# runs old code. Git is authoritative: `--delete` removes from Kestra what left git.
#
# Runs in the sync Job (k8s/apps/pipelines/sync-job.yaml) with the Kestra image's CLI,
# and in tests/kestra/ (the execution twin) with a recording stand-in for the CLI.
# Moving to Kestra 2.x means replacing the two CLI calls below with `kestractl`
# (pipelines/README.md, "Upgrading Kestra").
#
# Inputs (env): SYNC_PLAN (sync-plan.tsv), SYNC_FLOWS_DIR and SYNC_FILES_DIR (mounted
# ConfigMaps), KESTRA_URL, KESTRA_AUTH_DIR (files `username`, `password`),
# KESTRA_CLI (default /app/kestra), SYNC_WORK_DIR (default: a new temp dir).
set -euo pipefail

: "${SYNC_PLAN:?}" "${SYNC_FLOWS_DIR:?}" "${SYNC_FILES_DIR:?}"
: "${KESTRA_URL:?}" "${KESTRA_AUTH_DIR:?}"
kestra=${KESTRA_CLI:-/app/kestra}
work=${SYNC_WORK_DIR:-$(mktemp -d)}

# ConfigMap keys are flat (`chess_com.client.py`): rebuild the tree the plan describes.
# (Mounted keys are symlinks into ..data/: cp copies their content.)
while IFS=$'\t' read -r kind first second; do
  case "$kind" in
    file)
      mkdir -p "$(dirname "$work/files/$second")"
      cp "$SYNC_FILES_DIR/$first" "$work/files/$second"
      ;;
    flow)
      mkdir -p "$work/flows/$first"
      cp "$SYNC_FLOWS_DIR/$second" "$work/flows/$first/$second"
      ;;
    '' | '#'*) ;;
    *)
      echo "sync: unknown line in $SYNC_PLAN: $kind" >&2
      exit 1
      ;;
  esac
done <"$SYNC_PLAN"
mkdir -p "$work/files"

if ! user=$(cat "$KESTRA_AUTH_DIR/username") || ! password=$(cat "$KESTRA_AUTH_DIR/password"); then
  echo "sync: cannot read Kestra's credentials in $KESTRA_AUTH_DIR as uid $(id -u)" >&2
  exit 1
fi
api=(--server "$KESTRA_URL" --user "$user:$password")

for flows in "$work"/flows/*/; do
  namespace=$(basename "$flows")
  "$kestra" namespace files update "$namespace" "$work/files" / --delete "${api[@]}"
  "$kestra" flow namespace update "$namespace" "$flows" --delete "${api[@]}"
  echo "sync: $namespace: $(find "$flows" -type f | wc -l) flow(s), $(find "$work/files" -type f | wc -l) file(s)"
done
