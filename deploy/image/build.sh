#!/usr/bin/env bash
# `make image`: the serving image of the declared dataset's production model
# (`sentiment-flipkart:latest` in the BentoML store, which `make run` or `python -m sentiment.registry export` put there).
#
#   deploy/image/build.sh [IMAGE_TAG]        (default sentiment-service:latest)
#
# SENTIMENT_BASE_IMAGE picks the base (default the official python:3.11-slim; where it cannot
# be pulled, deploy/image/base.sh builds sentiment-base:bookworm-python3.11 from Debian's
# packages). SENTIMENT_EXTRA_CA names a PEM bundle that pip trusts during the build (a network
# that intercepts TLS); it stays in the build stage, never in the image. Prints the tag and
# the size. Called as it is by .ci/run's tests and by .github/workflows/container.yaml.
set -euo pipefail
cd "$(dirname "$0")/../.."
image=${1:-sentiment-service:latest}
base=${SENTIMENT_BASE_IMAGE:-python:3.11-slim}

bento=$(bentoml build --output tag | tail -n 1 | sed 's/^__tag__://')
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
# The bento with its model (a bento in the store references the model; export copies it in).
bentoml export "$bento" "$context/bento.tar" >/dev/null
mkdir "$context/bento"
tar -xf "$context/bento.tar" -C "$context/bento"
rm "$context/bento.tar"
chmod -R a+rX,go-w "$context/bento"  # root's in the image: readable by the service, not writable
mkdir "$context/ca"
if [ -n "${SENTIMENT_EXTRA_CA:-}" ]; then
  cp "$SENTIMENT_EXTRA_CA" "$context/ca/extra.pem"
else
  : > "$context/ca/extra.pem"
fi
started=$(date +%s)
DOCKER_BUILDKIT=0 docker build --quiet --file deploy/image/Dockerfile \
  --build-arg BASE_IMAGE="$base" --tag "$image" "$context" >/dev/null
# The venv stage (it may hold the extra CA bundle) is not kept as a local image either.
docker image prune --force --filter label=org.review-sentiment.stage=venv >/dev/null
size=$(docker image inspect --format '{{.Size}}' "$image")
echo "image: $image ($((size / 1000000)) MB, bento $bento, base $base, $(( $(date +%s) - started )) s)"
