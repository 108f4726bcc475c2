//! Issue 12: garbage collection removes what the `[retention]` rules say,
//! says first what it would remove, and never touches a live build.
//! Records age by running a collection "later" (`collect(now + N days)`),
//! on the real store, engine and data directory.

use std::time::{Duration, SystemTime};

use chrono::{TimeDelta, Utc};
use hyper::StatusCode;
use kiln_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(120);

/// The report's total for `kind`: (count, bytes).
fn total(report: &Value, kind: &str) -> (u64, u64) {
    let total = report["totals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == kind)
        .unwrap_or_else(|| panic!("no total for {kind} in {report:#}"));
    (
        total["count"].as_u64().unwrap(),
        total["bytes"].as_u64().unwrap(),
    )
}

fn totals(report: &kiln_api::GcReport) -> Value {
    serde_json::to_value(report).unwrap()
}

/// A directory whose time is two hours ago (older than a leftover's grace).
fn old_dir(path: &std::path::Path) {
    std::fs::create_dir_all(path.join("context")).unwrap();
    std::fs::write(path.join("context/file"), b"left behind").unwrap();
    let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 60 * 60);
    std::fs::File::open(path)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
}

#[tokio::test]
async fn issue_12_garbage_collection_removes_what_retention_says_and_nothing_live() {
    let t = TestServer::start_with(|config| {
        config.retention.records_per_name = 2;
        // The engine's cache is shared with the tests running beside this
        // one; tests/engine_build_cache_budget.rs prunes it, alone.
        config.retention.engine_build_cache_mib = 0;
    })
    .await;
    let data = t.data_dir.path().to_path_buf();

    // Three builds of one name (the oldest is one too many), one of another.
    let name = unique_name("kept-two");
    let mut builds = Vec::new();
    for _ in 0..3 {
        let id = t.create_build(&hello_request(&name)).await;
        t.wait_succeeded(&id, LIMIT).await;
        builds.push(id);
    }
    // A build from an uploaded context, and an upload no build uses.
    let archive = |text: &str| {
        zip_entries(&[(
            "Dockerfile",
            format!("FROM {REGISTRY}/base/busybox:1\nRUN echo {text}\n").as_bytes(),
            0o644,
        )])
    };
    let used = t.upload(archive("used")).await.json();
    let used_id = used["contextId"].as_str().unwrap().to_string();
    let from_upload = t
        .create_build(&json!({"name": unique_name("from-upload"), "contextId": used_id}))
        .await;
    t.wait_succeeded(&from_upload, LIMIT).await;
    let unused = t.upload(archive("unused")).await.json();
    let unused_id = unused["contextId"].as_str().unwrap().to_string();
    let unused_blob = data
        .join("contexts/blobs")
        .join(unused["sha256"].as_str().unwrap());
    assert!(unused_blob.is_file());
    // A keyed request leaves an answer that outlives its 24 hours.
    let keyed = t
        .post_keyed(
            "/v1/builds",
            "gc-key-1",
            serde_json::to_vec(&hello_request(&unique_name("keyed"))).unwrap(),
        )
        .await;
    assert_eq!(keyed.status, StatusCode::ACCEPTED);
    let keyed_id = keyed.json()["buildId"].as_str().unwrap().to_string();
    t.wait_succeeded(&keyed_id, LIMIT).await;

    // What crashes and old versions leave: build directories no build
    // owns, a compiled plugin no loaded plugin is, a git mirror unused for
    // 40 days.
    old_dir(&data.join("staging/stray-build"));
    old_dir(&data.join("workspaces/stray-build"));
    let stale_artifact = data.join("plugin-cache/0000-old-plugin.cwasm");
    std::fs::write(&stale_artifact, vec![0u8; 4096]).unwrap();
    let artifacts_in_use = std::fs::read_dir(data.join("plugin-cache"))
        .unwrap()
        .count()
        - 1;
    assert!(artifacts_in_use > 0, "the loaded plugins are cached");
    let mirror = data.join("git-mirrors/default/0123456789abcdef01234567.git");
    old_dir(&mirror);
    // A build context kept beside it, and what a crash left mid-move.
    let kept = kiln_server::git::kept::exports_of(&mirror);
    std::fs::create_dir_all(kept.join("0123abcd/tree/src")).unwrap();
    std::fs::write(kept.join("0123abcd/tree/src/main.rs"), vec![0u8; 1000]).unwrap();
    std::fs::File::open(&mirror)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(40 * 24 * 60 * 60))
        .unwrap();

    // The dry run says what would go and removes nothing.
    let dry = t.post_json("/v1/gc", &json!({"dryRun": true})).await;
    assert_eq!(dry.status, StatusCode::OK, "{}", dry.error_message());
    let dry = dry.json();
    t.assert_documented("GcReport", &dry).await;
    assert_eq!(dry["dryRun"], true);
    assert_eq!(total(&dry, "record").0, 1, "{dry:#}");
    assert_eq!(total(&dry, "leftover").0, 2, "{dry:#}");
    assert_eq!(total(&dry, "pluginCache"), (1, 4096), "{dry:#}");
    assert_eq!(total(&dry, "gitMirror").0, 1, "{dry:#}");
    assert_eq!(
        total(&dry, "context").0,
        0,
        "uploads are a day old first: {dry:#}"
    );
    let items = dry["items"].as_array().unwrap();
    let record_item = items.iter().find(|i| i["kind"] == "record").unwrap();
    assert_eq!(record_item["name"], builds[0].as_str());
    assert!(
        record_item["reason"]
            .as_str()
            .unwrap()
            .contains("retention.records_per_name = 2"),
        "{record_item:#}"
    );
    assert_eq!(
        t.get(&format!("/v1/builds/{}", builds[0])).await.status,
        200
    );
    assert!(
        data.join("staging/stray-build").exists() && stale_artifact.exists() && mirror.exists()
    );

    // Organizations' tokens may not collect.
    let other = t.as_token(&t.server.create_org_with_token("gc-tenant").unwrap());
    let refused = other.post_json("/v1/gc", &json!({})).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    // The real run removes exactly that, and counts it in /metrics.
    let done = t.post_json("/v1/gc", &json!({})).await.json();
    assert_eq!(done["dryRun"], false);
    assert_eq!(done["totals"], dry["totals"], "{done:#}");
    assert_eq!(
        t.get(&format!("/v1/builds/{}", builds[0])).await.status,
        404
    );
    assert_eq!(
        t.get(&format!("/v1/builds/{}/logs", builds[0]))
            .await
            .status,
        404
    );
    for kept in &builds[1..] {
        assert_eq!(t.get(&format!("/v1/builds/{kept}")).await.status, 200);
    }
    assert!(!data.join("staging/stray-build").exists());
    assert!(!data.join("workspaces/stray-build").exists());
    assert!(!stale_artifact.exists());
    assert_eq!(
        std::fs::read_dir(data.join("plugin-cache"))
            .unwrap()
            .count(),
        artifacts_in_use,
        "artifacts of loaded plugins stay"
    );
    assert!(!mirror.exists());
    assert!(!kept.exists(), "the mirror's kept contexts went with it");
    let metrics = String::from_utf8(t.get("/metrics").await.body.to_vec()).unwrap();
    for expected in [
        "kiln_gc_runs_total 1\n",
        "kiln_gc_removed_total{kind=\"record\"} 1\n",
        "kiln_gc_removed_bytes_total{kind=\"pluginCache\"} 4096\n",
    ] {
        assert!(metrics.contains(expected), "no {expected:?} in\n{metrics}");
    }

    // 100 days on: logs go (90 days), records stay; the upload no build
    // refers to goes, the one a kept build refers to stays.
    let mut slow = dockerfile_request(
        &unique_name("live"),
        &format!("FROM {REGISTRY}/base/busybox:1\nRUN sleep 15\n"),
    );
    slow["noCache"] = true.into();
    let running = t.create_build(&slow).await;
    let started = std::time::Instant::now();
    while t.build(&running).await["status"] != "BUILD_STATUS_RUNNING" {
        assert!(started.elapsed() < LIMIT, "the slow build never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let later = t
        .server
        .gc()
        .collect(false, Utc::now() + TimeDelta::days(100));
    let later = totals(&later);
    assert_eq!(total(&later, "log").0, 4, "{later:#}");
    assert_eq!(total(&later, "record").0, 0, "{later:#}");
    assert_eq!(
        total(&later, "context").0,
        2,
        "a record and its blob: {later:#}"
    );
    assert_eq!(total(&later, "idempotencyAnswer").0, 1, "{later:#}");
    assert_eq!(
        t.get(&format!("/v1/contexts/{unused_id}")).await.status,
        404
    );
    assert!(!unused_blob.exists());
    assert_eq!(t.get(&format!("/v1/contexts/{used_id}")).await.status, 200);
    let kept = t.build(&builds[2]).await;
    assert!(kept["logRemovedTime"].is_string(), "{kept:#}");
    let log = t.log(&builds[2]).await;
    assert_eq!(log.len(), 1, "one line says why: {log:?}");
    assert!(
        log[0]["line"].as_str().unwrap().contains("removed"),
        "{log:?}"
    );
    assert!(
        log[0]["seq"].as_u64().unwrap() > 1,
        "numbered after the removed lines"
    );

    // 400 days on: every finished record goes (365 days), then the upload
    // its build referred to; the build still running is untouched.
    let much_later = t
        .server
        .gc()
        .collect(false, Utc::now() + TimeDelta::days(400));
    let much_later = totals(&much_later);
    assert_eq!(total(&much_later, "record").0, 4, "{much_later:#}");
    assert_eq!(t.get(&format!("/v1/contexts/{used_id}")).await.status, 404);
    assert_eq!(
        t.get(&format!("/v1/builds/{from_upload}")).await.status,
        404
    );
    assert_eq!(
        t.build(&running).await["status"],
        "BUILD_STATUS_RUNNING",
        "the collections took longer than the build: make it slower"
    );
    let live = t.wait_succeeded(&running, LIMIT).await;
    assert!(live["logRemovedTime"].is_null(), "{live:#}");
    assert!(t.log_text(&running).await.contains("sleep 15"));
}
