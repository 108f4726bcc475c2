#!/usr/bin/env bash
# Kiln's main job, end to end on this machine: set up the engine, registry
# and base image; start `kiln serve`; build examples/hello through the HTTP
# API while following its log; print the image reference and what the image
# prints when run.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh

state="${KILN_STATE_DIR:-$repo/.kiln}"
data_dir="$state/demo-data"
# Every demo starts from a clean data directory (a new organization token).
rm -rf "$data_dir"
listen="${KILN_LISTEN:-127.0.0.1:7878}"
server="http://$listen"

echo "== building kiln"
cargo build -p kiln
kiln="$repo/target/debug/kiln"

echo "== starting kiln serve on $listen (data in $data_dir)"
"$kiln" serve --listen "$listen" --data-dir "$data_dir" --registry 127.0.0.1:5000 >"$state/kiln-demo.log" 2>&1 &
kiln_pid=$!
trap 'kill $kiln_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fs "$server/healthz" >/dev/null 2>&1 && break
  kill -0 $kiln_pid 2>/dev/null || { cat "$state/kiln-demo.log"; exit 1; }
  sleep 0.1
done
token="$(cat "$data_dir/admin-token")"

echo "== packing examples/hello and asking for a build"
zipfile="$(mktemp --suffix=.zip)"
rm -f "$zipfile"
(cd examples/hello && zip -q -r "$zipfile" .)
body="$(mktemp)"
jq -n --rawfile zip <(base64 -w0 "$zipfile") \
  '{name: "hello", zippedCode: $zip, tags: ["latest"], buildArgs: {GREETING: "Hello from Kiln"}}' >"$body"
created="$(curl -fsS -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  --data-binary @"$body" "$server/v1/builds")"
rm -f "$zipfile" "$body"
build_id="$(jq -r .buildId <<<"$created")"
echo "build $build_id accepted: $created"

echo "== build log"
curl -fsSN -H "Authorization: Bearer $token" \
  "$server/v1/builds/$build_id/logs?fromStart=true&follow=true" | jq -r .line

record="$(curl -fsS -H "Authorization: Bearer $token" "$server/v1/builds/$build_id")"
status="$(jq -r .status <<<"$record")"
if [ "$status" != BUILD_STATUS_SUCCEEDED ]; then
  echo "build ended $status:"; jq . <<<"$record"; exit 1
fi
image="$(jq -r '.imageRefs[0]' <<<"$record")"
echo "== $status"
jq '{imageRefs, digest, metrics}' <<<"$record"
echo "image: $image"
echo "== docker run --rm $image"
if [ -x /usr/bin/docker ]; then docker_cli=/usr/bin/docker; else docker_cli=docker; fi
"$docker_cli" run --rm "$image"

echo "== dashboard: $server/ui/ (sign in with the token in $data_dir/admin-token)"
# In a terminal the server keeps serving the dashboard until Ctrl-C; a
# script (CI) ends here.
if [ -t 0 ] && [ -z "${KILN_DEMO_EXIT:-}" ]; then
  echo "kiln serve keeps running for the dashboard; Ctrl-C stops it"
  wait $kiln_pid
fi
