#!/usr/bin/env bash
# Idempotent set-up for Kiln's demo and tests on a Debian machine:
#   - installs what is missing (docker.io, docker-registry, busybox-static,
#     curl, zip, jq, apache2-utils for test registries with auth; the
#     wasm32-wasip2 Rust target);
#   - starts dockerd when no daemon answers;
#   - starts a registry on 127.0.0.1:5000 when none answers (data under .kiln/);
#   - makes the local base image 127.0.0.1:5000/base/busybox:1 (also tagged
#     local/busybox:1) from busybox-static, and with KILN_WIZARD_BASES=1
#     (scripts/test.sh) base/python:1 + base/static:1 for the wizard's tests
#     from a debootstrap'd Debian; no registry pull;
#   - with KILN_BROWSER=1 (scripts/test.sh) installs chromium, chromium-driver
#     and npm for the dashboard's browser tests;
#   - with KILN_ENGINES=1 (scripts/test.sh) starts a second Docker Engine on
#     tcp://127.0.0.1:2376 with mutual TLS for the engine-pool tests
#     (scripts/engine.sh; certificates under .kiln/engines/certs), and
#     makes multi-platform builds possible: QEMU user emulation for arm64
#     (qemu-user-static + binfmt-support, registered with binfmt_misc) and
#     the two-platform base index 127.0.0.1:5000/base/busybox:multi
#     (linux/amd64 + linux/arm64, from busybox-static of each).
# Safe to run again: each step checks first.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="${KILN_STATE_DIR:-$repo/.kiln}"
registry_addr="${KILN_REGISTRY:-127.0.0.1:5000}"
mkdir -p "$state"

log() { printf '[setup] %s\n' "$*" >&2; }

# Debian's client matches Debian's daemon; prefer it over any other on PATH.
docker_cli() {
  if [ -x /usr/bin/docker ]; then /usr/bin/docker "$@"; else docker "$@"; fi
}

need_packages=()
[ -x /usr/sbin/dockerd ] || [ -x /usr/bin/dockerd ] || need_packages+=(docker.io)
[ -x /usr/bin/docker-registry ] || need_packages+=(docker-registry)
dpkg -s busybox-static >/dev/null 2>&1 || need_packages+=(busybox-static)
command -v curl >/dev/null || need_packages+=(curl)
command -v zip >/dev/null || need_packages+=(zip)
command -v jq >/dev/null || need_packages+=(jq)
command -v htpasswd >/dev/null || need_packages+=(apache2-utils)
# git daemon and git http-backend serve the test repositories (Kiln itself fetches with gix).
[ -x /usr/lib/git-core/git-http-backend ] || need_packages+=(git)
# The dashboard's browser tests (scripts/test.sh sets KILN_BROWSER=1):
# Debian's chromium driven through chromium-driver (WebDriver), and npm
# for axe-core.
if [ -n "${KILN_BROWSER:-}" ]; then
  [ -x /usr/bin/chromium ] || need_packages+=(chromium)
  [ -x /usr/bin/chromedriver ] || need_packages+=(chromium-driver)
  command -v npm >/dev/null || need_packages+=(npm)
fi
# Multi-platform builds (scripts/test.sh sets KILN_ENGINES=1): arm64
# binaries run under QEMU through binfmt_misc.
if [ -n "${KILN_ENGINES:-}" ]; then
  [ -x /usr/bin/qemu-aarch64-static ] || need_packages+=(qemu-user-static)
  command -v update-binfmts >/dev/null || need_packages+=(binfmt-support)
fi
if [ ${#need_packages[@]} -gt 0 ]; then
  log "installing ${need_packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  log "adding the wasm32-wasip2 Rust target"
  rustup target add wasm32-wasip2
fi

# --- Docker Engine ---
if ! docker_cli info >/dev/null 2>&1; then
  log "starting dockerd"
  # A daemon killed earlier leaves its pid file behind and a new one refuses to start.
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    rm -f /var/run/docker.pid
  fi
  for stale in /run/containerd/containerd.pid /var/run/docker/containerd/containerd.pid; do
    if [ -f "$stale" ] && ! kill -0 "$(cat "$stale")" 2>/dev/null; then rm -f "$stale"; fi
  done
  setsid dockerd --host unix:///var/run/docker.sock >"$state/dockerd.log" 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    docker_cli info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker_cli info >/dev/null 2>&1 || { log "dockerd did not start; see $state/dockerd.log"; tail -20 "$state/dockerd.log" >&2; exit 1; }
fi

# --- Registry ---
if ! curl -fsS "http://$registry_addr/v2/" >/dev/null 2>&1; then
  log "starting a registry on $registry_addr"
  mkdir -p "$state/registry/data"
  cat >"$state/registry/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $state/registry/data
  delete:
    enabled: true
http:
  addr: $registry_addr
YAML
  setsid /usr/bin/docker-registry serve "$state/registry/config.yml" >"$state/registry.log" 2>&1 < /dev/null &
  for _ in $(seq 1 40); do
    curl -fsS "http://$registry_addr/v2/" >/dev/null 2>&1 && break
    sleep 0.25
  done
  curl -fsS "http://$registry_addr/v2/" >/dev/null 2>&1 || { log "the registry did not start; see $state/registry.log"; exit 1; }
fi

# --- Base image: busybox rootfs, imported, no pull ---
base="$registry_addr/base/busybox:1"
if ! curl -fs -o /dev/null "http://$registry_addr/v2/base/busybox/manifests/1" \
      -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
   || ! docker_cli image inspect local/busybox:1 >/dev/null 2>&1; then
  log "making the base image $base from busybox-static"
  rootfs="$(mktemp -d)"
  trap 'rm -rf "$rootfs"' EXIT
  mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc" "$rootfs/root"
  chmod 1777 "$rootfs/tmp"
  cp /bin/busybox "$rootfs/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"
  echo 'root:x:0:' >"$rootfs/etc/group"
  tar -C "$rootfs" -c . | docker_cli import -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' - local/busybox:1 >/dev/null
  docker_cli tag local/busybox:1 "$base"
  docker_cli push "$base" >/dev/null
fi
# The first mirror apt's sources list for Debian release $1: deb822
# `.sources` stanzas (Types: deb, Suites naming the release), then one-line
# `deb [options] URI suite …` entries.
apt_mirror() {
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v want="$1" '
      BEGIN { RS = ""; FS = "\n" }
      {
        uris = ""; suites = ""; types = ""
        for (i = 1; i <= NF; i++) {
          line = $i
          if (line ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", line); uris = line }
          else if (line ~ /^Suites:/) { sub(/^Suites:[ \t]*/, "", line); suites = " " line " " }
          else if (line ~ /^Types:/) { sub(/^Types:[ \t]*/, "", line); types = " " line " " }
        }
        if (index(types, " deb ") && index(suites, " " want " ")) { split(uris, u, " "); print u[1]; exit }
      }' "$f"
  done | head -n1 | grep . && return
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk -v want="$1" '
    $1 == "deb" {
      i = 2
      if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
      if ($(i + 1) == want) { print $i; exit }
    }'
}

# --- Wizard base images: a Debian rootfs (debootstrap) with python3 and
# nginx-light, imported, no pull. The tests name them through the wizard's
# base-image config: base/python:1 (python3) and base/static:1 (nginx serving
# /usr/share/nginx/html on 8080 as a non-root user, like
# nginxinc/nginx-unprivileged).
static_base="$registry_addr/base/static:1"
python_base="$registry_addr/base/python:1"
if [ "${KILN_WIZARD_BASES:-0}" = 1 ] && {
     ! curl -fs -o /dev/null "http://$registry_addr/v2/base/static/manifests/1" \
         -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
     || ! docker_cli image inspect "$python_base" >/dev/null 2>&1
   }; then
  command -v debootstrap >/dev/null || {
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  # The release this machine runs and the mirror its own apt uses: the
  # project names no package host (KILN_DEBIAN_MIRROR overrides).
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  mirror="${KILN_DEBIAN_MIRROR:-$(apt_mirror "$codename")}"
  [ -n "$codename" ] && [ -n "$mirror" ] || {
    log "cannot tell the Debian release (/etc/os-release) or its mirror (apt sources); set KILN_DEBIAN_MIRROR=http://<mirror>/debian"
    exit 1
  }
  log "making $python_base and $static_base with debootstrap of $codename from $mirror (about a minute)"
  wizard_rootfs="$state/wizard-rootfs"
  rm -rf "$wizard_rootfs"
  debootstrap --variant=minbase --include=python3,nginx-light "$codename" "$wizard_rootfs" "$mirror" \
    >"$state/debootstrap.log" 2>&1 || { log "debootstrap failed; see $state/debootstrap.log"; tail -20 "$state/debootstrap.log" >&2; exit 1; }
  mkdir -p "$wizard_rootfs/usr/share/nginx/html"
  cat >"$wizard_rootfs/etc/nginx/nginx.conf" <<'NGINX'
worker_processes 1;
pid /tmp/nginx.pid;
error_log /dev/stderr warn;
events { worker_connections 256; }
http {
  include /etc/nginx/mime.types;
  access_log /dev/stdout;
  client_body_temp_path /tmp/client_body;
  proxy_temp_path /tmp/proxy;
  fastcgi_temp_path /tmp/fastcgi;
  uwsgi_temp_path /tmp/uwsgi;
  scgi_temp_path /tmp/scgi;
  server {
    listen 8080;
    root /usr/share/nginx/html;
    index index.html;
  }
}
NGINX
  rm -rf "$wizard_rootfs/var/cache/apt/archives"/*.deb "$wizard_rootfs/var/lib/apt/lists"/*
  tar -C "$wizard_rootfs" -c . | docker_cli import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'EXPOSE 8080' -c 'CMD ["nginx", "-g", "daemon off;"]' - "$static_base" >/dev/null
  docker_cli tag "$static_base" "$python_base"
  docker_cli push "$static_base" >/dev/null
  docker_cli push "$python_base" >/dev/null
  rm -rf "$wizard_rootfs"
fi
if [ "${KILN_ENGINES:-0}" = 1 ]; then
  # The package registers its interpreters only where binfmt_misc is
  # mounted (a machine without systemd may not have it): mount, enable.
  if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  fi
  if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    update-binfmts --enable qemu-aarch64 >/dev/null
  fi
  multi="$registry_addr/base/busybox:multi"
  if ! curl -fs -o /dev/null "http://$registry_addr/v2/base/busybox/manifests/multi" \
      -H 'Accept: application/vnd.docker.distribution.manifest.list.v2+json'; then
    log "making the two-platform base index $multi (busybox-static for amd64 and arm64)"
    arm="$(mktemp -d)"
    # arm64's busybox-static is downloaded, not installed: the foreign
    # architecture is added for the download and removed after.
    added_arm64=""
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
      dpkg --add-architecture arm64
      added_arm64=1
    fi
    apt-get update -qq
    (cd "$arm" && apt-get download -qq busybox-static:arm64 2>/dev/null)
    if [ -n "$added_arm64" ]; then dpkg --remove-architecture arm64; fi
    dpkg-deb -x "$arm"/busybox-static_*_arm64.deb "$arm/deb"
    mkdir -p "$arm/rootfs/bin" "$arm/rootfs/tmp" "$arm/rootfs/etc" "$arm/rootfs/root" "$arm/context"
    chmod 1777 "$arm/rootfs/tmp"
    cp "$arm/deb/bin/busybox" "$arm/rootfs/bin/busybox"
    # The same busybox version on both architectures: the host's list of
    # applets is arm64's too.
    for applet in $(/bin/busybox --list); do
      [ "$applet" = busybox ] || ln -sf busybox "$arm/rootfs/bin/$applet"
    done
    echo 'root:x:0:0:root:/root:/bin/sh' >"$arm/rootfs/etc/passwd"
    echo 'root:x:0:' >"$arm/rootfs/etc/group"
    tar -C "$arm/rootfs" -cf "$arm/context/rootfs.tar" .
    # `docker import --platform` keeps amd64 in the image's config on
    # 20.10; a BuildKit build FROM scratch for linux/arm64 says arm64.
    printf 'FROM scratch\nADD rootfs.tar /\nENV PATH=/bin\nCMD ["/bin/sh"]\n' >"$arm/context/Dockerfile"
    DOCKER_BUILDKIT=1 docker_cli build -q --platform linux/arm64 -t "$registry_addr/base/busybox:1-arm64" "$arm/context" >/dev/null
    docker_cli push "$registry_addr/base/busybox:1-arm64" >/dev/null
    # The registry has it; kept in the engine, its layers would be build
    # cache shared with an image, which no prune frees.
    docker_cli rmi "$registry_addr/base/busybox:1-arm64" >/dev/null
    DOCKER_CLI_EXPERIMENTAL=enabled docker_cli manifest create --insecure --amend "$multi" \
      "$base" "$registry_addr/base/busybox:1-arm64" >/dev/null
    DOCKER_CLI_EXPERIMENTAL=enabled docker_cli manifest push --insecure --purge "$multi" >/dev/null
    rm -rf "$arm"
  fi
  bash "$repo/scripts/engine.sh" start second 2376 >/dev/null
  log "second engine: tcp://127.0.0.1:2376 (mutual TLS, certificates in $state/engines/certs)"
fi
if [ "${KILN_WIZARD_BASES:-0}" = 1 ]; then
  log "ready: Docker Engine, registry $registry_addr, base images $base, $python_base, $static_base"
else
  log "ready: Docker Engine, registry $registry_addr, base image $base"
fi
