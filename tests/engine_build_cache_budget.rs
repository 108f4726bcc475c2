//! Issue 12: garbage collection keeps the Docker Engine's build cache
//! under `retention.engine_build_cache_mib`, least recently used first,
//! and a dry run says how much is over without pruning. A binary of its
//! own: it prunes the cache the other tests' rebuilds hit.

use std::time::Duration;

use kiln_server::engine::DockerEngine;
use kiln_tests::*;
use serde_json::json;

/// An image built with BuildKit and kept in the engine: its cache records
/// are shared with it, and no prune frees them. Removed when dropped.
struct KeptImage(String);

impl KeptImage {
    fn build() -> Self {
        let tag = format!("kiln-test/shared-cache:{}", unique_name("kept"));
        let mut build = std::process::Command::new("/usr/bin/docker")
            .args(["build", "-q", "-t", &tag, "-"])
            .env("DOCKER_BUILDKIT", "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("the docker CLI runs");
        let dockerfile = format!(
            "FROM {REGISTRY}/base/busybox:1\nRUN head -c 6000000 /dev/urandom > /kept && echo {tag}\n"
        );
        use std::io::Write as _;
        build
            .stdin
            .take()
            .unwrap()
            .write_all(dockerfile.as_bytes())
            .unwrap();
        assert!(build.wait().unwrap().success(), "docker build {tag}");
        KeptImage(tag)
    }
}

impl Drop for KeptImage {
    fn drop(&mut self) {
        let _ = std::process::Command::new("/usr/bin/docker")
            .args(["rmi", "-f", &self.0])
            .output();
    }
}

#[tokio::test]
async fn issue_12_gc_keeps_the_engines_build_cache_under_its_budget() {
    let engine = DockerEngine::connect("").unwrap();
    // Regression (CI): 6 MB of cache shared with a kept image. BuildKit's
    // prune neither counts nor frees it; a budget that counted it was
    // "over" with nothing a prune could free.
    let _kept = KeptImage::build();
    // At least 8 MB of cache, whatever the engine held before.
    let filler = TestServer::start().await;
    let mut request = dockerfile_request(
        &unique_name("cache-filler"),
        &format!(
            "FROM {REGISTRY}/base/busybox:1\nRUN head -c 8000000 /dev/urandom > /filler && echo {}\n",
            unique_name("m")
        ),
    );
    request["noCache"] = true.into();
    let id = filler.create_build(&request).await;
    filler.wait_succeeded(&id, Duration::from_secs(120)).await;
    let before = engine.build_cache_usage().await.unwrap();
    assert!(before.bytes >= 8_000_000, "{before:?}");
    assert!(before.shared_bytes >= 6_000_000, "{before:?}");

    // A budget 4 MiB under what the cache holds: only the least recently
    // used few MiB go (a whole engine's cache takes minutes to prune, and
    // other tests' rebuilds count on theirs).
    let budget_mib = (before.bytes >> 20) - 4;
    let t =
        TestServer::start_with(|config| config.retention.engine_build_cache_mib = budget_mib).await;
    let dry = t.post_json("/v1/gc", &json!({"dryRun": true})).await.json();
    let over = dry["totals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "engineBuildCache")
        .unwrap()["bytes"]
        .as_u64()
        .unwrap();
    assert_eq!(
        over,
        before.bytes - (budget_mib << 20),
        "what is over the budget: {dry:#}"
    );
    let after_dry = engine.build_cache_usage().await.unwrap();
    assert_eq!(after_dry.bytes, before.bytes, "a dry run pruned");

    let done = t.post_json("/v1/gc", &json!({})).await.json();
    let item = done["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "engineBuildCache")
        .unwrap_or_else(|| panic!("nothing pruned: {done:#}"))
        .clone();
    assert!(item["bytes"].as_u64().unwrap() > 0, "{item:#}");
    assert!(item["reason"]
        .as_str()
        .unwrap()
        .contains("engine_build_cache_mib"));
    let after = engine.build_cache_usage().await.unwrap();
    assert!(
        after.bytes <= budget_mib << 20,
        "{after:?} after pruning to {budget_mib} MiB"
    );
    assert!(
        before.bytes - after.bytes >= 4 << 20,
        "{before:?} -> {after:?}"
    );
    let metrics = String::from_utf8(t.get("/metrics").await.body.to_vec()).unwrap();
    assert!(
        !metrics.contains("kiln_gc_removed_bytes_total{kind=\"engineBuildCache\"} 0\n"),
        "{metrics}"
    );
}
