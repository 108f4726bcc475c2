#!/usr/bin/env bash
# Build a Kaniko executor image from a source checkout, with no registry
# pull and no module download: Kaniko vendors its Go dependencies, and
# v1.19.2 builds with Debian bookworm's Go 1.19.
#
#   git clone --branch v1.19.2 https://github.com/GoogleContainerTools/kaniko
#   bash scripts/kaniko_from_source.sh kaniko [local/kaniko-executor:v1.19.2]
#   KILN_TEST_KANIKO_IMAGE=local/kaniko-executor:v1.19.2 \
#     cargo test -p kiln-tests --test end_to_end kaniko
#
# The image holds what the upstream one does: /kaniko/executor, CA
# certificates under /kaniko/ssl/certs, /etc/nsswitch.conf, the same
# environment, /workspace as the working directory.
set -euo pipefail
src=${1:?usage: kaniko_from_source.sh KANIKO_SOURCE_DIR [IMAGE]}
image=${2:-local/kaniko-executor:v1.19.2}
docker_cli() { /usr/bin/docker "$@"; }

command -v go >/dev/null || {
  echo "[kaniko] installing Debian's golang-go" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "[kaniko] building the executor from $src (a few minutes)" >&2
(cd "$src" && GOFLAGS=-mod=vendor CGO_ENABLED=0 go build -ldflags "-s -w" -o "$work/executor" ./cmd/executor)

root="$work/root"
mkdir -p "$root/kaniko/ssl/certs" "$root/kaniko/.docker" "$root/workspace" "$root/etc" "$root/root"
cp "$work/executor" "$root/kaniko/executor"
cp /etc/ssl/certs/ca-certificates.crt "$root/kaniko/ssl/certs/"
cp "$src/files/nsswitch.conf" "$root/etc/nsswitch.conf"
tar -C "$root" -c . | docker_cli import \
  -c 'ENV HOME=/root' -c 'ENV USER=root' -c 'ENV PATH=/usr/local/bin:/kaniko' \
  -c 'ENV SSL_CERT_DIR=/kaniko/ssl/certs' -c 'ENV DOCKER_CONFIG=/kaniko/.docker/' \
  -c 'WORKDIR /workspace' -c 'ENTRYPOINT ["/kaniko/executor"]' \
  - "$image" >/dev/null
echo "[kaniko] $image is in the engine" >&2
