#!/usr/bin/env bash
# The stand-ins for the stack's official images (deploy/stand-ins/Dockerfile), for
# deploy/compose.stand-ins.yaml where Docker Hub and ghcr.io cannot be reached.
#
#   deploy/stand-ins/build.sh [IMAGE_TAG]        (default sentiment-stand-in:latest)
#
# SENTIMENT_BASE_IMAGE and SENTIMENT_EXTRA_CA as for deploy/image/build.sh. Prints the tag,
# the size and the build time.
set -euo pipefail
cd "$(dirname "$0")/../.."
image=${1:-sentiment-stand-in:latest}
base=${SENTIMENT_BASE_IMAGE:-python:3.11-slim}
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp deploy/stand-ins/Dockerfile deploy/stand-ins/postgres-entrypoint.sh "$context/"
# The project's pins (MLflow's version is the client's; drivers and moto as tested).
grep -h '==' requirements/main.lock requirements/dev.lock > "$context/constraints.txt"
mkdir "$context/ca"
if [ -n "${SENTIMENT_EXTRA_CA:-}" ]; then
  cp "$SENTIMENT_EXTRA_CA" "$context/ca/extra.pem"
else
  : > "$context/ca/extra.pem"
fi
started=$(date +%s)
DOCKER_BUILDKIT=0 docker build --quiet --build-arg BASE_IMAGE="$base" --tag "$image" \
  "$context" >/dev/null
docker image prune --force --filter label=org.review-sentiment.stage=stand-in-venv >/dev/null
size=$(docker image inspect --format '{{.Size}}' "$image")
echo "stand-ins: $image ($((size / 1000000)) MB, base $base, $(( $(date +%s) - started )) s)"
