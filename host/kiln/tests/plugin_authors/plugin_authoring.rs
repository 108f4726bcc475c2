//! A plugin author's path: `kiln plugin new` scaffolds a crate that builds
//! as it is, `kiln plugin check` validates it and says what it would be
//! granted, and a server loads it from a plugin directory with the
//! operator's grant and builds with it.

use std::process::{Command, Output};
use std::time::Duration;

use kiln_tests::*;

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .unwrap()
}

/// The checkout's SDK: scaffolds depend on it by path (`--sdk-path`), as a
/// plugin author working against a checkout would.
fn sdk_path() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../sdk")
        .canonicalize()
        .unwrap()
        .display()
        .to_string()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn a_scaffolded_builder_builds_checks_loads_and_builds_an_image() {
    let work = tempfile::tempdir().unwrap();
    let plugins = work.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let out = kiln(&[
        "plugin",
        "new",
        "--kind",
        "builder",
        "my-builder",
        "--dir",
        plugins.to_str().unwrap(),
        "--sdk-path",
        &sdk_path(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dir = plugins.join("my-builder");
    for file in [
        "Cargo.toml",
        "plugin.toml",
        "src/lib.rs",
        "tests/plugin.rs",
        "README.md",
    ] {
        assert!(dir.join(file).is_file(), "{file} is scaffolded");
    }
    let again = kiln(&[
        "plugin",
        "new",
        "--kind",
        "builder",
        "my-builder",
        "--dir",
        plugins.to_str().unwrap(),
    ]);
    assert!(!again.status.success() && text(&again.stderr).contains("exists"));

    build_plugin_crate(&dir);
    // Its own test: the scaffold runs in the plugin kit, engine faked.
    test_plugin_crate(&dir);
    let checked = kiln(&["plugin", "check", dir.to_str().unwrap()]);
    let report = text(&checked.stdout);
    assert!(
        checked.status.success(),
        "{report}{}",
        text(&checked.stderr)
    );
    assert!(
        report.contains("ok: plugin my-builder 0.1.0 (Builder world"),
        "{report}"
    );
    assert!(
        report.contains("description: TODO: what my-builder does"),
        "{report}"
    );
    assert!(
        report.contains("asks for: engine=buildkit-build"),
        "{report}"
    );
    assert!(report.contains("would be granted: nothing"), "{report}");
    assert!(
        report.contains("a server with this config would refuse it: it imports kiln:plugin/engine"),
        "{report}"
    );

    let config = work.path().join("kiln.toml");
    std::fs::write(&config, "[plugins.my-builder]\ngrant = \"asked\"\n").unwrap();
    let checked = kiln(&[
        "plugin",
        "check",
        dir.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    let report = text(&checked.stdout);
    assert!(
        report.contains("would be granted: engine=buildkit-build"),
        "{report}"
    );
    assert!(!report.contains("would refuse"), "{report}");

    // The operator drops the directory into a plugin dir and grants it.
    let data = work.path().join("data");
    let server = KilnProcess::spawn(
        env!("CARGO_BIN_EXE_kiln").as_ref(),
        &data,
        &[
            "--plugin-dir",
            plugins.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let mut request = hello_request(&unique_name("scaffolded"));
    request["builder"] = "my-builder".into();
    let build_id = server.create_build(&request).await;
    let record = server
        .wait_finished(&build_id, Duration::from_secs(120))
        .await;
    assert_eq!(
        record["status"],
        "BUILD_STATUS_SUCCEEDED",
        "{record:#}\n{}",
        server.log_text(&build_id).await
    );
    assert!(server
        .log_text(&build_id)
        .await
        .contains("[my-builder] my-builder: building Dockerfile"));
}

#[tokio::test]
async fn scaffolded_sources_stores_detectors_and_notifiers_build_pass_their_tests_and_check() {
    let work = tempfile::tempdir().unwrap();
    for (kind, name, world) in [
        ("context-source", "my-source", "ContextSource"),
        ("credential-store", "my-store", "CredentialStore"),
        ("detector", "my-detector", "Detector"),
        ("notifier", "my-notifier", "Notifier"),
        ("attestor", "my-attestor", "Attestor"),
    ] {
        let out = kiln(&[
            "plugin",
            "new",
            "--kind",
            kind,
            name,
            "--dir",
            work.path().to_str().unwrap(),
            "--sdk-path",
            &sdk_path(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let dir = work.path().join(name);
        build_plugin_crate(&dir);
        test_plugin_crate(&dir);
        let checked = kiln(&["plugin", "check", dir.to_str().unwrap()]);
        let report = text(&checked.stdout);
        assert!(checked.status.success(), "{report}");
        assert!(
            report.contains(&format!("ok: plugin {name} 0.1.0 ({world} world")),
            "{report}"
        );
    }
    let bad = kiln(&[
        "plugin",
        "new",
        "--kind",
        "builder",
        "Not_Valid",
        "--dir",
        work.path().to_str().unwrap(),
    ]);
    assert!(text(&bad.stderr).contains("is not valid"));
}

/// Regression (#11): a scaffold written without `--sdk-path` depends on the
/// published SDK by version, never on the directory `kiln` was compiled in
/// (which does not exist on a machine the binary was installed to).
#[test]
fn issue_11_scaffolds_depend_on_the_sdk_by_version() {
    let work = tempfile::tempdir().unwrap();
    let out = kiln(&[
        "plugin",
        "new",
        "--kind",
        "builder",
        "by-version",
        "--dir",
        work.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let manifest = std::fs::read_to_string(work.path().join("by-version/Cargo.toml")).unwrap();
    assert!(
        manifest.contains(r#"kiln-sdk = { version = "0.1""#)
            && manifest.contains(r#"kiln-plugin-test = "0.1""#)
            && !manifest.contains("path ="),
        "{manifest}"
    );
}

#[test]
fn check_refuses_a_plugin_that_does_not_match_its_manifest() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("liar");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("plugin.toml"),
        "schema_version = 1\nid = \"liar\"\nversion = \"1\"\napi = \"0.1.0\"\ncomponent = \"c.wasm\"\n[kinds]\nbuilder = [\"liar\"]\n",
    )
    .unwrap();
    std::fs::write(dir.join("c.wasm"), fixture_component("escape-artist")).unwrap();
    let checked = kiln(&["plugin", "check", dir.to_str().unwrap()]);
    assert_eq!(checked.status.code(), Some(1));
    assert!(
        text(&checked.stdout).contains("refused:")
            && text(&checked.stdout).contains("ContextSource world"),
        "{}",
        text(&checked.stdout)
    );
}
