#!/usr/bin/env bash
# OpenAPI conformance: Schemathesis (from PyPI, pinned) runs every check it
# has against a live `kiln serve` and the document it serves
# (GET /v1/openapi.json). Exits non-zero on any failure or error.
#
#   scripts/conformance.sh                 # CI's bounded run (30 cases per operation and phase)
#   scripts/conformance.sh --max-examples 1000 --seed 7   # longer; any schemathesis `run` option
#
# Uses the `kiln` binary in target/debug (built if missing) and the engine
# and registry `scripts/setup.sh` starts: a schema-valid build request
# starts a real build.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
schemathesis_version=4.32.5

bash scripts/setup.sh >/dev/null
kiln="$repo/target/debug/kiln"
[ -x "$kiln" ] || cargo build -p kiln

venv="$repo/target/schemathesis-$schemathesis_version"
if [ ! -x "$venv/bin/schemathesis" ]; then
  echo "[conformance] installing schemathesis $schemathesis_version into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$schemathesis_version"
fi

work="$(mktemp -d)"
# A server of its own: a fresh data directory, any free port.
"$kiln" serve --listen 127.0.0.1:0 --data-dir "$work/data" --registry 127.0.0.1:5000 \
  >"$work/stdout" 2>"$work/kiln.log" &
kiln_pid=$!
trap 'kill $kiln_pid 2>/dev/null || true; wait $kiln_pid 2>/dev/null || true; rm -rf "$work"' EXIT
server=""
for _ in $(seq 1 300); do
  server="$(sed -n 's/^kiln listening on \(http:\/\/[^ ]*\).*/\1/p' "$work/stdout" | head -1)"
  [ -n "$server" ] && break
  kill -0 $kiln_pid 2>/dev/null || { cat "$work/kiln.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$server" ] || { echo "[conformance] kiln serve did not start" >&2; exit 1; }
token="$(cat "$work/data/admin-token")"

args=(--max-examples 30 --seed 20261202)
[ $# -gt 0 ] && args=("$@")
echo "[conformance] schemathesis $schemathesis_version, every check, against $server/v1/openapi.json (${args[*]})"
# From the scratch directory: Schemathesis keeps a cache (.schemathesis/)
# in the directory it runs in.
cd "$work"
"$venv/bin/schemathesis" --no-color --config-file "$repo/tests/conformance/schemathesis.toml" \
  run "$server/v1/openapi.json" --checks all --workers 2 \
  --header "Authorization: Bearer $token" \
  --generation-database none \
  "${args[@]}"
