//! What one Kiln server can schedule: builds per hour with 1, 4 and 16
//! engines, when the engines cost nothing.
//!
//! The engines here are **fake-fast engines**, and only this benchmark uses
//! them: in-process HTTP servers answering the Docker Engine API calls a
//! build makes (`_ping`, `info`, `system/df`, `build`, `tag`, `push`,
//! `images/…/json`, untag) at once, building and pushing nothing. The
//! server's own work per build is real: the API accepting the request (an
//! inline zip), the store, the queue and its fair turns, a seat in the
//! pool, the context source plugin (wasm) unpacking the context, the
//! builder plugin (wasm), the context streamed to the engine, the log, the
//! finished record. What this measures is the ceiling the scheduler puts on
//! a pool; a real build's seconds on its engine come on top.
//!
//! `cargo bench -p kiln-server --bench scale --profile dev`

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use kiln_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(900);
/// Builds per run.
const BUILDS: usize = 1000;
/// Slots per fake engine.
const SLOTS: usize = 4;

/// A fake-fast Docker Engine on 127.0.0.1: every answer at once. Counts
/// the builds it was asked for.
struct FakeFastEngine {
    port: u16,
    builds: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeFastEngine {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let builds = Arc::new(AtomicU64::new(0));
        let counted = builds.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let counted = counted.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |request| answer(request, counted.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeFastEngine { port, builds, task }
    }

    fn config(&self, name: &str) -> kiln_server::config::EngineConfig {
        kiln_server::config::EngineConfig {
            host: format!("tcp://127.0.0.1:{}", self.port),
            ..kiln_server::config::EngineConfig::single("", SLOTS)
        }
        .named(name)
    }
}

impl Drop for FakeFastEngine {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The fake engine's answer to one Docker Engine API call.
async fn answer(
    request: Request<hyper::body::Incoming>,
    builds: Arc<AtomicU64>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().clone();
    // `/v1.47/build` → `/build`.
    let path = request.uri().path().to_string();
    let path = match path.strip_prefix("/v1.") {
        Some(rest) => rest.split_once('/').map_or("/", |(_, p)| p).to_string(),
        None => path.trim_start_matches('/').to_string(),
    };
    let json_answer = |value: Value| {
        Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(value.to_string())))
            .unwrap()
    };
    let lines = |values: &[Value]| {
        let mut body = String::new();
        for value in values {
            body.push_str(&value.to_string());
            body.push('\n');
        }
        Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    let digest = |n: u64| format!("sha256:{n:064x}");
    let response = match (method.as_str(), path.as_str()) {
        (_, "_ping") => Response::new(Full::new(Bytes::from_static(b"OK"))),
        ("GET", "info") => json_answer(json!({
            "OSType": "linux", "Architecture": "x86_64", "NCPU": 64,
            "MemTotal": 256u64 << 30, "ServerVersion": "fake-fast",
        })),
        ("GET", "version") => json_answer(json!({"Version": "fake-fast", "ApiVersion": "1.41"})),
        ("GET", "system/df") => json_answer(json!({"LayersSize": 0, "BuildCache": []})),
        ("POST", "build") => {
            // The context is streamed to the engine as to a real one: read
            // it all.
            let _ = request.into_body().collect().await;
            let n = builds.fetch_add(1, Ordering::Relaxed) + 1;
            lines(&[
                json!({"stream": "Step 1/1 : FROM scratch\n"}),
                json!({"aux": {"ID": digest(n)}}),
            ])
        }
        // No BuildKit session here: the build goes on without one.
        (_, "session") => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::new()))
            .unwrap(),
        ("POST", p) if p.ends_with("/tag") => Response::builder()
            .status(StatusCode::CREATED)
            .body(Full::new(Bytes::new()))
            .unwrap(),
        ("POST", p) if p.ends_with("/push") => {
            let tag = request
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("tag=")))
                .unwrap_or("latest")
                .to_string();
            let n = builds.load(Ordering::Relaxed);
            lines(&[
                json!({"status": "The push refers to repository [fake]"}),
                json!({"status": format!("{tag}: digest: {} size: 527", digest(n))}),
            ])
        }
        ("GET", p) if p.ends_with("/json") && p.starts_with("images/") => json_answer(json!({
            "Id": digest(1), "Size": 1_000_000,
            "RootFS": {"Type": "layers", "Layers": [digest(2), digest(3)]},
        })),
        ("DELETE", p) if p.starts_with("images/") => json_answer(json!([{"Untagged": p}])),
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from(format!(
                "{{\"message\": \"the fake-fast engine does not answer {method} {path}\"}}"
            ))))
            .unwrap(),
    };
    Ok(response)
}

/// Builds per hour for [`BUILDS`] builds on `engines` fake-fast engines,
/// and how evenly they were spread.
async fn run(engines: usize) -> (f64, u64, u64) {
    let mut fakes = Vec::new();
    for _ in 0..engines {
        fakes.push(FakeFastEngine::start().await);
    }
    let configs: Vec<_> = fakes
        .iter()
        .enumerate()
        .map(|(i, fake)| fake.config(&format!("fake-fast-{i}")))
        .collect();
    let t = TestServer::start_with(move |config| {
        config.engines = configs;
        config.sign_images = false;
        config.max_running_builds_per_org = 100_000;
        config.max_queued_builds_per_org = 100_000;
    })
    .await;
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..BUILDS {
        let request = dockerfile_request(
            &unique_name(&format!("scale-{i}")),
            "FROM scratch\nCOPY Dockerfile /\n",
        );
        ids.push(t.create_build(&request).await);
    }
    for id in &ids {
        t.wait_succeeded(id, LIMIT).await;
    }
    let hours = started.elapsed().as_secs_f64() / 3600.0;
    let counts: Vec<u64> = fakes
        .iter()
        .map(|f| f.builds.load(Ordering::Relaxed))
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), BUILDS as u64, "{counts:?}");
    (
        BUILDS as f64 / hours,
        *counts.iter().min().unwrap(),
        *counts.iter().max().unwrap(),
    )
}

#[tokio::main]
async fn main() {
    println!(
        "\n| fake-fast engines ({SLOTS} slots each) | builds/hour one server schedules | builds per engine (min–max) |"
    );
    println!("|---|---|---|");
    for engines in [1, 4, 16] {
        let (per_hour, least, most) = run(engines).await;
        println!("| {engines} | {per_hour:.0} | {least}–{most} |");
    }
}
