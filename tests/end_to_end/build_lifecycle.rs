//! Cancelling and timing out builds stops the engine work for real.

use std::time::{Duration, Instant};

use hyper::Method;
use kiln_tests::*;

/// Processes on this machine whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(marker) {
            found.push(format!(
                "{}: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    found
}

/// A RUN step that sleeps in a shell whose command line carries `marker`
/// (the trailing `echo` keeps busybox's shell from exec'ing `sleep`).
fn sleeper(marker: &str) -> String {
    format!(
        "FROM {REGISTRY}/base/busybox:1\nRUN echo {marker} && sleep 300 && echo {marker}-done\n"
    )
}

async fn wait_for_process(marker: &str) {
    let started = Instant::now();
    while processes_with(marker).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the RUN step never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn assert_gone_within(marker: &str, limit: Duration) {
    let started = Instant::now();
    loop {
        let left = processes_with(marker);
        if left.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "still running after {limit:?}: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn cancelling_a_running_build_stops_its_step_within_two_seconds() {
    let t = TestServer::start().await;
    let marker = unique_name("cancel-marker");
    let mut request = dockerfile_request(&unique_name("cancelled"), &sleeper(&marker));
    request["noCache"] = true.into();
    let containers_before = containers_with(&marker).await;
    let build_id = t.create_build(&request).await;
    wait_for_process(&marker).await;

    let answer = t
        .post_json(
            &format!("/v1/builds/{build_id}:cancel"),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_gone_within(&marker, Duration::from_secs(2)).await;
    let record = t.wait_finished(&build_id, Duration::from_secs(10)).await;
    assert_eq!(record["status"], "BUILD_STATUS_CANCELLED", "{record:#}");
    assert!(t.log_text(&build_id).await.contains("build cancelled"));
    assert_eq!(
        containers_with(&marker).await,
        containers_before,
        "the daemon keeps no container"
    );

    // A finished build cannot be cancelled again.
    let again = t
        .post_json(
            &format!("/v1/builds/{build_id}:cancel"),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(again.status, 409);
    assert!(
        again.error_message().contains("already finished"),
        "{}",
        again.error_message()
    );
}

#[tokio::test]
async fn a_cancelled_pending_build_never_starts() {
    let t = TestServer::start_with(|c| c.max_concurrent_builds = 1).await;
    let marker = unique_name("blocker-marker");
    let mut blocker = dockerfile_request(&unique_name("blocker"), &sleeper(&marker));
    blocker["noCache"] = true.into();
    let blocker_id = t.create_build(&blocker).await;
    let queued_id = t.create_build(&hello_request(&unique_name("queued"))).await;
    let uploaded = t
        .upload(tar_entries(&[TarEntry::File(
            "Dockerfile",
            format!("FROM {REGISTRY}/base/busybox:1\n").as_bytes(),
            0o644,
        )]))
        .await
        .json();
    let queued_upload_id = t
        .create_build(&serde_json::json!({
            "name": unique_name("queued-upload"),
            "contextId": uploaded["contextId"],
        }))
        .await;
    wait_for_process(&marker).await;
    assert_eq!(t.build(&queued_id).await["status"], "BUILD_STATUS_PENDING");
    // Issue 12 (accept latency): a queued build's inline zip waits in the
    // store, not as files; an upload is linked under staging/ at once.
    let staging = |id: &str| t.data_dir.path().join("staging").join(id);
    let store = t.server.store();
    assert!(store.inline_zip(&queued_id).unwrap().is_some());
    assert!(!staging(&queued_id).exists());
    assert!(staging(&queued_upload_id).join("context.tar").exists());

    let answer = t
        .request_as(
            Some(&t.token),
            Method::POST,
            &format!("/v1/builds/{queued_id}:cancel"),
            None,
        )
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["status"], "BUILD_STATUS_CANCELLED");
    let answer = t
        .post_json(
            &format!("/v1/builds/{queued_upload_id}:cancel"),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(answer.json()["status"], "BUILD_STATUS_CANCELLED");

    // Free the worker; the cancelled builds must not run after it.
    t.post_json(
        &format!("/v1/builds/{blocker_id}:cancel"),
        &serde_json::json!({}),
    )
    .await;
    t.wait_finished(&blocker_id, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let record = t.build(&queued_id).await;
    assert_eq!(record["status"], "BUILD_STATUS_CANCELLED");
    assert!(
        record.get("startTime").is_none(),
        "it never started: {record:#}"
    );
    assert!(t.log(&queued_id).await.is_empty());
    // What was kept for them goes when a worker passes them over (the
    // staged upload used to wait an hour for GC).
    for id in [&queued_id, &queued_upload_id] {
        assert_eq!(t.build(id).await["status"], "BUILD_STATUS_CANCELLED");
        assert!(store.inline_zip(id).unwrap().is_none(), "{id}");
        assert!(
            !staging(id).exists(),
            "{} is left behind",
            staging(id).display()
        );
    }
}

#[tokio::test]
async fn a_build_past_its_timeout_fails_and_its_step_is_stopped() {
    let t = TestServer::start().await;
    let marker = unique_name("timeout-marker");
    let mut request = dockerfile_request(&unique_name("timeout"), &sleeper(&marker));
    request["noCache"] = true.into();
    request["timeoutSecs"] = 3.into();
    let build_id = t.create_build(&request).await;
    wait_for_process(&marker).await;
    let record = t.wait_finished(&build_id, Duration::from_secs(30)).await;
    assert_eq!(record["status"], "BUILD_STATUS_FAILED", "{record:#}");
    assert_eq!(record["failure"]["reason"], "TIMEOUT");
    assert!(record["failure"]["message"]
        .as_str()
        .unwrap()
        .contains("3 s"));
    assert_gone_within(&marker, Duration::from_secs(2)).await;
}
