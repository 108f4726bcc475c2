#!/usr/bin/env bash
# Wall time of the hello build through Kiln (zip, POST /v1/builds, follow the
# log to the end) against the same `docker build` + `docker push` by hand on
# the same daemon, both with BuildKit. Prints a table of medians.
#   RUNS=7 bash scripts/bench-hello.sh
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh >/dev/null 2>&1
runs="${RUNS:-7}"
state="${KILN_STATE_DIR:-$repo/.kiln}"
data_dir="$(mktemp -d)"
listen=127.0.0.1:7899
server="http://$listen"
docker_cli=/usr/bin/docker; [ -x "$docker_cli" ] || docker_cli=docker

cargo build -p kiln
target/debug/kiln serve --listen "$listen" --data-dir "$data_dir" >"$state/bench.log" 2>&1 &
kiln_pid=$!
trap 'kill $kiln_pid 2>/dev/null; rm -rf "$data_dir"' EXIT
for _ in $(seq 1 100); do curl -fs "$server/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
token="$(cat "$data_dir/admin-token")"

now_ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }

kiln_build() { # $1 = noCache true|false
  local start zip body id
  start=$(now_ms)
  zip="$(mktemp -u --suffix=.zip)"
  (cd examples/hello && zip -q -r "$zip" .)
  body="$(jq -n --rawfile z <(base64 -w0 "$zip") --argjson nc "$1" '{name: "bench-hello", zippedCode: $z, noCache: $nc}')"
  id="$(curl -fsS -H "Authorization: Bearer $token" -H "Content-Type: application/json" --data-binary "$body" "$server/v1/builds" | jq -r .buildId)"
  curl -fsSN -H "Authorization: Bearer $token" "$server/v1/builds/$id/logs?follow=true&fromStart=true" >/dev/null
  local status; status="$(curl -fsS -H "Authorization: Bearer $token" "$server/v1/builds/$id" | jq -r .status)"
  [ "$status" = BUILD_STATUS_SUCCEEDED ] || { echo "kiln build $id ended $status" >&2; exit 1; }
  rm -f "$zip"
  echo $(( $(now_ms) - start ))
}

hand_build() { # $1 = extra docker build flag
  local start ref=127.0.0.1:5000/bench/hello-by-hand:latest
  start=$(now_ms)
  DOCKER_BUILDKIT=1 "$docker_cli" build -q $1 -t "$ref" examples/hello >/dev/null
  "$docker_cli" push -q "$ref" >/dev/null 2>&1 || "$docker_cli" push "$ref" >/dev/null
  echo $(( $(now_ms) - start ))
}

# One warm-up of each so the first measured run is not paying for set-up.
kiln_build false >/dev/null; hand_build "" >/dev/null

declare -A results
for mode in cached nocache; do
  kiln_times=(); hand_times=()
  for _ in $(seq 1 "$runs"); do
    if [ $mode = cached ]; then
      kiln_times+=("$(kiln_build false)"); hand_times+=("$(hand_build "")")
    else
      kiln_times+=("$(kiln_build true)"); hand_times+=("$(hand_build --no-cache)")
    fi
  done
  results[$mode,kiln]="$(printf '%s\n' "${kiln_times[@]}" | median)"
  results[$mode,hand]="$(printf '%s\n' "${hand_times[@]}" | median)"
  results[$mode,kiln_all]="${kiln_times[*]}"
  results[$mode,hand_all]="${hand_times[*]}"
done

printf '\nhello build + push, median of %s runs (ms), same daemon and registry\n\n' "$runs"
printf '| %-9s | %-32s | %-32s | %s |\n' case "Kiln (zip, POST, follow log)" "docker build + docker push" ratio
printf '|-----------|----------------------------------|----------------------------------|-------|\n'
for mode in cached nocache; do
  k=${results[$mode,kiln]}; h=${results[$mode,hand]}
  printf '| %-9s | %-32s | %-32s | %.2f |\n' "$mode" "$k" "$h" "$(awk "BEGIN{print $k/$h}")"
done
printf '\nall runs (ms):\n'
for mode in cached nocache; do
  printf '  %-8s kiln: %s\n  %-8s hand: %s\n' "$mode" "${results[$mode,kiln_all]}" "$mode" "${results[$mode,hand_all]}"
done
