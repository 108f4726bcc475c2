//! Plugins that misbehave fail only their own build, within their limits,
//! and the host keeps building. The plugins are real components built from
//! `fixtures/plugins/` by this crate's build script.

use std::time::{Duration, Instant};

use kiln_tests::*;

async fn server_with_fixtures() -> TestServer {
    TestServer::start_with(|config| config.plugin_dirs = vec![fixture_plugin_dir()]).await
}

async fn failure_of_builder(t: &TestServer, builder: &str) -> (serde_json::Value, Duration) {
    let (record, took) = run_hostile(t, builder).await;
    assert_eq!(record["status"], "BUILD_STATUS_FAILED", "{record:#}");
    (record["failure"].clone(), took)
}

async fn run_hostile(t: &TestServer, builder: &str) -> (serde_json::Value, Duration) {
    let mut request = hello_request(&unique_name(builder));
    request["builder"] = builder.into();
    let started = Instant::now();
    let build_id = t.create_build(&request).await;
    let record = t.wait_finished(&build_id, Duration::from_secs(60)).await;
    (record, started.elapsed())
}

#[tokio::test]
async fn a_plugin_that_loops_forever_is_stopped_at_its_time_limit() {
    let t = server_with_fixtures().await;
    let (record, took) = run_hostile(&t, "loop-forever").await;
    assert_eq!(record["status"], "BUILD_STATUS_FAILED", "{record:#}");
    assert_eq!(record["failure"]["reason"], "PLUGIN_ERROR");
    let message = record["failure"]["message"].as_str().unwrap();
    assert_eq!(
        message,
        "plugin loop-forever exceeded its time limit of 2 s"
    );
    // Its manifest allows 2 s; allow for the unpacking step and a slow machine.
    assert!(took < Duration::from_secs(15), "stopped after {took:?}");

    let build_id = t
        .create_build(&hello_request(&unique_name("after-loop")))
        .await;
    let next = t.wait_finished(&build_id, Duration::from_secs(120)).await;
    assert_eq!(
        next["status"], "BUILD_STATUS_SUCCEEDED",
        "the host keeps building: {next:#}"
    );
}

#[tokio::test]
async fn a_plugin_that_allocates_without_bound_is_stopped_at_its_memory_limit() {
    let t = server_with_fixtures().await;
    let (record, took) = run_hostile(&t, "alloc-unbounded").await;
    assert_eq!(record["status"], "BUILD_STATUS_FAILED", "{record:#}");
    assert_eq!(record["failure"]["reason"], "PLUGIN_ERROR");
    let message = record["failure"]["message"].as_str().unwrap();
    assert_eq!(
        message,
        "plugin alloc-unbounded exceeded its memory limit of 64 MiB"
    );
    assert!(took < Duration::from_secs(15), "stopped after {took:?}");
    let log = t.log_text(record["buildId"].as_str().unwrap()).await;
    assert!(
        log.contains("[alloc-unbounded] alloc-unbounded: allocating"),
        "{log}"
    );

    let build_id = t
        .create_build(&hello_request(&unique_name("after-alloc")))
        .await;
    let next = t.wait_finished(&build_id, Duration::from_secs(120)).await;
    assert_eq!(
        next["status"], "BUILD_STATUS_SUCCEEDED",
        "the host keeps building: {next:#}"
    );
}

#[tokio::test]
async fn a_panicking_plugin_fails_its_build_with_the_panic_message() {
    let t = server_with_fixtures().await;
    let (failure, _) = failure_of_builder(&t, "panic").await;
    assert_eq!(failure["reason"], "PLUGIN_ERROR");
    let message = failure["message"].as_str().unwrap();
    assert!(message.starts_with("plugin panic crashed"), "{message}");
    assert!(
        message.contains("the panic fixture gives up on build"),
        "{message}"
    );
}

#[tokio::test]
async fn a_plugin_cannot_read_write_list_or_connect_outside_its_sandbox() {
    let t = server_with_fixtures().await;
    let build_id = t
        .create_build(
            &serde_json::json!({"name": unique_name("escape"), "contextUrl": "escape://anywhere"}),
        )
        .await;
    let record = t.wait_finished(&build_id, Duration::from_secs(60)).await;
    assert_eq!(record["failure"]["reason"], "CONTEXT_INVALID", "{record:#}");
    let message = record["failure"]["message"].as_str().unwrap();
    for attempt in [
        "read /etc/passwd: denied",
        "read /context/../../../../etc/passwd: denied",
        "write /context/../escaped: denied",
        "list /: denied",
        "env HOME: denied",
        "connect 127.0.0.1:5000: denied",
    ] {
        assert!(message.contains(attempt), "{attempt:?} in {message}");
    }
    assert!(!message.contains("ESCAPED"), "{message}");
}

#[tokio::test]
async fn a_flooding_plugin_is_capped_and_the_log_stays_usable() {
    let t = server_with_fixtures().await;
    let (failure, took) = failure_of_builder(&t, "log-flood").await;
    assert_eq!(
        failure["message"],
        "plugin log-flood failed: the flood is over"
    );
    assert!(took < Duration::from_secs(60), "{took:?}");
    let build_id = t.get("/v1/builds?pageSize=1").await.json()["builds"][0]["buildId"]
        .as_str()
        .unwrap()
        .to_string();
    let log = t.log(&build_id).await;
    let bytes: usize = log.iter().map(|l| l["line"].as_str().unwrap().len()).sum();
    assert!(
        bytes < 5 << 20,
        "{bytes} bytes of log kept from a 64 MiB flood"
    );
    assert!(log
        .iter()
        .any(|l| l["line"].as_str().unwrap().contains("log output cut")));
}

#[tokio::test]
async fn an_import_that_was_not_granted_is_refused_at_load_and_a_grant_outside_the_build_is_denied()
{
    // Not granted: refused when loading, with the permission named.
    let plugins = plugin_dir_with(&["engine-caller"], &[]);
    let dir = plugins.path().to_path_buf();
    let t = TestServer::start_with(|c| c.plugin_dirs = vec![dir]).await;
    let listed = t.get("/v1/plugins").await.json();
    let errors = listed["loadErrors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{listed:#}");
    assert_eq!(errors[0]["pluginId"], "engine-caller");
    let message = errors[0]["message"].as_str().unwrap();
    assert!(
        message.contains("needs the `engine` permission"),
        "{message}"
    );
    assert!(
        message.contains("the operator has not granted it"),
        "{message}"
    );
    let mut request = hello_request(&unique_name("ungranted"));
    request["builder"] = "engine-caller".into();
    assert_eq!(t.post_json("/v1/builds", &request).await.status, 400);
    drop(t);

    // Granted what it asks: it loads, but pushing someone else's image is denied.
    let dir = plugins.path().to_path_buf();
    let t = TestServer::start_with(|c| {
        c.plugin_dirs = vec![dir];
        c.plugin_grants
            .insert("engine-caller".into(), toml_grant("grant = \"asked\""));
    })
    .await;
    let listed = t.get("/v1/plugins").await.json();
    assert_eq!(listed["loadErrors"], serde_json::json!([]), "{listed:#}");
    let (failure, _) = failure_of_builder(&t, "engine-caller").await;
    assert_eq!(failure["reason"], "PLUGIN_ERROR");
    let message = failure["message"].as_str().unwrap();
    assert!(
        message.contains("may only push its own references"),
        "{message}"
    );
    let (status, _) = registry_manifest("another-org/their-app", "latest").await;
    assert_eq!(status, 404, "nothing was pushed");
}

fn toml_grant(text: &str) -> kiln_tests::kiln_server::config::PluginGrant {
    kiln_tests::kiln_server::config::FileConfig::parse_grant(text)
}

#[tokio::test]
async fn invalid_and_lying_plugins_are_listed_as_load_errors_and_the_rest_load() {
    let source = fixture_component("escape-artist");
    let panic = fixture_component("panic");
    let lying_sha = format!(
        "schema_version = 1\nid = \"lying-sha\"\nversion = \"1\"\napi = \"0.1.0\"\ncomponent = \"component.wasm\"\nsha256 = \"{}\"\n[kinds]\nbuilder = [\"lying-sha\"]\n",
        "0".repeat(64)
    );
    let lying_world = "schema_version = 1\nid = \"lying-world\"\nversion = \"1\"\napi = \"0.1.0\"\ncomponent = \"component.wasm\"\n[kinds]\nbuilder = [\"lying-world\"]\n";
    let not_wasm = "schema_version = 1\nid = \"not-wasm\"\nversion = \"1\"\napi = \"0.1.0\"\ncomponent = \"component.wasm\"\n[kinds]\nbuilder = [\"not-wasm\"]\n";
    let hijack = "schema_version = 1\nid = \"hijack\"\nversion = \"1\"\napi = \"0.1.0\"\ncomponent = \"component.wasm\"\n[kinds]\nbuilder = [\"buildkit\"]\n";
    let plugins = plugin_dir_with(
        &["loop-forever", "future-contract"],
        &[
            ("a-lying-sha", &lying_sha, &panic),
            ("b-lying-world", lying_world, &source),
            ("c-not-wasm", not_wasm, b"\0asm this is not a component"),
            ("d-hijack", hijack, &panic),
        ],
    );
    let dir = plugins.path().to_path_buf();
    let t = TestServer::start_with(|c| c.plugin_dirs = vec![dir]).await;
    let listed = t.get("/v1/plugins").await.json();
    let errors: std::collections::BTreeMap<String, String> = listed["loadErrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["pluginId"].as_str().unwrap().to_string(),
                e["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        errors["lying-sha"].contains("the manifest says 0000"),
        "{errors:#?}"
    );
    assert!(
        errors["lying-world"].contains("implements the ContextSource world"),
        "{errors:#?}"
    );
    assert!(
        errors["not-wasm"].contains("not a valid wasm component"),
        "{errors:#?}"
    );
    assert!(
        errors["hijack"].contains("`buildkit` is already provided by plugin buildkit"),
        "{errors:#?}"
    );
    // Regression (#11): `0.10.0` is not `0.1`; the message names both.
    assert!(
        errors["future-contract"].contains("kiln:plugin/source@0.10.0")
            && errors["future-contract"].contains("kiln:plugin@0.1.x"),
        "{errors:#?}"
    );
    let ids: Vec<&str> = listed["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"loop-forever") && ids.contains(&"buildkit"),
        "{ids:?}"
    );
    // The real buildkit still builds.
    let build_id = t
        .create_build(&hello_request(&unique_name("not-hijacked")))
        .await;
    let record = t.wait_finished(&build_id, Duration::from_secs(120)).await;
    assert_eq!(record["status"], "BUILD_STATUS_SUCCEEDED", "{record:#}");
}
