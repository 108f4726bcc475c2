#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up (engine, registry, base
# images, wasm target, wkg), then every crate's tests, unit and end-to-end, and
# the example plugins' own tests (they build outside the workspace, as
# third-party plugins do).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
# The wizard's tests build on Debian base images (made once, ~1 minute);
# the dashboard's browser tests need chromium, chromium-driver and npm; the
# engine-pool tests a second Docker Engine (mutual TLS, on 127.0.0.1:2376).
KILN_WIZARD_BASES=1 KILN_BROWSER=1 KILN_ENGINES=1 bash scripts/setup.sh
# axe-core (npm) checks each dashboard page's accessibility in the browser
# tests; installed once into target/npm.
axe_version=4.14.1
if [ "$(cat "$repo/target/npm/node_modules/axe-core/package.json" 2>/dev/null | jq -r .version 2>/dev/null)" != "$axe_version" ]; then
  echo "[test] installing axe-core $axe_version (npm, once)"
  mkdir -p "$repo/target/npm"
  npm install --prefix "$repo/target/npm" --no-audit --no-fund --silent "axe-core@$axe_version"
fi
export KILN_AXE_JS="$repo/target/npm/node_modules/axe-core/axe.min.js"
# `wkg` (the Wasm ecosystem's OCI tool, from crates.io): the plugin-artifact
# tests check Kiln's pushes and pulls against it. Built once (~5 minutes)
# into target/tools unless this version is already on PATH.
wkg_version=0.16.1
if [ "$(wkg --version 2>/dev/null)" != "wkg $wkg_version" ]; then
  if [ "$("$repo/target/tools/bin/wkg" --version 2>/dev/null)" != "wkg $wkg_version" ]; then
    echo "[test] installing wkg $wkg_version (cargo install, once)"
    wkg_build="$(mktemp -d)"
    CARGO_TARGET_DIR="$wkg_build" cargo install wkg --version "$wkg_version" --locked \
      --root "$repo/target/tools" --quiet
    rm -rf "$wkg_build"
  fi
  export KILN_WKG="$repo/target/tools/bin/wkg"
fi
cargo test --workspace "$@"
cargo test --manifest-path examples/recipe-builder/Cargo.toml "$@"
