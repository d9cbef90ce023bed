#!/usr/bin/env bash
# On failure: what Flux, the controllers and Kestra's pods say. Never stops early.
set -uo pipefail

section() { echo "::group::$*"; }
end() { echo "::endgroup::"; }

section "flux get all -A"
flux get all -A
end
section "events"
kubectl get events -A --sort-by=.lastTimestamp | tail -n 150
end
for controller in source-controller kustomize-controller helm-controller; do
  section "logs ${controller}"
  kubectl -n flux-system logs "deploy/${controller}" --tail=200
  end
done
section "pods"
kubectl get pods -A -o wide
end
for ns in kestra cnpg-system chess-e2e; do
  for pod in $(kubectl -n "$ns" get pods -o name); do
    section "logs ${ns}/${pod}"
    kubectl -n "$ns" describe "$pod" | tail -n 40
    kubectl -n "$ns" logs "$pod" --all-containers --tail=200
    end
  done
done
exit 0
