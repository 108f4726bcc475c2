//! The BuildService over gRPC against the same calls over REST, on one
//! server (the real engine and registry: run `scripts/setup.sh` first),
//! printed as a table:
//!
//! * GetBuild latency, one client calling one after another (REST over
//!   HTTP/1.1 keep-alive, gRPC over one HTTP/2 connection);
//! * followed-log latency (line stored → line received) for a build that
//!   writes 200 lines, followed over REST (NDJSON) and gRPC at once;
//! * upload throughput of a 200 MB context, REST (one streamed body) and
//!   gRPC (1 MiB messages), beside writing the same bytes to a file.
//!
//! `cargo bench -p kiln-server --bench grpc`

use std::time::Instant;

use chrono::Utc;
use futures_util::StreamExt;
use kiln_server::grpc::proto;
use kiln_server::grpc::proto::build_service_client::BuildServiceClient;
use kiln_tests::*;
use serde_json::json;
use tonic::transport::Channel;

fn summary(values: Vec<f64>) -> String {
    let values = sorted(values);
    format!(
        "p50 {:.2} ms, p99 {:.2} ms ({} samples)",
        percentile(&values, 0.5),
        percentile(&values, 0.99),
        values.len()
    )
}

fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

const CALLS: usize = 3000;

async fn rest_get_build(t: &TestServer, build_id: &str) -> Vec<f64> {
    let path = format!("/v1/builds/{build_id}");
    let mut out = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        let answer = t.get(&path).await;
        assert_eq!(answer.status, 200);
        out.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    out
}

async fn grpc_get_build(
    client: &mut BuildServiceClient<Channel>,
    token: &str,
    build_id: &str,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        let build = client
            .get_build(authorized(
                proto::GetBuildRequest {
                    build_id: build_id.into(),
                },
                token,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(build.build_id, build_id);
        out.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    out
}

/// Stored → received, for the `mark-` lines written after `attached`.
fn latency(
    attached: chrono::DateTime<Utc>,
    stored: chrono::DateTime<Utc>,
    line: &str,
) -> Option<f64> {
    (stored > attached && line.contains("mark-"))
        .then(|| (Utc::now() - stored).num_microseconds().unwrap() as f64 / 1000.0)
}

async fn rest_follow(t: &TestServer, build_id: &str) -> Vec<f64> {
    let attached = Utc::now();
    let mut out = Vec::new();
    t.follow_ndjson(
        &format!("/v1/builds/{build_id}/logs?fromStart=true&follow=true"),
        |value| {
            let stored = chrono::DateTime::parse_from_rfc3339(value["time"].as_str().unwrap())
                .unwrap()
                .to_utc();
            out.extend(latency(
                attached,
                stored,
                value["line"].as_str().unwrap_or(""),
            ));
        },
    )
    .await;
    out
}

async fn grpc_follow(
    mut client: BuildServiceClient<Channel>,
    token: &str,
    build_id: &str,
) -> Vec<f64> {
    let attached = Utc::now();
    let mut lines = client
        .stream_build_logs(authorized(
            proto::StreamBuildLogsRequest {
                build_id: build_id.into(),
                from_start: true,
                after_seq: None,
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(line) = lines.next().await {
        let line = line.unwrap();
        let time = line.time.unwrap();
        let stored = chrono::DateTime::from_timestamp(time.seconds, time.nanos as u32).unwrap();
        out.extend(latency(attached, stored, &line.line));
    }
    out
}

const UPLOAD_BYTES: usize = 200_000_000;

/// A tar of a Dockerfile and `UPLOAD_BYTES` of random bytes.
fn upload_payload() -> Vec<u8> {
    use rand::RngCore;
    let mut big = vec![0u8; UPLOAD_BYTES];
    rand::rng().fill_bytes(&mut big);
    tar_entries(&[
        TarEntry::File("Dockerfile", b"FROM scratch\n", 0o644),
        TarEntry::File("big.bin", &big, 0o644),
    ])
}

fn mb_per_s(bytes: usize, secs: f64) -> String {
    format!(
        "{:.0} MB/s ({:.2} s for {} MB)",
        bytes as f64 / secs / 1e6,
        secs,
        bytes / 1_000_000
    )
}

#[tokio::main]
async fn main() {
    let t = TestServer::start().await;
    let channel = Channel::from_shared(format!("http://{}", t.server.addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = BuildServiceClient::new(channel)
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20);
    let mut rows: Vec<(String, String, String)> = Vec::new();

    let hello = t.create_build(&hello_request("bench-grpc")).await;
    t.wait_succeeded(&hello, std::time::Duration::from_secs(120))
        .await;
    // Warm both paths before measuring.
    rest_get_build(&t, &hello).await;
    grpc_get_build(&mut client, &t.token, &hello).await;
    rows.push((
        format!("GetBuild, one client, {CALLS} calls in a row"),
        summary(rest_get_build(&t, &hello).await),
        summary(grpc_get_build(&mut client, &t.token, &hello).await),
    ));

    let dockerfile = format!(
        "FROM {REGISTRY}/base/busybox:1\nRUN for i in $(seq 1 200); do echo mark-$i; sleep 0.02; done\n"
    );
    let mut request = dockerfile_request("bench-grpc-follow", &dockerfile);
    request["noCache"] = json!(true);
    let build_id = t.create_build(&request).await;
    let (rest, grpc) = tokio::join!(
        rest_follow(&t, &build_id),
        grpc_follow(client.clone(), &t.token, &build_id)
    );
    rows.push((
        "followed log, stored → received (200 lines)".into(),
        summary(rest),
        summary(grpc),
    ));

    let payload = upload_payload();
    let copy = {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        std::fs::write(dir.path().join("copy"), &payload).unwrap();
        std::fs::File::open(dir.path().join("copy"))
            .unwrap()
            .sync_all()
            .unwrap();
        started.elapsed().as_secs_f64()
    };
    let started = Instant::now();
    let answer = t.upload(payload.clone()).await;
    assert_eq!(
        answer.status,
        201,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let rest_secs = started.elapsed().as_secs_f64();
    let chunks: Vec<proto::UploadBuildContextRequest> = payload
        .chunks(1 << 20)
        .map(|chunk| proto::UploadBuildContextRequest {
            chunk: bytes::Bytes::copy_from_slice(chunk),
        })
        .collect();
    let started = Instant::now();
    let uploaded = client
        .upload_build_context(authorized(futures_util::stream::iter(chunks), &t.token))
        .await
        .unwrap()
        .into_inner();
    let grpc_secs = started.elapsed().as_secs_f64();
    assert_eq!(uploaded.size_bytes as usize, payload.len());
    rows.push((
        format!("upload, {} MB context", payload.len() / 1_000_000),
        mb_per_s(payload.len(), rest_secs),
        mb_per_s(payload.len(), grpc_secs),
    ));
    rows.push((
        "(writing the same bytes to a file, synced)".into(),
        mb_per_s(payload.len(), copy),
        String::new(),
    ));

    let width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(10);
    println!("\n| {:width$} | REST | gRPC |", "measure");
    println!("|{}|------|------|", "-".repeat(width + 2));
    for (what, rest, grpc) in rows {
        println!("| {what:width$} | {rest} | {grpc} |");
    }
}
