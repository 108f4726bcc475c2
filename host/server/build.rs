//! Compiles the first-party plugins in `plugins/` to wasm components and
//! embeds them, so `kiln serve` works with no plugin directory configured.

#[path = "build-support/compile_plugins.rs"]
mod compile_plugins;

use std::path::PathBuf;

/// (directory under `plugins/`, package name)
const FIRST_PARTY: &[(&str, &str)] = &[
    ("inline-zip", "kiln-plugin-inline-zip"),
    ("upload", "kiln-plugin-upload"),
    ("buildkit", "kiln-plugin-buildkit"),
    ("git", "kiln-plugin-git"),
    ("file-credentials", "kiln-plugin-file-credentials"),
    ("kaniko", "kiln-plugin-kaniko"),
    ("wizard", "kiln-plugin-wizard"),
    ("wizard-detect", "kiln-plugin-wizard-detect"),
    ("http-post", "kiln-plugin-http-post"),
    ("sbom", "kiln-plugin-sbom"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    // host/server → the workspace root.
    let workspace = manifest_dir.ancestors().nth(2).unwrap().to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    compile_plugins::rerun_on_sdk_change(&workspace);

    let mut registry = String::from("&[\n");
    for (dir, package) in FIRST_PARTY {
        let crate_dir = format!("plugins/{dir}");
        let component = compile_plugins::compile_plugin(&workspace, &crate_dir, package);
        let embedded = out_dir.join(format!("{dir}.wasm"));
        std::fs::copy(&component, &embedded).expect("copy component");
        let manifest = workspace.join(&crate_dir).join("plugin.toml");
        registry.push_str(&format!(
            "    EmbeddedPlugin {{ dir: {dir:?}, manifest: include_str!({manifest:?}), component: include_bytes!({embedded:?}) }},\n",
            manifest = manifest.display().to_string(),
            embedded = embedded.display().to_string(),
        ));
    }
    registry.push(']');
    std::fs::write(out_dir.join("embedded_plugins.rs"), registry).unwrap();

    compile_build_service(&workspace, &out_dir);
}

/// Generates the BuildService's messages, server and client from
/// `proto/kiln/build/v1/build_service.proto` (protox compiles it, so no
/// `protoc` is needed), and keeps the encoded descriptors for server
/// reflection.
fn compile_build_service(workspace: &std::path::Path, out_dir: &std::path::Path) {
    let proto_root = workspace.join("proto");
    let proto = proto_root.join("kiln/build/v1/build_service.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let descriptors = protox::compile([&proto], [&proto_root])
        .unwrap_or_else(|e| panic!("{}: {e}", proto.display()));
    std::fs::write(
        out_dir.join("build_service_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )
    .unwrap();
    tonic_prost_build::configure()
        .build_transport(false)
        // Maps as kiln-api's (ordered) maps; bytes as `Bytes`, so an
        // upload's chunks reach the disk writer without a copy.
        .btree_map(".")
        .bytes(".")
        .compile_fds(descriptors)
        .unwrap_or_else(|e| panic!("generating the BuildService from {}: {e}", proto.display()));
}
