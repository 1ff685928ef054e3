#!/usr/bin/env bash
# A local stand-in for the official python:3.11-slim where Docker Hub cannot be reached:
# Debian bookworm (the official image's release) and its Python 3.11, from Debian's packages,
# imported as one layer. Needs root and debootstrap (`apt-get install debootstrap`).
#
#   deploy/image/base.sh [TAG]     (default sentiment-base:bookworm-python3.11)
#
# DEBIAN_MIRROR picks the mirror (default deb.debian.org).
set -euo pipefail
tag=${1:-sentiment-base:bookworm-python3.11}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3.11,ca-certificates \
  bookworm "$root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >/dev/null
# venv and its ensurepip wheels, with their dependencies (debootstrap does not resolve them)
chroot "$root" apt-get -o APT::Sandbox::User=root update -qq 2>/dev/null
chroot "$root" env DEBIAN_FRONTEND=noninteractive \
  apt-get -o APT::Sandbox::User=root install -y -qq --no-install-recommends python3.11-venv \
  >/dev/null 2>&1
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* \
  "$root"/usr/share/man/* "$root"/var/log/*
tar --numeric-owner -C "$root" -c . \
  | docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3.11"]' - "$tag" >/dev/null
echo "base: $tag ($(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%d", $1 / 1000000}') MB)"
