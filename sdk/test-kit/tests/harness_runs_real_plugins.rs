//! The test kit runs real plugin components (the first-party ones and the
//! hostile fixtures) in the real runtime, one test per world, with the
//! fake capabilities recording what each plugin asked the host for.

use kiln_plugin_runtime::bindings::engine::ContainerRunRequest;
use kiln_plugin_runtime::PluginGrant;
use kiln_plugin_test::*;
use kiln_tests::kiln_server::plugins::embedded;
use kiln_tests::*;

/// A first-party plugin, loaded from the bytes the server embeds.
fn first_party(dir: &str, grant: PluginGrant) -> PluginHarness {
    let plugin = embedded::PLUGINS
        .iter()
        .find(|p| p.dir == dir)
        .unwrap_or_else(|| panic!("no first-party plugin {dir}"));
    PluginHarness::from_bytes(plugin.manifest, plugin.component, grant).unwrap()
}

fn options(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn a_context_source_materializes_from_a_plugin_directory() {
    // The first-party inline-zip plugin, laid out as a plugin directory.
    let dir = tempfile::tempdir().unwrap();
    let embedded = embedded::PLUGINS
        .iter()
        .find(|p| p.dir == "inline-zip")
        .unwrap();
    let manifest = embedded
        .manifest
        .replace("[kinds]", "component = \"inline-zip.wasm\"\n\n[kinds]");
    std::fs::write(dir.path().join("plugin.toml"), manifest).unwrap();
    std::fs::write(dir.path().join("inline-zip.wasm"), embedded.component).unwrap();

    let harness = PluginHarness::load(dir.path()).unwrap();
    harness.instantiate().await.unwrap();
    assert!(harness.plugin().manifest.description.contains("inline zip"));
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
    let info = run.result.unwrap();
    assert_eq!(info.files, 2);
    assert_eq!(
        std::fs::read(run.context.path().join("Dockerfile")).unwrap(),
        b"FROM scratch\n"
    );
    assert_eq!(
        info.file_modes.len(),
        1,
        "the executable is reported for the host to chmod"
    );
    assert!(run.checkouts.is_empty());
}

#[tokio::test]
async fn a_git_source_checks_out_through_the_fake_and_the_grant_decides_the_host() {
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(repo.path().join("app")).unwrap();
    std::fs::write(repo.path().join("app/Dockerfile"), "FROM scratch\n").unwrap();
    let harness = first_party("git", PluginGrant::asked()).with_git(FakeGit::serving(repo.path()));
    let run = harness
        .materialize(
            &[
                ("url", "https://github.com/acme/app.git"),
                ("reference", "main"),
                ("context-dir", "app"),
                ("submodules", "false"),
            ],
            None,
        )
        .await
        .unwrap();
    let info = run
        .result
        .unwrap_or_else(|e| panic!("{e:?}; log: {:?}", run.log));
    assert_eq!(info.files, 1);
    assert!(run.context.path().join("Dockerfile").is_file());
    assert_eq!(run.checkouts.len(), 1);
    assert_eq!(run.checkouts[0].url, "https://github.com/acme/app.git");
    assert_eq!(run.checkouts[0].reference, "main");
    assert_eq!(run.checkouts[0].context_dir, "app");

    // `*` does not admit local repositories: the runtime's permit says no,
    // and the plugin relays the refusal.
    let refused = harness
        .materialize(
            &[
                ("url", "file:///srv/git/app.git"),
                ("reference", "main"),
                ("context-dir", ""),
                ("submodules", "false"),
            ],
            None,
        )
        .await
        .unwrap();
    let error = format!("{:?}", refused.result.unwrap_err());
    assert!(error.contains("file://"), "{error}");
    assert!(!refused.context.path().join("app").exists());
}

#[tokio::test]
async fn a_builder_is_tested_by_what_it_asked_the_engine_for() {
    let harness = first_party("buildkit", PluginGrant::asked());
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    let call = BuildCall {
        build_args: options(&[("VERSION", "1.2")]),
        secrets: vec!["npm".into()],
        target: Some("runtime".into()),
        ..BuildCall::default()
    };
    let built = harness.build(call.clone(), context.path()).await.unwrap();
    let output = built
        .result
        .unwrap_or_else(|e| panic!("{e:?}; log: {:?}", built.log));
    assert_eq!(output.digest, FAKE_DIGEST);
    assert_eq!(output.image_refs, call.image_refs);
    let [EngineCall::BuildkitBuild(request)] = built.engine.as_slice() else {
        panic!("one BuildKit build, got {:?}", built.engine);
    };
    assert_eq!(request.tags, call.image_refs);
    assert_eq!(request.dockerfile, "Dockerfile");
    assert_eq!(request.target.as_deref(), Some("runtime"));
    assert_eq!(request.secrets, vec!["npm".to_string()]);
    assert!(request
        .build_args
        .iter()
        .any(|kv| kv.key == "VERSION" && kv.value == "1.2"));

    // The engine's failure reaches the plugin, which passes it through.
    let failing = first_party("buildkit", PluginGrant::asked()).with_engine(
        FakeEngine::default().fail_builds(FailureReason::RunFailed, "RUN make: exit code 2"),
    );
    let built = failing
        .build(BuildCall::default(), context.path())
        .await
        .unwrap();
    match built.result {
        Err(PluginError::Engine(failure)) => {
            assert_eq!(failure.reason, FailureReason::RunFailed);
            assert!(
                failure.message.contains("exit code 2"),
                "{}",
                failure.message
            );
        }
        other => panic!("expected the engine failure, got {other:?}"),
    }
}

#[tokio::test]
async fn the_runtime_checks_permissions_before_the_fake_engine_sees_a_request() {
    // A builder that tries to push another organization's image: the
    // runtime refuses the call, so the fake records nothing.
    let harness = PluginHarness::load(&fixture_plugin_dir().join("engine-caller")).unwrap();
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    let built = harness
        .build(BuildCall::default(), context.path())
        .await
        .unwrap();
    assert!(built.engine.is_empty(), "{:?}", built.engine);
    match built.result {
        Err(PluginError::Denied(message)) => {
            assert!(message.contains("another-org"), "{message}");
        }
        other => panic!("expected the runtime's refusal, got {other:?}"),
    }

    // An ungranted import is refused at load, naming the permission.
    let plugin = embedded::PLUGINS
        .iter()
        .find(|p| p.dir == "buildkit")
        .unwrap();
    let refused =
        PluginHarness::from_bytes(plugin.manifest, plugin.component, PluginGrant::default())
            .err()
            .expect("refused");
    assert!(
        refused
            .to_string()
            .contains("needs the `engine` permission"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_container_running_builder_is_tested_by_its_container_runs_and_registry_reads() {
    let harness = first_party("kaniko", PluginGrant::asked()).with_engine(
        FakeEngine::default()
            .run_output("digest", FAKE_DIGEST)
            .run_prints(&[
                "time=\"2026-12-01T10:00:00Z\" level=info msg=\"Retrieving image manifest scratch\"",
                "time=\"2026-12-01T10:00:01Z\" level=info msg=\"Pushing image to registry.test/acme/app:latest\"",
            ]),
    );
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    let call = BuildCall {
        executor_image: Some("ghcr.io/osscontainertools/kaniko:v1.24".into()),
        ..BuildCall::default()
    };
    let built = harness.build(call.clone(), context.path()).await.unwrap();
    let output = built
        .result
        .unwrap_or_else(|e| panic!("{e:?}; log: {:?}", built.log));
    assert_eq!(output.digest, FAKE_DIGEST);
    let [EngineCall::ContainerRun(run), EngineCall::RegistryManifest(read)] =
        built.engine.as_slice()
    else {
        panic!(
            "a container run then a registry read, got {:?}",
            built.engine
        );
    };
    let ContainerRunRequest { image, args, .. } = run;
    assert_eq!(image, "ghcr.io/osscontainertools/kaniko:v1.24");
    assert!(
        args.iter()
            .any(|a| a == &format!("--destination={}", call.image_refs[0])),
        "{args:?}"
    );
    assert_eq!(read, &call.image_refs[0]);
    assert!(
        built
            .log
            .iter()
            .any(|l| l.text.contains("kaniko: executor")),
        "{:?}",
        built.log
    );
    // The plugin read the executor's output and rendered it itself, as
    // build output in BuildKit's plain style.
    let rendered: Vec<&str> = built
        .log
        .iter()
        .filter(|l| l.level == LogLevel::Output)
        .map(|l| l.text.as_str())
        .collect();
    assert!(
        rendered.iter().any(|l| l.starts_with("#1 ")),
        "{rendered:?}"
    );
}

#[tokio::test]
async fn a_detector_reads_the_context_it_is_given() {
    let harness = first_party("wizard-detect", PluginGrant::asked());
    let context = tempfile::tempdir().unwrap();
    std::fs::write(
        context.path().join("package.json"),
        r#"{"name":"web","scripts":{"start":"node server.js"}}"#,
    )
    .unwrap();
    std::fs::write(context.path().join("server.js"), "console.log(1)\n").unwrap();
    let detected = harness
        .detect(
            context.path(),
            "",
            &[("node", "127.0.0.1:5000/base/node:22")],
        )
        .await
        .unwrap();
    let projects = detected.result.unwrap();
    assert_eq!(projects.len(), 1, "{projects:?}");
    assert_eq!(projects[0].stack, "node");
    assert!(
        projects[0]
            .dockerfile
            .contains("127.0.0.1:5000/base/node:22"),
        "{}",
        projects[0].dockerfile
    );
}

#[tokio::test]
async fn a_credential_store_answers_from_its_mounted_directory() {
    let credentials = tempfile::tempdir().unwrap();
    std::fs::write(
        credentials.path().join("acme.json"),
        r#"{"buildSecrets": {"NPM_TOKEN": "s3cr3t"}}"#,
    )
    .unwrap();
    let harness = first_party("file-credentials", PluginGrant::asked())
        .with_credentials_dir(credentials.path());
    let keys = harness.list_keys("acme").await.unwrap().result.unwrap();
    assert_eq!(keys, vec!["build/NPM_TOKEN".to_string()]);
    let value = harness
        .get("acme", "build/NPM_TOKEN")
        .await
        .unwrap()
        .result
        .unwrap();
    assert!(value.is_some());
    assert_eq!(
        harness
            .get("other", "build/NPM_TOKEN")
            .await
            .unwrap()
            .result
            .unwrap(),
        None
    );
    // Read-only: the store's own refusal is the call's result.
    let refused = harness.put("acme", "build/X", b"y").await.unwrap().result;
    assert!(
        matches!(&refused, Err(PluginError::Denied(m)) if m.contains("read-only")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_hostile_plugin_meets_the_same_sandbox_as_in_the_server() {
    let harness = PluginHarness::load(&fixture_plugin_dir().join("escape-artist")).unwrap();
    let run = harness.materialize(&[], None).await.unwrap();
    let text = format!("{:?}", run.result.unwrap_err());
    assert!(text.contains("read /etc/passwd: denied"), "{text}");
    assert!(!text.contains("ESCAPED"), "{text}");
}

/// A loopback HTTP server that answers `status` to each request and hands
/// the requests it read (head and body) to the test.
fn answering(status: u16, requests: usize) -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sent, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
                head.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let answer = format!(
                "HTTP/1.1 {status} Whatever\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
            );
            stream.write_all(answer.as_bytes()).unwrap();
            sent.send(head + &String::from_utf8(body).unwrap()).unwrap();
        }
    });
    (port, received)
}

#[tokio::test]
async fn a_notifier_posts_to_a_granted_host_and_says_when_to_retry() {
    let (port, requests) = answering(503, 1);
    let grant = kiln_tests::kiln_server::config::FileConfig::parse_grant(&format!(
        "http = [\"127.0.0.1:{port}\"]"
    ));
    let harness = first_party("http-post", grant);
    let call = NotifyCall {
        options: options(&[
            ("url", &format!("http://127.0.0.1:{port}/hook")),
            (
                "template",
                r#"{"text": "{{name}} #{{number}} {{status}} {{digest}}"}"#,
            ),
        ]),
        ..NotifyCall::default()
    };
    let notified = harness.notify(call.clone()).await.unwrap();
    let request = requests.recv().unwrap();
    assert!(request.starts_with("POST /hook HTTP/1.1\r\n"), "{request}");
    assert!(
        request.contains("content-type: application/json"),
        "{request}"
    );
    assert!(
        request.ends_with(&format!(r#"{{"text": "app #3 SUCCEEDED {FAKE_DIGEST}"}}"#)),
        "{request}"
    );
    // 503 is worth another attempt; the plugin says so.
    assert!(
        matches!(&notified.result, Err(NotifyError::Retry(m)) if m.contains("503")),
        "{:?}",
        notified.result
    );

    // Any other host is refused by the runtime before a byte is sent.
    let elsewhere = NotifyCall {
        options: options(&[("url", "http://127.0.0.1:9/hook")]),
        ..NotifyCall::default()
    };
    let refused = harness.notify(elsewhere).await.unwrap();
    assert!(
        matches!(&refused.result, Err(NotifyError::GiveUp(m)) if m.contains("[plugins.http-post]")),
        "{:?}",
        refused.result
    );

    // Not a notifier: the harness says which world the plugin is.
    let builder = first_party("buildkit", PluginGrant::asked());
    let wrong = builder.notify(NotifyCall::default()).await.err().unwrap();
    assert!(wrong.to_string().contains("notifier"), "{wrong}");
}

#[tokio::test]
async fn an_attestor_reads_the_image_filesystem_it_is_given_and_nothing_else() {
    let harness = first_party("sbom", PluginGrant::default());
    let rootfs = tempfile::tempdir().unwrap();
    let root = rootfs.path();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
    std::fs::write(
        root.join("etc/os-release"),
        "ID=debian\nVERSION_ID=\"12\"\n",
    )
    .unwrap();
    std::fs::write(
        root.join("var/lib/dpkg/status"),
        "Package: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.2.15-2+b7\n",
    )
    .unwrap();
    // A link out of the image: the sandbox resolves it inside /rootfs.
    std::os::unix::fs::symlink("/etc", root.join("host-etc")).unwrap();

    let attested = harness.attest(root, AttestCall::default()).await.unwrap();

    let attestation = attested.result.unwrap();
    assert_eq!(attestation.predicate_type, "https://spdx.dev/Document");
    assert_eq!(attestation.summary, "1 packages: deb 1");
    let document: serde_json::Value = serde_json::from_str(&attestation.predicate).unwrap();
    assert_eq!(
        document["packages"][0]["name"],
        "registry.test/acme/app:latest"
    );
    assert_eq!(
        document["packages"][1]["externalRefs"][0]["referenceLocator"],
        "pkg:deb/debian/bash@5.2.15-2+b7?arch=amd64&distro=debian-12"
    );
}
