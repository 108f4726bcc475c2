#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up (engine, registry, base
# images, wasm target), then every crate's tests, unit and end-to-end, and
# the example plugins' own tests (they build outside the workspace, as
# third-party plugins do).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
# The wizard's tests build on Debian base images (made once, ~1 minute).
KILN_WIZARD_BASES=1 bash scripts/setup.sh
cargo test --workspace "$@"
cargo test --manifest-path examples/recipe-builder/Cargo.toml "$@"
