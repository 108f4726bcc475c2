//! The `kaniko` builder. No registry can be pulled here, so the real
//! executor runs only when `KILN_TEST_KANIKO_IMAGE` names a Kaniko executor
//! image already in the local Docker Engine; that test says so plainly
//! when it skips. Everything else — the configured image as the builder's
//! only runnable image, the missing-image error, secrets refused, and the
//! registry manifest the builder reads back — runs against the real engine
//! and registry. (Argument mapping, log rendering and error mapping are
//! unit-tested in `plugins/kaniko`, the rendering from recorded executor
//! output in `plugins/kaniko/testdata`; `scripts/kaniko_from_source.sh`
//! builds an executor image where none can be pulled.)

use std::time::Duration;

use kiln_tests::*;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(300);

async fn server_with_executor(image: &str) -> TestServer {
    let image = image.to_string();
    TestServer::start_with(move |config| config.kaniko_image = image).await
}

#[tokio::test]
async fn the_configured_executor_is_the_only_image_kaniko_may_run() {
    let t = server_with_executor("registry.example.com/tools/kaniko-executor:v9").await;
    let plugins = t.get("/v1/plugins").await.json();
    let kaniko = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "kaniko")
        .cloned()
        .expect("the kaniko builder is loaded");
    assert_eq!(
        kaniko["grantedPermissions"]["images"],
        json!(["registry.example.com/tools/kaniko-executor:v9"]),
        "{kaniko:#}"
    );
}

#[tokio::test]
async fn a_missing_executor_image_is_a_clear_error_naming_it() {
    let image = "kiln-test.invalid/kaniko-executor-missing:1";
    let t = server_with_executor(image).await;
    let mut request = hello_request(&unique_name("kaniko-missing"));
    request["builder"] = json!("kaniko");
    let id = t.create_build(&request).await;
    let record = t.wait_finished(&id, LIMIT).await;
    assert_eq!(record["status"], "BUILD_STATUS_FAILED", "{record:#}");
    let message = record["failure"]["message"].as_str().unwrap();
    assert!(message.contains(image), "{message}");
    assert!(message.contains("--kaniko-image"), "{message}");
    assert!(message.contains("KILN_KANIKO_IMAGE"), "{message}");
}

#[tokio::test]
async fn kaniko_refuses_build_secrets_up_front() {
    let t = TestServer::start().await;
    let saved = t
        .save_secrets(&json!({"buildSecrets": {"TOKEN": "value-1234"}}))
        .await;
    assert_eq!(saved.status, 200);
    for field in ["secrets", "secretBuildArgs"] {
        let mut request = hello_request("kaniko-secrets");
        request["builder"] = json!("kaniko");
        request[field] = json!(["TOKEN"]);
        let answer = t.post_json("/v1/builds", &request).await;
        assert_eq!(answer.status, 400, "{field}");
        assert!(
            answer.error_message().contains("buildkit"),
            "{}",
            answer.error_message()
        );
    }
}

#[tokio::test]
async fn the_registry_manifest_matches_what_the_engine_pushed() {
    let t = TestServer::start().await;
    let id = t
        .create_build(&hello_request(&unique_name("manifest")))
        .await;
    let record = t.wait_finished(&id, LIMIT).await;
    assert_eq!(record["status"], "BUILD_STATUS_SUCCEEDED", "{record:#}");
    let reference = record["imageRefs"][0].as_str().unwrap();
    let pushed = kiln_server::engine::registry::manifest(reference, None)
        .await
        .unwrap();
    assert_eq!(pushed.digest, record["digest"].as_str().unwrap());
    assert_eq!(
        pushed.layer_count as u64,
        record["metrics"]["layerCount"].as_u64().unwrap()
    );
    assert!(pushed.size_bytes > 0);
    let missing = kiln_server::engine::registry::manifest(
        &format!("{REGISTRY}/default/no-such-image-{}:v1", unique_name("x")),
        None,
    )
    .await
    .unwrap_err();
    assert!(missing.message.contains("404"), "{}", missing.message);
}

/// Say so on the real stderr: the test harness captures `eprintln!` of
/// passing tests, and a skip must be seen.
fn skipped(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// The executor image `KILN_TEST_KANIKO_IMAGE` names, when it is in the
/// local Docker Engine; otherwise `test` is skipped, saying why.
async fn executor_image(test: &str) -> Option<String> {
    let Ok(image) = std::env::var("KILN_TEST_KANIKO_IMAGE") else {
        skipped(test, "KILN_TEST_KANIKO_IMAGE is not set (name a Kaniko executor image loaded in the local Docker Engine to run it)");
        return None;
    };
    if docker().inspect_image(&image).await.is_err() {
        skipped(test, &format!("{image} is not in the local Docker Engine"));
        return None;
    }
    Some(image)
}

#[tokio::test]
async fn kaniko_builds_hello_when_an_executor_image_is_present() {
    let Some(image) = executor_image("kaniko_builds_hello_when_an_executor_image_is_present").await
    else {
        return;
    };
    let t = server_with_executor(&image).await;
    let mut request = hello_request(&unique_name("kaniko"));
    request["builder"] = json!("kaniko");
    request["noCache"] = json!(true);
    let id = t.create_build(&request).await;
    let record = t.wait_finished(&id, LIMIT).await;
    let log = t.log_text(&id).await;
    assert_eq!(
        record["status"], "BUILD_STATUS_SUCCEEDED",
        "{record:#}\n{log}"
    );
    assert!(record["digest"].as_str().unwrap().starts_with("sha256:"));
    assert!(record["metrics"]["layerCount"].as_u64().unwrap() > 0);
    assert!(log.contains("#1 [1/"), "BuildKit-style steps: {log}");
    assert!(
        log.contains(&format!("] FROM {REGISTRY}/base/busybox:1")),
        "the FROM resolved: {log}"
    );
    // Kaniko pushes to the registry and loads nothing into the engine:
    // pull what it pushed, as a user would, then run it (#17).
    let image_ref = record["imageRefs"][0].as_str().unwrap();
    pull(image_ref).await;
    let output = run_image(image_ref).await;
    assert!(output.contains("Hello from Kiln!"), "{output}");

    let mut failing = dockerfile_request(
        &unique_name("kaniko-fail"),
        &format!("FROM {REGISTRY}/base/busybox:1\nRUN sleep 1\nRUN exit 7\n"),
    );
    failing["builder"] = json!("kaniko");
    let id = t.create_build(&failing).await;
    let record = t.wait_finished(&id, LIMIT).await;
    assert_eq!(record["failure"]["reason"], "RUN_FAILED", "{record:#}");
    assert_eq!(record["failure"]["exitCode"], 7, "{record:#}");
    // The failing RUN is the step that shows ERROR (#17).
    let log = t.log_text(&id).await;
    let run_step = log
        .lines()
        .find(|l| l.contains("RUN exit 7") && l.starts_with('#'))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no RUN step: {log}"))
        .to_string();
    assert!(log.contains(&format!("{run_step} ERROR:")), "{log}");
    assert!(!log.contains(&format!("{run_step} DONE")), "{log}");
    // Steps show how long they ran (#17): `RUN sleep 1` about a second.
    let slept: f64 = log
        .lines()
        .skip_while(|l| !l.contains("RUN sleep 1"))
        .find_map(|l| l.split(" DONE ").nth(1))
        .and_then(|d| d.trim_end_matches('s').parse().ok())
        .unwrap_or_else(|| panic!("no duration for RUN sleep 1: {log}"));
    assert!(
        (0.9..10.0).contains(&slept),
        "RUN sleep 1 took {slept}s: {log}"
    );
}

/// Issue 16's "done when", with a real executor: an `auto` Kaniko build
/// that runs out of memory (Kaniko runs as a container, so the profile's
/// memory is enforced) is rebuilt once one size up and succeeds.
#[tokio::test]
async fn issue_16_an_auto_kaniko_build_out_of_memory_is_rebuilt_one_size_up() {
    let Some(image) =
        executor_image("issue_16_an_auto_kaniko_build_out_of_memory_is_rebuilt_one_size_up").await
    else {
        return;
    };
    let t = TestServer::start_with(move |config| {
        config.kaniko_image = image;
        // `auto` starts at medium: too small for the step below.
        config.profiles[1].memory_bytes = 160 << 20;
        config.profiles[2].memory_bytes = 1 << 30;
    })
    .await;
    let mut hungry = dockerfile_request(
        &unique_name("kaniko-hungry"),
        &format!(
            "FROM {REGISTRY}/base/busybox:1\nRUN dd if=/dev/zero of=/dev/null bs=300M count=1\n"
        ),
    );
    hungry["builder"] = json!("kaniko");
    hungry["noCache"] = json!(true);
    let id = t.create_build(&hungry).await;
    let record = t.wait_finished(&id, LIMIT).await;
    let log = t.log_text(&id).await;
    assert_eq!(
        record["status"], "BUILD_STATUS_SUCCEEDED",
        "{record:#}\n{log}"
    );
    assert_eq!(record["profileUsed"], "large", "{record:#}");
    assert_eq!(record["attempts"][0]["profile"], "medium", "{record:#}");
    assert_eq!(
        record["attempts"][0]["failure"]["reason"], "OUT_OF_MEMORY",
        "{record:#}"
    );
    assert!(
        log.contains("profile auto: OUT_OF_MEMORY with medium (160 MiB); building once more with large (1024 MiB)"),
        "{log}"
    );
}
