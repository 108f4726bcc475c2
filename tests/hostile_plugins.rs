//! Plugins that misbehave fail only their own build, within their limits,
//! and the host keeps building. The plugins are real components built from
//! `fixtures/plugins/` by this crate's build script.

use std::time::{Duration, Instant};

use kiln_tests::*;

async fn server_with_fixtures() -> TestServer {
    TestServer::start_with(|config| config.plugin_dirs = vec![fixture_plugin_dir()]).await
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
