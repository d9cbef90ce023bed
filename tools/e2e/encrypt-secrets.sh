#!/usr/bin/env bash
# k8s/README.md "2. Secrets", run on a copy of the repository: put the age
# recipient into .sops.yaml, then `sops --encrypt --in-place` each Secret file.
#
#   tools/e2e/encrypt-secrets.sh TREE AGE_RECIPIENT
#
# TREE is a checkout (or a copy) whose Secret files already hold values (ci_secrets.py fill).
# SOPS names the sops binary (default: sops on PATH).
set -euo pipefail

tree=${1:?usage: $0 TREE AGE_RECIPIENT}
recipient=${2:?usage: $0 TREE AGE_RECIPIENT}
sops=${SOPS:-sops}

if [[ ! $recipient =~ ^age1[02-9ac-hj-np-z]{58}$ ]]; then
  echo "error: not an age recipient: '${recipient}'" >&2
  exit 2
fi
cd "$tree"
sed -i -E "s/age1[02-9ac-hj-np-z]{58}/${recipient}/" .sops.yaml
grep -q "age: ${recipient}$" .sops.yaml || {
  echo "error: no age recipient to replace in ${tree}/.sops.yaml" >&2
  exit 1
}
shopt -s nullglob
files=(k8s/infrastructure/production/*.sops.yaml)
if ((${#files[@]} == 0)); then
  echo "error: no k8s/infrastructure/production/*.sops.yaml in ${tree}" >&2
  exit 1
fi
for file in "${files[@]}"; do
  "$sops" --encrypt --in-place "$file"
  echo "encrypted ${file}"
done
