#!/usr/bin/env bash
# Pushes a prepared source tree (tools/e2e/make-source.sh) as the OCI artifact that the CI
# cluster's OCIRepository (k8s/clusters/ci/flux-system/sync.yaml) pulls. The job's registry
# (helm/kind-action `registry: true`) listens on localhost:5000 on the runner and is
# `kind-registry:5000` inside the kind network: same registry, two names.
#
#   tools/e2e/push-source.sh SOURCE_DIR
set -euo pipefail

source_dir=${1:?usage: $0 SOURCE_DIR}
registry=${REGISTRY:-localhost:5000}
repository=chess-pipelines
tag=ci

flux push artifact "oci://${registry}/${repository}:${tag}" \
  --path="$source_dir" \
  --source="$(git config --get remote.origin.url)" \
  --revision="${GITHUB_REF_NAME:-local}@sha1:$(git rev-parse HEAD)"
