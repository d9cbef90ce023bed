#!/usr/bin/env bash
# Lets rootless dind start on this runner. Kestra's dind sidecar runs in the chart's rootless
# mode (k8s/infrastructure/kestra/release.yaml, dind.mode): dockerd creates a user namespace
# as an unprivileged user, which Ubuntu 24.04 (GitHub's ubuntu-24.04 runner) restricts with
# AppArmor (kernel.apparmor_restrict_unprivileged_userns=1). kind's nodes are containers on
# this kernel, so the setting is the runner's. Kestra's docker-compose-dind.yml gives the
# same fix for Ubuntu 24.04 hosts; production nodes need it too (k8s/README.md, "Prerequisites").
#
#   tools/e2e/allow-userns.sh
set -euo pipefail

key=kernel.apparmor_restrict_unprivileged_userns
if ! current=$(sysctl -n "$key" 2>/dev/null); then
  echo "$key does not exist on this kernel: user namespaces are not restricted by AppArmor"
  exit 0
fi
echo "$key was $current"
if [[ $current != 0 ]]; then
  sudo sysctl -w "$key=0"
fi
[[ $(sysctl -n "$key") == 0 ]] || {
  echo "error: $key is still $(sysctl -n "$key")" >&2
  exit 1
}
