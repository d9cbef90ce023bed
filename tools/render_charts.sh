#!/usr/bin/env bash
# Render every HelmRelease the way Flux's helm-controller installs it (chart version,
# spec.values, release name and namespace) and check what the charts really produce:
# kubeconform for the schemas, checkov for security, with the same .checkov.yaml as the
# plain manifests. Each chart is scanned beside the rest of its Flux path, so checkov
# sees the NetworkPolicies that select the chart's pods. Per-resource skips are checked
# too: they may only cover privileged sidecars (tools/helm_releases.py verify). Kestra's
# Deployment is checked for what the values must achieve (tools/e2e/check_kestra_deployment.py).
#
#   tools/render_charts.sh [KUSTOMIZE_DIR...]
#
# Default dirs: the Flux paths that hold HelmReleases. Charts come from the release's
# HelmRepository (`helm template --repo URL --version V`), as in GitHub Actions (the
# `manifests` job of .github/workflows/ci.yml). Offline development: LOCAL_CHARTS=DIR
# reads chart NAME from DIR/NAME (a chart source with its dependencies in charts/); its
# Chart.yaml must carry the pinned version. RENDER_DIR keeps the output (default: temp).
# Needs helm, kubectl, checkov and a python with pyyaml; kubeconform is required under CI.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-.venv-ops/bin/python}
checkov=${CHECKOV:-.venv-ops/bin/checkov}
helm=${HELM:-helm}
kube_version=1.32.0
if (($# == 0)); then
  set -- k8s/infrastructure/controllers k8s/infrastructure/production
fi
out=${RENDER_DIR:-$(mktemp -d)}
mkdir -p "$out"

# CI pins helm (HELM_VERSION in ci.yml): refuse to render with another one.
if [[ -n ${HELM_VERSION:-} ]] && [[ $("$helm" version --short) != "${HELM_VERSION}+"* ]]; then
  echo "helm is $("$helm" version --short), expected ${HELM_VERSION}" >&2
  exit 1
fi
if ! command -v kubeconform >/dev/null; then
  if [[ -n ${CI:-} ]]; then
    echo "kubeconform is required under CI" >&2
    exit 1
  fi
  echo "kubeconform not found: schema validation skipped here (it runs in CI)" >&2
fi

chart_ref() { # chart version repo_url -> helm template arguments for the chart
  local chart=$1 version=$2 repo=$3 dir pinned
  if [[ -z ${LOCAL_CHARTS:-} ]]; then
    printf '%s\n' "$chart" --repo "$repo" --version "$version"
    return
  fi
  dir=${LOCAL_CHARTS}/${chart}
  pinned=$("$python" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["version"])' \
    "${dir}/Chart.yaml")
  if [[ $pinned != "$version" ]]; then
    echo "${dir} is chart ${chart} ${pinned}, the HelmRelease pins ${version}" >&2
    return 1
  fi
  printf '%s\n' "$dir"
}

status=0
for source in "$@"; do
  work=${out}/$(echo "$source" | tr / -)
  mkdir -p "$work"
  kubectl kustomize --load-restrictor LoadRestrictionsNone "$source" >"${work}/kustomized.yaml"
  mkdir -p "${work}-values"
  plan=$("$python" tools/helm_releases.py plan "${work}/kustomized.yaml" "${work}-values")
  if [[ -z $plan ]]; then
    echo "${source}: no HelmRelease" >&2
    exit 1
  fi
  while IFS=$'\t' read -r release namespace chart version repo values; do
    echo "--- ${source}: ${release} (${chart} ${version}) in ${namespace}"
    mapfile -t ref < <(chart_ref "$chart" "$version" "$repo")
    ((${#ref[@]})) || exit 1
    rendered=${work}/chart-${release}.yaml
    "$helm" template "$release" "${ref[@]}" --namespace "$namespace" --values "$values" \
      --include-crds --kube-version "$kube_version" |
      "$python" tools/helm_releases.py place "$namespace" >"$rendered"
    "$python" tools/helm_releases.py verify "$rendered" || status=1
    if [[ $chart == kestra ]]; then
      # What our values must make of the chart: start-up probe, Kestra's own /tmp, and the
      # secrets-revision pod annotation (a changed Secret restarts Kestra).
      "$python" tools/e2e/check_kestra_deployment.py "$rendered" || status=1
    fi
    if command -v kubeconform >/dev/null; then
      kubeconform -strict -summary -kubernetes-version "$kube_version" "$rendered" || status=1
    fi
  done <<<"$plan"
  echo "--- ${source}: checkov (charts and manifests together)"
  BC_SKIP_MAPPING=TRUE "$checkov" -d "$work" --config-file .checkov.yaml \
    --skip-download --compact --quiet || status=1
done
exit "$status"
