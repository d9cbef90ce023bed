#!/usr/bin/env bash
# Every plugin type the flows use is a plugin class of the deployed Kestra image (the one
# the HelmRelease pins, tools/e2e/images.py): `kestra plugins list --core` run in the image
# itself, read by tools/e2e/check_plugin_types.py.
#
#   tools/e2e/check-plugins.sh         (after tools/e2e/images.sh pull)
set -euo pipefail
cd "$(dirname "$0")/../.."

python=${PYTHON:-.venv/bin/python}
image=$("$python" tools/e2e/images.py list | grep '^kestra/kestra:')
listing=$(mktemp)
trap 'rm -f "$listing"' EXIT
docker run --rm "$image" plugins list --core --plugins /app/plugins >"$listing"
"$python" tools/e2e/check_plugin_types.py "$listing" pipelines/*.yml
