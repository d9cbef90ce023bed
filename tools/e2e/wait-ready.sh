#!/usr/bin/env bash
# Waits until Flux has applied the CI cluster path (k8s/clusters/ci) in dependency order,
# Kestra's HelmRelease is healthy and the sync Job has completed.
#
#   tools/e2e/wait-ready.sh
set -euo pipefail

# Same names as k8s/clusters/production (tests/k8s/test_ci_cluster.py checks them).
kustomizations=(flux-system infra-controllers infrastructure apps)
sync_job=pipelines-sync

flux reconcile source oci flux-system -n flux-system
for name in "${kustomizations[@]}"; do
  echo "--- waiting for Kustomization ${name}"
  kubectl -n flux-system wait "kustomization/${name}" --for=condition=ready --timeout=25m
done
kubectl -n kestra wait helmrelease/kestra --for=condition=ready --timeout=5m
kubectl -n kestra wait "job/${sync_job}" --for=condition=complete --timeout=10m
kubectl -n kestra logs "job/${sync_job}" --tail=50
flux get all -A
