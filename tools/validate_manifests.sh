#!/usr/bin/env bash
# Render every Kustomization under k8s/ as Flux's kustomize-controller does
# (LoadRestrictionsNone) and validate the result with kubeconform against the
# Kubernetes schemas, the Flux CRD schemas and the community CRD catalogue.
#
#   tools/validate_manifests.sh FLUX_SCHEMA_DIR
#
# FLUX_SCHEMA_DIR holds the extracted crd-schemas.tar.gz of the pinned Flux release
# (.github/workflows/ci.yml extracts it flat: files like kustomization-kustomize-v1.json).
# Needs kubectl (or kustomize) and kubeconform.
set -euo pipefail
cd "$(dirname "$0")/.."

flux_schemas=${1:?usage: $0 FLUX_SCHEMA_DIR}
kubeconform_flags=(
  -strict -summary -verbose=false
  -kubernetes-version 1.32.0
  -schema-location default
  -schema-location "${flux_schemas}/{{.ResourceKind}}{{.KindSuffix}}.json"
  -schema-location 'https://raw.githubusercontent.com/datreeio/CRDs-catalog/main/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json'
  # SOPS adds a top-level `sops:` key to encrypted Secrets that no schema knows.
  -skip Secret
)

render() {
  if command -v kustomize >/dev/null; then
    kustomize build --load-restrictor LoadRestrictionsNone "$1"
  else
    kubectl kustomize --load-restrictor LoadRestrictionsNone "$1"
  fi
}

status=0
while IFS= read -r file; do
  dir=$(dirname "$file")
  echo "--- ${dir}"
  if ! render "$dir" | kubeconform "${kubeconform_flags[@]}" -; then
    status=1
  fi
done < <(find k8s -name kustomization.yaml | sort)
exit "$status"
