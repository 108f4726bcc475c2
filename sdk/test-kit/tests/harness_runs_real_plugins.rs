//! The test kit runs real plugin components in the real runtime.

use kiln_plugin_test::{HarnessError, PluginHarness};
use kiln_tests::*;

#[tokio::test]
async fn a_context_source_materializes_into_a_temporary_context() {
    // The first-party inline-zip plugin, laid out as a plugin directory.
    let dir = tempfile::tempdir().unwrap();
    let embedded = kiln_tests::kiln_server::plugins::embedded::PLUGINS
        .iter()
        .find(|p| p.dir == "inline-zip")
        .unwrap();
    let manifest = embedded
        .manifest
        .replace("[kinds]", "component = \"inline-zip.wasm\"\n\n[kinds]");
    std::fs::write(dir.path().join("plugin.toml"), manifest).unwrap();
    std::fs::write(dir.path().join("inline-zip.wasm"), embedded.component).unwrap();

    let harness = PluginHarness::load(dir.path()).unwrap();
    assert_eq!(
        harness.describe().await.unwrap(),
        "Unpacks an inline zip into the build context"
    );
    let zip_file = dir.path().join("context.zip");
    std::fs::write(
        &zip_file,
        zip_entries(&[
            ("Dockerfile", b"FROM scratch\n", 0o644),
            ("run.sh", b"#!/bin/sh\n", 0o755),
        ]),
    )
    .unwrap();
    let run = harness
        .materialize(&[("format", "zip")], Some(&zip_file))
        .await
        .unwrap();
    assert_eq!(run.info.files, 2);
    assert_eq!(
        std::fs::read(run.context.path().join("Dockerfile")).unwrap(),
        b"FROM scratch\n"
    );
    assert_eq!(
        run.info.file_modes.len(),
        1,
        "the executable is reported for the host to chmod"
    );
}

#[tokio::test]
async fn a_hostile_plugin_meets_the_same_sandbox_as_in_the_server() {
    let harness = PluginHarness::load(&fixture_plugin_dir().join("escape-artist")).unwrap();
    match harness.materialize(&[], None).await {
        Err(HarnessError::Plugin(error)) => {
            let text = format!("{error:?}");
            assert!(text.contains("read /etc/passwd: denied"), "{text}");
            assert!(!text.contains("ESCAPED"), "{text}");
        }
        other => panic!(
            "expected the plugin's own refusal, got {:?}",
            other.map(|m| m.info)
        ),
    }
}
