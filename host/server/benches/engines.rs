//! A pool of engines against one, on this machine's real engines (the
//! local `dockerd` and the second one `KILN_ENGINES=1 scripts/setup.sh`
//! starts on tcp://127.0.0.1:2376 with mutual TLS), printed as tables:
//!
//! * throughput: a batch of 20 small builds (each its own image, uncached:
//!   a one-second step and a few megabytes hashed) with one engine and
//!   with two, two slots each;
//! * cache: a 10-step image built cold, rebuilt on the engine that built
//!   it, and rebuilt on an engine that never saw it (the registry cache);
//! * platforms: one image for linux/amd64, for linux/arm64 (QEMU), and
//!   for both at once (one build, an index), uncached.
//!
//! Both engines share this machine's two cores and disk: the second engine
//! adds slots, not hardware, so the figure is a floor for a second machine.
//!
//! `cargo bench -p kiln-server --bench engines`

use std::time::{Duration, Instant};

use kiln_tests::engines::*;
use kiln_tests::*;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(600);
const BATCH: usize = 20;

fn small_build(name: &str) -> Value {
    let mut request = dockerfile_request(
        name,
        &format!(
            "FROM {REGISTRY}/base/busybox:1\nRUN sleep 1 && head -c 4000000 /dev/urandom | md5sum > /sum && echo {name}\n"
        ),
    );
    request["noCache"] = true.into();
    request
}

/// Builds per minute for the batch on `engines`; and how many ran where.
async fn batch(engines: Vec<kiln_server::config::EngineConfig>) -> (f64, String) {
    let t = TestServer::start_with(|config| config.engines = engines).await;
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..BATCH {
        ids.push(
            t.create_build(&small_build(&unique_name(&format!("batch-{i}"))))
                .await,
        );
    }
    let mut spread = std::collections::BTreeMap::<String, usize>::new();
    for id in &ids {
        let record = t.wait_succeeded(id, LIMIT).await;
        *spread
            .entry(record["engine"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let spread = spread
        .iter()
        .map(|(engine, count)| format!("{engine} {count}"))
        .collect::<Vec<_>>()
        .join(", ");
    (BATCH as f64 / minutes, spread)
}

fn ten_steps(name: &str) -> Value {
    let mut dockerfile = format!("FROM {REGISTRY}/base/busybox:1\n");
    for step in 1..=10 {
        dockerfile.push_str(&format!(
            "RUN sleep 0.3 && head -c 2000000 /dev/urandom > /step-{step} && echo {name} {step}\n"
        ));
    }
    dockerfile_request(name, &dockerfile)
}

/// (seconds, cached steps of total, engine) of one build.
async fn timed(t: &TestServer, request: &Value) -> (f64, String, String) {
    let id = t.create_build(request).await;
    let record = t.wait_succeeded(&id, LIMIT).await;
    let metrics = &record["metrics"];
    (
        metrics["durationMs"].as_f64().unwrap() / 1000.0,
        format!("{} of {}", metrics["cachedSteps"], metrics["totalSteps"]),
        record["engine"].as_str().unwrap_or("?").to_string(),
    )
}

/// `POST /v1/engines/{engine}:{verb}` (drain or resume).
async fn drain(t: &TestServer, engine: &str, verb: &str) {
    let answer = t
        .post_json(&format!("/v1/engines/{engine}:{verb}"), &Value::Null)
        .await;
    assert_eq!(answer.status, 200);
}

#[tokio::main]
async fn main() {
    let (one, one_spread) = batch(vec![local_engine("local", 2)]).await;
    let (two, two_spread) = batch(vec![
        local_engine("local", 2),
        tls_engine("second", 2376, 2),
    ])
    .await;
    println!("\n| {BATCH} small builds | builds/minute | ran on |");
    println!("|---|---|---|");
    println!("| one engine (2 slots) | {one:.1} | {one_spread} |");
    println!("| two engines (2 slots each) | {two:.1} | {two_spread} |");
    println!("| two / one | {:.2}× | |", two / one);

    let t = TestServer::start_with(|config| {
        config.engines = vec![local_engine("local", 1), tls_engine("second", 2376, 1)];
    })
    .await;
    let request = ten_steps(&unique_name("ten-steps"));
    // Built first on the second engine, which pulled its base image as a
    // real pool's engines do (this machine's own engine has the base
    // `docker import`ed by set-up, and the inline cache it exports matches
    // nowhere else).
    drain(&t, "local", "drain").await;
    let cold = timed(&t, &request).await;
    let warm = timed(&t, &request).await;
    // An engine that never built it: only the registry cache can help.
    drain(&t, "local", "resume").await;
    drain(&t, "second", "drain").await;
    let elsewhere = timed(&t, &request).await;
    println!("\n| a 10-step image | seconds | cached steps | engine |");
    println!("|---|---|---|---|");
    for (label, (secs, cached, engine)) in [
        ("cold build", cold),
        ("rebuild, the engine that built it", warm),
        ("rebuild, an engine that never built it", elsewhere),
    ] {
        println!("| {label} | {secs:.2} | {cached} | {engine} |");
    }

    // Both engines build both platforms.
    let t = TestServer::start_with(|config| {
        config.engines = vec![
            amd64_and_arm64(local_engine("local", 1)),
            amd64_and_arm64(tls_engine("second", 2376, 1)),
        ];
    })
    .await;
    let name = unique_name("platforms");
    let platform_build = |platforms: Value| {
        let mut request = dockerfile_request(
            &name,
            &format!(
                "FROM {REGISTRY}/base/busybox:multi\nRUN uname -m > /arch\nRUN i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo $i > /count\nRUN head -c 2000000 /dev/urandom | md5sum > /sum\n"
            ),
        );
        request["platforms"] = platforms;
        request["noCache"] = true.into();
        request
    };
    let amd64 = timed(&t, &platform_build(serde_json::json!(["linux/amd64"]))).await;
    let arm64 = timed(&t, &platform_build(serde_json::json!(["linux/arm64"]))).await;
    let multi = timed(
        &t,
        &platform_build(serde_json::json!(["linux/amd64", "linux/arm64"])),
    )
    .await;
    println!("\n| one image, 3 RUN steps | seconds | engine |");
    println!("|---|---|---|");
    println!("| linux/amd64 alone | {:.2} | {} |", amd64.0, amd64.2);
    println!(
        "| linux/arm64 alone (QEMU) | {:.2} | {} |",
        arm64.0, arm64.2
    );
    println!(
        "| the two single-platform builds, one after the other | {:.2} | |",
        amd64.0 + arm64.0
    );
    println!(
        "| linux/amd64 + linux/arm64, one build (index) | {:.2} | {} (first platform) |",
        multi.0, multi.2
    );
}
