//! Each failure the real daemon and registry can be made to produce gets
//! its reason and a hint that says what to do. (RUN_FAILED, CONTEXT_INVALID,
//! PLUGIN_ERROR, TIMEOUT and INTERRUPTED have tests of their own.)

use std::time::Duration;

use kiln_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(120);

async fn failure_of(t: &TestServer, request: &Value) -> Value {
    let build_id = t.create_build(request).await;
    let record = t.wait_finished(&build_id, LIMIT).await;
    assert_eq!(record["status"], "BUILD_STATUS_FAILED", "{record:#}");
    record["failure"].clone()
}

fn context(entries: &[(&str, &str)]) -> String {
    let entries: Vec<(&str, &[u8], u32)> = entries
        .iter()
        .map(|(name, text)| (*name, text.as_bytes(), 0o644))
        .collect();
    base64(&zip_entries(&entries))
}

#[tokio::test]
async fn a_missing_dockerfile_is_named_with_its_case() {
    let t = TestServer::start().await;
    let failure = failure_of(
        &t,
        &json!({"name": unique_name("nodockerfile"), "zippedCode": context(&[("dockerfile", "FROM scratch\n")])}),
    )
    .await;
    assert_eq!(failure["reason"], "DOCKERFILE_NOT_FOUND");
    let message = failure["message"].as_str().unwrap();
    assert!(message.contains("`Dockerfile` not found"), "{message}");
    assert!(message.contains("there is `dockerfile`"), "{message}");
    assert!(failure["hint"].as_str().unwrap().contains("case-sensitive"));

    let failure = failure_of(
        &t,
        &json!({"name": unique_name("nodockerfile"), "dockerfile": "build/Dockerfile.prod",
                "zippedCode": context(&[("Dockerfile", "FROM scratch\n")])}),
    )
    .await;
    assert_eq!(failure["reason"], "DOCKERFILE_NOT_FOUND");
    assert!(failure["message"]
        .as_str()
        .unwrap()
        .contains("build/Dockerfile.prod"));
}

#[tokio::test]
async fn a_dockerfile_syntax_error_is_a_parse_error() {
    let t = TestServer::start().await;
    let dockerfile = format!("FROM {REGISTRY}/base/busybox:1\nFROBNICATE everything\n");
    let failure = failure_of(&t, &dockerfile_request(&unique_name("parse"), &dockerfile)).await;
    assert_eq!(failure["reason"], "DOCKERFILE_PARSE_ERROR", "{failure:#}");
    assert!(
        failure["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("frobnicate"),
        "{failure:#}"
    );
}

#[tokio::test]
async fn copying_a_missing_file_is_a_copy_failure() {
    let t = TestServer::start().await;
    let dockerfile = format!("FROM {REGISTRY}/base/busybox:1\nCOPY not-in-context.txt /app/\n");
    let failure = failure_of(&t, &dockerfile_request(&unique_name("copy"), &dockerfile)).await;
    assert_eq!(failure["reason"], "COPY_FAILED", "{failure:#}");
    assert!(
        failure["message"]
            .as_str()
            .unwrap()
            .contains("not-in-context.txt"),
        "{failure:#}"
    );
    assert!(failure["hint"].as_str().unwrap().contains(".dockerignore"));
}

#[tokio::test]
async fn a_registry_that_wants_credentials_is_push_unauthorized() {
    let registry = TestRegistry::start(RegistryMode::BasicAuth).await;
    let t = TestServer::start_with(|c| c.registry = registry.addr.clone()).await;
    let failure = failure_of(&t, &hello_request(&unique_name("unauthorized"))).await;
    assert_eq!(failure["reason"], "PUSH_UNAUTHORIZED", "{failure:#}");
    assert!(
        failure["message"]
            .as_str()
            .unwrap()
            .contains(&registry.addr),
        "{failure:#}"
    );
    assert!(failure["hint"].as_str().unwrap().contains("credentials"));
}

#[tokio::test]
async fn a_registry_that_refuses_writes_is_push_denied() {
    let registry = TestRegistry::start(RegistryMode::ReadOnly).await;
    let t = TestServer::start_with(|c| c.registry = registry.addr.clone()).await;
    let failure = failure_of(&t, &hello_request(&unique_name("denied"))).await;
    assert_eq!(failure["reason"], "PUSH_DENIED", "{failure:#}");
    assert!(
        failure["message"].as_str().unwrap().contains("push of"),
        "{failure:#}"
    );
}

/// Issue 12: a `FROM` whose tag does not exist was `DOCKERFILE_PARSE_ERROR`.
#[tokio::test]
async fn issue_12_a_missing_base_image_is_base_image_not_found_naming_it() {
    let t = TestServer::start().await;
    let missing = format!("{REGISTRY}/base/busybox:no-such-tag");
    let failure = failure_of(
        &t,
        &dockerfile_request(
            &unique_name("no-base"),
            &format!("FROM {missing}\nRUN true\n"),
        ),
    )
    .await;
    assert_eq!(failure["reason"], "BASE_IMAGE_NOT_FOUND", "{failure:#}");
    assert!(
        failure["message"].as_str().unwrap().contains(&missing),
        "the image is named: {failure:#}"
    );
}

/// Issue 12: an unreachable registry (connection refused) was
/// `PUSH_DENIED`, at once. Pushes are retried with backoff: a registry that
/// comes (back) up meanwhile takes the push, and one that stays away is
/// `REGISTRY_UNREACHABLE`.
#[tokio::test]
async fn issue_12_an_unreachable_registry_is_retried_then_registry_unreachable() {
    // Nothing listens on the port at first.
    let port = free_port();
    let t = TestServer::start_with(|c| c.registry = format!("127.0.0.1:{port}")).await;
    let build_id = t
        .create_build(&hello_request(&unique_name("comes-back")))
        .await;
    let started = std::time::Instant::now();
    while !t.log_text(&build_id).await.contains("retrying in") {
        assert!(
            started.elapsed() < LIMIT,
            "no retry: {}",
            t.log_text(&build_id).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let registry = TestRegistry::start_on(RegistryMode::Open, port).await;
    let record = t.wait_succeeded(&build_id, LIMIT).await;
    assert!(record["imageRefs"][0]
        .as_str()
        .unwrap()
        .starts_with(&registry.addr));
    drop(registry);

    // A registry that stays away: retried, then its own reason.
    let gone = TestServer::start_with(|c| c.registry = format!("127.0.0.1:{}", free_port())).await;
    let build_id = gone
        .create_build(&hello_request(&unique_name("stays-away")))
        .await;
    let record = gone.wait_finished(&build_id, LIMIT).await;
    let log = gone.log_text(&build_id).await;
    assert_eq!(
        record["failure"]["reason"], "REGISTRY_UNREACHABLE",
        "{record:#}\n{log}"
    );
    assert_eq!(log.matches("retrying in").count(), 3, "{log}");
    assert!(log.contains("build failed (REGISTRY_UNREACHABLE)"), "{log}");
}

/// Issue 12: a build whose context does not fit on the server's disk
/// fails `DISK_FULL` (the server's limit, not the build's fault), and
/// nothing else does: the store keeps working, the space comes back, and
/// the next build succeeds. Both ways a disk fills are covered: a context
/// bigger than the free space (stopped by the budget free space sets) and
/// one of many small files that fill the disk before their bytes add up
/// (a real ENOSPC, which the sandboxed plugin sees only as an I/O error).
#[tokio::test]
async fn issue_12_a_context_that_fills_the_disk_fails_that_build_alone_as_disk_full() {
    let disk = SmallDisk::mount(48);
    let data = disk.path().join("data");
    let t = TestServer::start_with(|config| {
        config.data_dir = data.clone();
        config.secret_key_file = data.join("secret.key");
        config.min_free_disk_bytes = 4 << 20;
    })
    .await;
    let free_at_start = free_mib(&data);

    let dockerfile = format!("FROM {REGISTRY}/base/busybox:1\nCOPY . /c\n");
    let zeros = vec![0u8; 100 << 20];
    let big = zip_entries(&[
        ("Dockerfile", dockerfile.as_bytes(), 0o644),
        ("zeros", &zeros, 0o644),
    ]);
    let id = t
        .create_build(&json!({"name": unique_name("too-big"), "zippedCode": base64(&big)}))
        .await;
    let record = t.wait_finished(&id, LIMIT).await;
    assert_eq!(record["failure"]["reason"], "DISK_FULL", "{record:#}");
    let message = record["failure"]["message"].as_str().unwrap();
    assert!(
        message.contains("were free when the build started"),
        "{message}"
    );
    assert!(record["failure"]["hint"]
        .as_str()
        .unwrap()
        .contains("kiln admin gc"));

    let many = many_small_files_zip(&dockerfile, 15_000);
    let id = t
        .create_build(&json!({"name": unique_name("many-small"), "zippedCode": base64(&many)}))
        .await;
    let record = t.wait_finished(&id, LIMIT).await;
    assert_eq!(record["failure"]["reason"], "DISK_FULL", "{record:#}");
    let message = record["failure"]["message"].as_str().unwrap();
    assert!(
        message.contains("filled up while this build wrote its context"),
        "{message}"
    );
    let log = t.log_text(&id).await;
    assert!(
        log.contains("build failed (DISK_FULL)"),
        "the log was kept to its end: {log}"
    );

    // The space came back, and the server builds on.
    assert!(
        free_mib(&data) + 2 >= free_at_start,
        "the failed builds' files are gone"
    );
    assert_eq!(t.get("/healthz").await.status, 200);
    let after = t
        .create_build(&dockerfile_request(
            &unique_name("after-full"),
            &format!("FROM {REGISTRY}/base/busybox:1\nRUN echo fine\n"),
        ))
        .await;
    t.wait_succeeded(&after, LIMIT).await;
}
