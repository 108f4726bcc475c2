//! The build service's speed, measured against the real engine and
//! registry (run `scripts/setup.sh` first), printed as a table:
//!
//! * GetBuild requests per second (16 concurrent keep-alive clients);
//! * ListBuilds first-page latency over 100,000 records, unfiltered and
//!   filtered by status and by name (indexes, not scans);
//! * accept → RUNNING latency with an idle worker (the record's own times);
//! * follower fan-out latency (line stored → line received) for 1, 50 and
//!   200 followers of one build.
//!
//! Upload throughput against a plain copy is the reliability suite's
//! `speed` section (`cargo bench -p kiln --bench reliability -- --only speed`).
//!
//! `cargo bench -p kiln-server --bench service`

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use kiln_tests::*;
use serde_json::json;

struct Row(String, String);

async fn get_build_rate(t: &TestServer, build_id: &str) -> Row {
    let clients = 16;
    let per_client = 1500;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let api = t.as_token(&t.token);
        let path = format!("/v1/builds/{build_id}");
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_client {
                let answer = api.get(&path).await;
                assert_eq!(answer.status, 200);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let rate = (clients * per_client) as f64 / started.elapsed().as_secs_f64();
    Row(
        "GetBuild, 16 concurrent clients".into(),
        format!("{rate:.0} requests/s ({} requests)", clients * per_client),
    )
}

async fn accept_to_running(t: &TestServer) -> Row {
    let mut latencies = Vec::new();
    for _ in 0..10 {
        let build_id = t.create_build(&hello_request("bench-accept")).await;
        let record = t.wait_finished(&build_id, Duration::from_secs(120)).await;
        assert_eq!(record["status"], "BUILD_STATUS_SUCCEEDED");
        let created =
            chrono::DateTime::parse_from_rfc3339(record["createTime"].as_str().unwrap()).unwrap();
        let started =
            chrono::DateTime::parse_from_rfc3339(record["startTime"].as_str().unwrap()).unwrap();
        latencies.push((started - created).num_microseconds().unwrap() as f64 / 1000.0);
    }
    let latencies = sorted(latencies);
    Row(
        "accept → RUNNING, idle worker (10 builds)".into(),
        format!(
            "median {:.2} ms, max {:.2} ms",
            percentile(&latencies, 0.5),
            latencies[latencies.len() - 1]
        ),
    )
}

async fn fan_out(t: &Arc<TestServer>, followers: usize) -> Row {
    let dockerfile = format!(
        "FROM {REGISTRY}/base/busybox:1\nRUN for i in $(seq 1 200); do echo fan-$i; sleep 0.02; done\n"
    );
    let mut request = dockerfile_request("bench-fanout", &dockerfile);
    request["noCache"] = json!(true);
    let build_id = t.create_build(&request).await;
    let mut tasks = Vec::new();
    for _ in 0..followers {
        let t = t.clone();
        let path = format!("/v1/builds/{build_id}/logs?fromStart=true&follow=true");
        tasks.push(tokio::spawn(
            async move { follow_latencies(&t, &path).await },
        ));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let latencies = sorted(latencies);
    Row(
        format!("log fan-out, {followers} followers"),
        format!(
            "p50 {:.1} ms, p99 {:.1} ms (stored → received, {} lines)",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies.len()
        ),
    )
}

/// Follow a log; for each line written after the follower attached, the
/// time from the line's stored timestamp to its arrival here.
async fn follow_latencies(t: &TestServer, path: &str) -> Vec<f64> {
    let attached = Utc::now();
    let mut out = Vec::new();
    t.follow_ndjson(path, |value| {
        let now = Utc::now();
        let time = chrono::DateTime::parse_from_rfc3339(value["time"].as_str().unwrap()).unwrap();
        if time > attached && value["line"].as_str().unwrap_or("").contains("fan-") {
            out.push((now - time.with_timezone(&Utc)).num_microseconds().unwrap() as f64 / 1000.0);
        }
    })
    .await;
    out
}

#[tokio::main]
async fn main() {
    let mut rows = Vec::new();

    let records = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let fill = fill_finished_builds(dir.path(), records);
    let started = Instant::now();
    let big = TestServer::start_with(|c| {
        c.data_dir = dir.path().to_path_buf();
    })
    .await;
    let startup = started.elapsed();
    rows.push(Row(
        format!("start-up over {records} records (recovery scan)"),
        format!(
            "{:.0} ms (filling them took {:.1} s)",
            startup.as_secs_f64() * 1000.0,
            fill.as_secs_f64()
        ),
    ));
    for (what, query) in [
        ("ListBuilds first page, 100k records", ""),
        ("… filtered by status=FAILED", "&status=BUILD_STATUS_FAILED"),
        ("… filtered by name", "&name=app-7"),
    ] {
        let (p50, p99) = list_page_latencies(&big, query).await;
        rows.push(Row(
            what.into(),
            format!("p50 {p50:.2} ms, p99 {p99:.2} ms (pageSize 50)"),
        ));
    }
    rows.push(get_build_rate(&big, "bench-050000").await);
    drop(big);

    let t = Arc::new(TestServer::start().await);
    rows.push(accept_to_running(&t).await);
    for followers in [1, 50, 200] {
        rows.push(fan_out(&t, followers).await);
    }

    let width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(10);
    println!("\n| {:width$} | result |", "measure");
    println!("|{}|--------|", "-".repeat(width + 2));
    for Row(what, result) in rows {
        println!("| {what:width$} | {result} |");
    }
}
