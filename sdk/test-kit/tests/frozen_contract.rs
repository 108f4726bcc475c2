//! The compatibility promise (#11): a component built from the frozen
//! `kiln:plugin@0.1.0` WIT (`wit/0.1.0`, bound directly, not through the
//! SDK) loads and runs in this host, every import answering as the
//! contract says. Every later host must keep passing this test.

use kiln_plugin_test::*;
use kiln_tests::fixture_plugin_dir;

#[tokio::test]
async fn the_frozen_0_1_0_fixture_loads_and_runs_every_builder_import() {
    let harness = PluginHarness::load(&fixture_plugin_dir().join("contract-0.1.0"))
        .unwrap()
        .with_engine(
            FakeEngine::default()
                .run_prints(&["step one", "step two"])
                .run_output("digest", FAKE_DIGEST),
        );
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    let call = BuildCall {
        executor_image: Some("registry.test/tools/executor:1".into()),
        labels: vec![("org.opencontainers.image.revision".into(), "abc".into())],
        ..BuildCall::default()
    };
    let built = harness.build(call.clone(), context.path()).await.unwrap();
    let output = built
        .result
        .unwrap_or_else(|e| panic!("{e:?}; log: {:?}", built.log));

    // Every import was called, in order, with what the plugin was given.
    let [EngineCall::BuildkitBuild(build), EngineCall::ContainerRun(run), EngineCall::RegistryManifest(read)] =
        built.engine.as_slice()
    else {
        panic!("buildkit, container, registry; got {:?}", built.engine);
    };
    assert_eq!(build.tags, call.image_refs);
    assert_eq!(build.labels.len(), 1, "host.labels reached the plugin");
    assert_eq!(run.image, "registry.test/tools/executor:1");
    assert_eq!(read, &call.image_refs[0]);

    // Every answer came back intact.
    assert_eq!(output.digest, FAKE_DIGEST);
    assert_eq!(output.cached_steps, 2, "both output lines were read");
    let output_lines: Vec<&str> = built
        .log
        .iter()
        .filter(|l| l.level == LogLevel::Output)
        .map(|l| l.text.as_str())
        .collect();
    assert_eq!(output_lines, ["run: step one", "run: step two"]);
    assert!(
        built
            .log
            .iter()
            .any(|l| l.text.contains("exit 0 after 2 lines, 1 outputs")),
        "{:?}",
        built.log
    );
}

#[tokio::test]
async fn a_component_claiming_contract_0_10_0_is_refused_with_a_clear_message() {
    let refused = PluginHarness::load(&fixture_plugin_dir().join("future-contract"))
        .err()
        .expect("refused");
    let message = refused.to_string();
    assert!(
        message.contains("kiln:plugin/source@0.10.0")
            && message.contains("this host implements kiln:plugin@0.1.x"),
        "{message}"
    );
}
