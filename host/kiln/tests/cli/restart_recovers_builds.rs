//! kill -9 of the host with builds RUNNING and PENDING, then a restart on the
//! same data directory: the RUNNING one is closed INTERRUPTED, the PENDING
//! ones run to completion, and no record or log line is lost.

use std::time::{Duration, Instant};

use kiln_tests::*;

#[tokio::test]
async fn a_killed_host_interrupts_running_builds_and_runs_pending_ones_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let binary = env!("CARGO_BIN_EXE_kiln");
    let mut first = KilnProcess::spawn(
        binary.as_ref(),
        dir.path(),
        &["--max-concurrent-builds", "1"],
    );

    let slow = format!(
        "FROM {REGISTRY}/base/busybox:1\nRUN for i in $(seq 1 300); do echo still-running-$i; sleep 0.1; done\n"
    );
    let mut slow_request = dockerfile_request(&unique_name("interrupted"), &slow);
    slow_request["noCache"] = true.into();
    let running = first.create_build(&slow_request).await;
    let pending: Vec<String> = {
        let mut ids = Vec::new();
        for _ in 0..2 {
            ids.push(
                first
                    .create_build(&hello_request(&unique_name("pending")))
                    .await,
            );
        }
        ids
    };

    // Wait until the running build has produced output.
    let started = Instant::now();
    let seen_before_kill = loop {
        let log = first.log(&running).await;
        if log
            .iter()
            .any(|l| l["line"].as_str().unwrap_or("").contains("still-running-3"))
        {
            break log;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the slow build never got going"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for id in &pending {
        assert_eq!(first.build(id).await["status"], "BUILD_STATUS_PENDING");
    }
    // The killed run leaves the running build's directories behind.
    let workspace = dir.path().join("workspaces").join(&running);
    let staging = dir.path().join("staging").join(&running);
    assert!(workspace.exists(), "the running build has a workspace");
    first.kill9();
    std::fs::create_dir_all(dir.path().join("staging/stray-from-a-crash")).unwrap();

    let second = KilnProcess::spawn(
        binary.as_ref(),
        dir.path(),
        &["--max-concurrent-builds", "1"],
    );
    let record = second.build(&running).await;
    assert_eq!(record["status"], "BUILD_STATUS_FAILED", "{record:#}");
    // Issue 12: the interrupted build's directories (and strays) are gone;
    // they used to stay forever.
    assert!(
        !workspace.exists(),
        "{} is left behind",
        workspace.display()
    );
    assert!(!staging.exists(), "{} is left behind", staging.display());
    assert!(!dir.path().join("staging/stray-from-a-crash").exists());
    assert_eq!(record["failure"]["reason"], "INTERRUPTED");
    assert_eq!(record["failure"]["message"], "interrupted by host restart");

    // Every line served before the kill is still there, in place.
    let after = second.log(&running).await;
    assert!(after.len() > seen_before_kill.len());
    assert_eq!(&after[..seen_before_kill.len()], &seen_before_kill[..]);
    assert!(after.last().unwrap()["line"]
        .as_str()
        .unwrap()
        .contains("host restarted"));

    for id in &pending {
        let record = second.wait_finished(id, Duration::from_secs(120)).await;
        assert_eq!(record["status"], "BUILD_STATUS_SUCCEEDED", "{record:#}");
    }
    // Numbers keep counting per name across the restart: nothing was reused.
    let list = second.get("/v1/builds?pageSize=10").await.json();
    assert_eq!(list["builds"].as_array().unwrap().len(), 3);

    // Issue 12: /metrics after the restart counts what ended in this run,
    // the build closed INTERRUPTED at start-up included; nothing was
    // created in this run.
    let metrics = second
        .request_as(None, hyper::Method::GET, "/metrics", None)
        .await;
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    for expected in [
        "kiln_builds_created_total 0",
        "kiln_builds_finished_total{status=\"BUILD_STATUS_FAILED\"} 1",
        "kiln_builds_finished_total{status=\"BUILD_STATUS_SUCCEEDED\"} 2",
        "kiln_queue_depth 0",
        "kiln_builds_running 0",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
}

/// A client retrying an accepted build or upload with its key gets the
/// first answer even after the server has become low on disk: the work
/// is already done, and a 507 would tell the client it was not.
#[tokio::test]
async fn issue_12_below_the_free_disk_floor_a_retry_with_its_key_still_gets_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    let binary: &std::path::Path = env!("CARGO_BIN_EXE_kiln").as_ref();
    let mut t = KilnProcess::spawn(binary, dir.path(), &["--min-free-disk-mib", "0"]);
    let body = serde_json::to_vec(&hello_request(&unique_name("disk-retry"))).unwrap();
    let archive = zip_entries(&[("Dockerfile", b"FROM scratch\n", 0o644)]);
    let build = t
        .post_keyed("/v1/builds", "disk-build-1", body.clone())
        .await;
    assert_eq!(
        build.status,
        hyper::StatusCode::ACCEPTED,
        "{}",
        build.error_message()
    );
    let upload = t
        .post_keyed("/v1/contexts", "disk-upload-1", archive.clone())
        .await;
    assert_eq!(
        upload.status,
        hyper::StatusCode::CREATED,
        "{}",
        upload.error_message()
    );

    t.kill9();
    // More than any disk has free.
    let t = KilnProcess::spawn(binary, dir.path(), &["--min-free-disk-mib", "999999999999"]);
    let build_again = t
        .post_keyed("/v1/builds", "disk-build-1", body.clone())
        .await;
    assert_eq!(
        build_again.status,
        hyper::StatusCode::ACCEPTED,
        "{}",
        build_again.error_message()
    );
    assert_eq!(build_again.json(), build.json());
    assert_eq!(build_again.headers["idempotent-replayed"], "true");
    let upload_again = t
        .post_keyed("/v1/contexts", "disk-upload-1", archive.clone())
        .await;
    assert_eq!(
        upload_again.status,
        hyper::StatusCode::CREATED,
        "{}",
        upload_again.error_message()
    );
    assert_eq!(upload_again.json(), upload.json());
    // A new key is new work, and is refused.
    let new_build = t.post_keyed("/v1/builds", "disk-build-2", body).await;
    assert_eq!(new_build.status, hyper::StatusCode::INSUFFICIENT_STORAGE);
    let new_upload = t.post_keyed("/v1/contexts", "disk-upload-2", archive).await;
    assert_eq!(new_upload.status, hyper::StatusCode::INSUFFICIENT_STORAGE);
}

/// Issue 14: kill -9 of the host between two attempts of a webhook
/// delivery loses nothing: the restarted host attempts it again, and the
/// receiver (verifying with the Standard Webhooks library) gets it once it
/// answers.
#[tokio::test]
async fn issue_14_a_delivery_pending_when_the_host_is_killed_is_delivered_after_restart() {
    use kiln_tests::webhooks::Receiver;
    let dir = tempfile::tempdir().unwrap();
    let binary = env!("CARGO_BIN_EXE_kiln");
    // Long enough between attempts to kill the host in between.
    let config = dir.path().join("kiln.toml");
    std::fs::write(
        &config,
        "[webhooks]\nallowed_hosts = [\"127.0.0.1\"]\nfirst_retry_ms = 4000\n",
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap()];
    let mut first = KilnProcess::spawn(binary.as_ref(), &dir.path().join("data"), &args);
    let (port, url) = Receiver::free_url();
    let answer = first
        .post_json(
            "/v1/webhooks",
            &serde_json::json!({"url": url, "events": ["build.succeeded"]}),
        )
        .await;
    assert_eq!(
        answer.status,
        hyper::StatusCode::CREATED,
        "{}",
        answer.error_message()
    );
    let webhook = answer.json();
    let webhook_id = webhook["webhookId"].as_str().unwrap().to_string();
    let receiver = Receiver::start(port, webhook["secret"].as_str().unwrap(), 1);
    let build_id = first
        .create_build(&hello_request(&unique_name("killed-hook")))
        .await;
    let record = first
        .wait_succeeded(&build_id, Duration::from_secs(120))
        .await;
    // The first attempt was answered 500; the next is 4 s away.
    let deliveries_path = format!("/v1/webhooks/{webhook_id}/deliveries");
    let started = Instant::now();
    loop {
        let deliveries = first.get(&deliveries_path).await.json()["deliveries"].clone();
        if deliveries[0]["attempts"] == 1 {
            assert_eq!(deliveries[0]["status"], "pending", "{deliveries:#}");
            assert_eq!(deliveries[0]["lastAttempt"]["responseCode"], 500);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{deliveries:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill9();
    assert!(receiver.received().is_empty());

    let second = KilnProcess::spawn(binary.as_ref(), &dir.path().join("data"), &args);
    let got = receiver.wait_for(1).await;
    assert!(got[0].get("error").is_none(), "{got:#?}");
    assert_eq!(got[0]["event"]["data"]["digest"], record["digest"]);
    let started = Instant::now();
    let deliveries = loop {
        let deliveries = second.get(&deliveries_path).await.json()["deliveries"].clone();
        if deliveries[0]["status"] == "succeeded" {
            break deliveries;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{deliveries:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(deliveries.as_array().unwrap().len(), 1, "{deliveries:#}");
    assert_eq!(deliveries[0]["attempts"], 2, "{deliveries:#}");
    assert_eq!(got[0]["id"], deliveries[0]["deliveryId"]);
}
