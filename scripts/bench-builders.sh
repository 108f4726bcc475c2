#!/usr/bin/env bash
# The hello app built with each builder available here, side by side: wall
# time (zip, POST /v1/builds, follow the log to the end; no cache), image
# size and layer count from the build record. Prints a table of medians.
#   RUNS=5 bash scripts/bench-builders.sh
# Kaniko runs only when KILN_TEST_KANIKO_IMAGE names an executor image that
# is in the local Docker Engine (none can be pulled here).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh >/dev/null 2>&1
runs="${RUNS:-5}"
state="${KILN_STATE_DIR:-$repo/.kiln}"
data_dir="$(mktemp -d)"
work="$(mktemp -d)"
listen=127.0.0.1:7898
server="http://$listen"
registry="${KILN_REGISTRY:-127.0.0.1:5000}"
docker_cli=/usr/bin/docker; [ -x "$docker_cli" ] || docker_cli=docker

cat >"$work/kiln.toml" <<TOML
[wizard.base_images]
shell = "$registry/base/busybox:1"
TOML
kaniko_image="${KILN_TEST_KANIKO_IMAGE:-}"
extra=()
if [ -n "$kaniko_image" ] && "$docker_cli" image inspect "$kaniko_image" >/dev/null 2>&1; then
  extra=(--kaniko-image "$kaniko_image")
else
  kaniko_image=""
fi

cargo build -p kiln
target/debug/kiln serve --listen "$listen" --data-dir "$data_dir" --config "$work/kiln.toml" "${extra[@]}" >"$state/bench-builders.log" 2>&1 &
kiln_pid=$!
trap 'kill $kiln_pid 2>/dev/null; rm -rf "$data_dir" "$work"' EXIT
for _ in $(seq 1 100); do curl -fs "$server/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
token="$(cat "$data_dir/admin-token")"

# The same app for every builder; the wizard gets it without its Dockerfile.
(cd examples/hello && zip -q -r "$work/hello.zip" .)
mkdir -p "$work/hello-no-dockerfile"
cp examples/hello/hello.sh "$work/hello-no-dockerfile/"
(cd "$work/hello-no-dockerfile" && zip -q -r "$work/hello-no-dockerfile.zip" .)

now_ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }

build() { # $1 builder, $2 zip → "ms size layers"
  local start body id record
  start=$(now_ms)
  body="$(jq -n --rawfile z <(base64 -w0 "$2") --arg b "$1" '{name: ("bench-" + $b), zippedCode: $z, builder: $b, noCache: true}')"
  id="$(curl -fsS -H "Authorization: Bearer $token" -H "Content-Type: application/json" --data-binary "$body" "$server/v1/builds" | jq -r .buildId)"
  curl -fsSN -H "Authorization: Bearer $token" "$server/v1/builds/$id/logs?follow=true&fromStart=true" >/dev/null
  record="$(curl -fsS -H "Authorization: Bearer $token" "$server/v1/builds/$id")"
  [ "$(jq -r .status <<<"$record")" = BUILD_STATUS_SUCCEEDED ] || { echo "$1 build $id: $(jq -c .failure <<<"$record")" >&2; exit 1; }
  echo "$(( $(now_ms) - start )) $(jq -r .metrics.imageSizeBytes <<<"$record") $(jq -r .metrics.layerCount <<<"$record")"
}

printf '\nhello, built with each builder, no cache, median of %s runs\n\n' "$runs"
printf '| builder | wall time (ms) | image size | layers | note |\n|---|---|---|---|---|\n'
for case in "buildkit hello.zip" "wizard hello-no-dockerfile.zip" "kaniko hello.zip"; do
  set -- $case
  if [ "$1" = kaniko ] && [ -z "$kaniko_image" ]; then
    printf '| kaniko | — | — | — | not run: no Kaniko executor image in the engine (set KILN_TEST_KANIKO_IMAGE) |\n'
    continue
  fi
  build "$1" "$work/$2" >/dev/null   # warm-up
  times=(); size=0; layers=0
  for _ in $(seq 1 "$runs"); do
    read -r ms size layers < <(build "$1" "$work/$2")
    times+=("$ms")
  done
  note=""
  [ "$1" = wizard ] && note="Dockerfile generated (hello.sh → a shell app)"
  [ "$1" = kaniko ] && note="size and layers as stored in the registry (compressed)"
  printf '| %s | %s | %s | %s | %s |\n' "$1" "$(printf '%s\n' "${times[@]}" | median)" "$(numfmt --to=iec "$size")" "$layers" "$note"
done
