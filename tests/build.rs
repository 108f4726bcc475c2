//! Builds the hostile test-fixture plugins in `fixtures/plugins/` from
//! source, as real components, and lays them out as a plugin directory
//! (`<OUT_DIR>/fixture-plugins/<id>/{plugin.toml, <id>.wasm}`) that a test
//! server loads with `plugin_dirs`.

#[path = "../host/server/build-support/compile_plugins.rs"]
mod compile_plugins;

use std::path::PathBuf;

const FIXTURES: &[(&str, &str)] = &[
    ("loop-forever", "kiln-test-plugin-loop-forever"),
    ("alloc-unbounded", "kiln-test-plugin-alloc-unbounded"),
    ("panic", "kiln-test-plugin-panic"),
    ("escape-artist", "kiln-test-plugin-escape-artist"),
    ("engine-caller", "kiln-test-plugin-engine-caller"),
    ("log-flood", "kiln-test-plugin-log-flood"),
    ("container-runner", "kiln-test-plugin-container-runner"),
    ("future-contract", "kiln-test-plugin-future-contract"),
    ("contract-0.1.0", "kiln-test-plugin-contract-0-1-0"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    compile_plugins::rerun_on_sdk_change(&workspace);
    let plugin_root = out_dir.join("fixture-plugins");
    for (id, package) in FIXTURES {
        let crate_dir = format!("tests/fixtures/plugins/{id}");
        let component = compile_plugins::compile_plugin(&workspace, &crate_dir, package);
        let dir = plugin_root.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&component, dir.join(format!("{id}.wasm"))).unwrap();
        std::fs::copy(
            workspace.join(&crate_dir).join("plugin.toml"),
            dir.join("plugin.toml"),
        )
        .unwrap();
    }
    println!(
        "cargo:rustc-env=KILN_FIXTURE_PLUGIN_DIR={}",
        plugin_root.display()
    );
}
