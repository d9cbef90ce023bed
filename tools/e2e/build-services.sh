#!/usr/bin/env bash
# Builds the e2e services image (tools/e2e/services.Dockerfile) from the committed files it
# needs (git archive HEAD: the same commit the job pushes to Flux), not the whole checkout.
#
#   tools/e2e/build-services.sh IMAGE
set -euo pipefail
cd "$(dirname "$0")/../.."

image=${1:?usage: $0 IMAGE}
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
git archive --format=tar HEAD \
  tests/__init__.py tests/fake_chesscom tests/snowflake_emulator \
  tools/e2e/relay.py tools/e2e/services.Dockerfile | tar -x -C "$context"
docker build --tag "$image" --file "$context/tools/e2e/services.Dockerfile" "$context"
