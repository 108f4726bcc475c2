// Shared by the build scripts that turn plugin crates into wasm components
// (`host/server/build.rs` for first-party plugins, `tests/build.rs` for hostile test
// fixtures), the way wasmtime's `test-programs/artifacts/build.rs` does.
//
// Each plugin is compiled by its own nested `cargo build`, for two reasons:
// kiln-sdk enables one world per feature and one invocation would unify them
// across plugins; and a separate target directory keeps the nested cargo off
// the outer cargo's lock.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Compile the plugin crate at `crate_dir` (relative to the workspace root)
/// for `wasm32-wasip2` with the workspace's `plugin` profile and return the
/// path of the component.
pub fn compile_plugin(workspace: &Path, crate_dir: &str, package: &str) -> PathBuf {
    let target_dir = workspace.join("target").join("plugin-build");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "plugin",
            "-p",
        ])
        .arg(package)
        .env("CARGO_TARGET_DIR", &target_dir);
    // The outer cargo's settings are for the host target (and, under clippy,
    // route rustc through clippy-driver): none of them apply here.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MAKEFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("run cargo for a wasm plugin");
    assert!(
        status.success(),
        "building plugin {package} failed; is the wasm32-wasip2 target installed? \
         (`rustup target add wasm32-wasip2`)"
    );
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join(crate_dir).display()
    );
    target_dir
        .join("wasm32-wasip2")
        .join("plugin")
        .join(format!("{}.wasm", package.replace('-', "_")))
}

/// Tell cargo to rebuild when the contract, the SDK or the library crates
/// the first-party plugins share change.
pub fn rerun_on_sdk_change(workspace: &Path) {
    for path in [
        "wit",
        "sdk/src",
        "sdk/Cargo.toml",
        "plugins/stacks",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }
}
