//! Kiln's reliability suite: this build's `kiln serve`, as its own process,
//! against the real Docker Engine and registry, under load and faults. Each
//! section prints a table; the run exits non-zero when a property fails
//! (an error, a log line lost or repeated, descriptors or memory not back,
//! a build left unfinished or wrongly classified).
//!
//! ```text
//! cargo bench -p kiln --bench reliability                           # the full suite
//! cargo bench -p kiln --bench reliability --profile dev -- --short  # CI's short version
//! cargo bench -p kiln --bench reliability -- --only load,kill9      # some sections
//! cargo bench -p kiln --bench reliability -- --kiln PATH            # another kiln binary
//! ```
//!
//! Sections:
//! - `load`: bursts of concurrent CreateBuild calls, each build followed by
//!   many log streams at once (NDJSON and SSE); accept latency, errors,
//!   lines lost or repeated against the stored log, RSS and descriptors.
//! - `kill9`: the host killed (SIGKILL) with builds running and queued,
//!   then restarted on the same data directory.
//! - `registry`: the registry stopped in the middle of a push and started
//!   again: the push is retried and the build succeeds.
//! - `engine`: no Docker Engine at the configured address: builds fail with
//!   `ENGINE_ERROR`, quickly, and the server keeps answering.
//!
//! Needs what `scripts/setup.sh` starts (engine, registry on
//! 127.0.0.1:5000, base images).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use kiln_tests::*;
use serde_json::{json, Value};

/// How big a run is.
#[derive(Clone, Copy)]
struct Scale {
    creates: usize,
    followers: usize,
    bursts: usize,
    log_lines: usize,
    kill9_builds: usize,
}

const FULL: Scale = Scale {
    creates: 200,
    followers: 500,
    bursts: 3,
    log_lines: 50,
    kill9_builds: 10,
};

const SHORT: Scale = Scale {
    creates: 40,
    followers: 100,
    bursts: 2,
    log_lines: 20,
    kill9_builds: 4,
};

const LIMIT: Duration = Duration::from_secs(600);

/// What one section found: table rows to print and properties that failed.
#[derive(Default)]
struct Report {
    rows: Vec<(String, String)>,
    problems: Vec<String>,
}

impl Report {
    fn row(&mut self, what: impl Into<String>, value: impl std::fmt::Display) {
        self.rows.push((what.into(), value.to_string()));
    }

    fn require(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.problems.push(problem());
        }
    }

    fn print(&self, title: &str) {
        println!("\n### {title}\n");
        println!("| measure | value |");
        println!("|---|---|");
        for (what, value) in &self.rows {
            println!("| {what} | {value} |");
        }
        for problem in &self.problems {
            println!("\nFAILED: {problem}");
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut scale = FULL;
    let mut only: Option<Vec<String>> = None;
    let mut kiln = PathBuf::from(env!("CARGO_BIN_EXE_kiln"));
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--short" => scale = SHORT,
            "--only" => {
                only = Some(
                    args.next()
                        .expect("--only needs a list")
                        .split(',')
                        .map(str::to_string)
                        .collect(),
                )
            }
            "--kiln" => kiln = PathBuf::from(args.next().expect("--kiln needs a path")),
            // `cargo bench` passes `--bench`.
            "--bench" => {}
            other => panic!(
                "unknown argument {other:?} (see the doc at the top of benches/reliability.rs)"
            ),
        }
    }
    let wanted = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|s| s == name));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "Kiln reliability suite: {} ({} creates x {} bursts, {} followers per burst)",
        kiln.display(),
        scale.creates,
        scale.bursts,
        scale.followers
    );
    let mut failed = 0;
    let sections: [(&str, &str); 5] = [
        ("load", "load: concurrent creates and log followers"),
        ("kill9", "kill -9 with builds in flight, then restart"),
        ("registry", "registry stopped mid-push, then back"),
        ("engine", "Docker Engine unreachable"),
        ("disk", "ENOSPC: a 48 MiB tmpfs data directory fills up"),
    ];
    for (name, title) in sections {
        if !wanted(name) {
            continue;
        }
        let report = runtime.block_on(async {
            match name {
                "load" => load(&kiln, scale).await,
                "kill9" => kill9(&kiln, scale).await,
                "registry" => registry_outage(&kiln).await,
                "engine" => engine_unreachable(&kiln).await,
                _ => disk_fills_up(&kiln).await,
            }
        });
        report.print(title);
        failed += report.problems.len();
    }
    if failed > 0 {
        eprintln!(
            "\n{failed} propert{} failed",
            if failed == 1 { "y" } else { "ies" }
        );
        std::process::exit(1);
    }
    println!("\nevery property held");
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Open descriptors of a process.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// A Dockerfile whose one RUN step prints `lines` numbered lines.
fn printing_dockerfile(marker: &str, lines: usize, sleep: &str) -> String {
    format!(
        "FROM {REGISTRY}/base/busybox:1\nRUN for i in $(seq 1 {lines}); do echo {marker}-$i; {sleep} done\n"
    )
}

/// The seq numbers a follower received: NDJSON records or SSE `log`
/// events (whose `id` is the seq).
fn received_seqs(body: &[u8], sse: bool) -> Vec<u64> {
    let text = String::from_utf8_lossy(body);
    if sse {
        let mut seqs = Vec::new();
        for event in text.split("\n\n") {
            let is_log = event.lines().any(|l| l == "event: log");
            let id = event
                .lines()
                .find_map(|l| l.strip_prefix("id: "))
                .and_then(|v| v.trim().parse().ok());
            if let (true, Some(id)) = (is_log, id) {
                seqs.push(id);
            }
        }
        seqs
    } else {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["seq"].as_u64())
            .collect()
    }
}

async fn load(kiln: &Path, scale: Scale) -> Report {
    let mut report = Report::default();
    let dir = tempfile::tempdir().unwrap();
    let server = KilnProcess::spawn(kiln, dir.path(), &["--max-concurrent-builds", "4"]);
    let pid = server.pid();
    // Warm up: the base image, pooled connections, runtime threads.
    let warm = server
        .create_build(&dockerfile_request(
            "load-warm",
            &printing_dockerfile("warm", 3, ""),
        ))
        .await;
    server.wait_finished(&warm, LIMIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_baseline = rss_kib(pid);
    let fds_baseline = fds(pid);
    report.row("server RSS after warm-up", mib(rss_baseline));
    report.row("server descriptors after warm-up", fds_baseline);

    let mut rss_after_bursts = Vec::new();
    for burst in 1..=scale.bursts {
        let peak = Arc::new(AtomicU64::new(0));
        let sampling = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        // The bodies are made first: only the calls are timed.
        let bodies: Vec<Vec<u8>> = (0..scale.creates)
            .map(|i| {
                let mut request = dockerfile_request(
                    &format!("load-{burst}-{i}"),
                    &printing_dockerfile(&format!("b{burst}n{i}"), scale.log_lines, ""),
                );
                request["noCache"] = true.into();
                serde_json::to_vec(&request).unwrap()
            })
            .collect();
        // A client of this burst's own: its pooled keep-alive connections
        // close with it, so the server's descriptors can be counted after.
        let client = Arc::new(Api::new(server.server_url(), &server.token));
        let started = Instant::now();
        let creates = bodies.into_iter().map(|body| {
            let server = client.clone();
            tokio::spawn(async move {
                let sent = Instant::now();
                let answer = server
                    .request_with(
                        Method::POST,
                        "/v1/builds",
                        &[
                            ("authorization", format!("Bearer {}", server.token)),
                            ("content-type", "application/json".into()),
                        ],
                        body,
                    )
                    .await;
                (sent.elapsed(), answer)
            })
        });
        let mut latencies = Vec::new();
        let mut ids = Vec::new();
        let mut errors = Vec::new();
        for create in futures_util::future::join_all(creates).await {
            let (latency, answer) = create.unwrap();
            latencies.push(latency);
            if answer.status == StatusCode::ACCEPTED {
                ids.push(answer.json()["buildId"].as_str().unwrap().to_string());
            } else {
                errors.push(format!("{} {}", answer.status, answer.error_message()));
            }
        }
        let accepted_in = started.elapsed();
        latencies.sort();

        // Followers: round-robin over the builds, half NDJSON, half SSE,
        // each from the start and until its build ends.
        let followers = (0..scale.followers.min(ids.len() * 100)).map(|i| {
            let server = client.clone();
            let id = ids[i % ids.len()].clone();
            let sse = i % 2 == 1;
            tokio::spawn(async move {
                let mut headers = vec![("authorization", format!("Bearer {}", server.token))];
                if sse {
                    headers.push(("accept", "text/event-stream".into()));
                }
                let answer = server
                    .request_with(
                        Method::GET,
                        &format!("/v1/builds/{id}/logs?fromStart=true&follow=true"),
                        &headers,
                        Vec::new(),
                    )
                    .await;
                (id, sse, answer.status, received_seqs(&answer.body, sse))
            })
        });
        let followed = tokio::time::timeout(LIMIT, futures_util::future::join_all(followers))
            .await
            .expect("every followed build ends");
        let build_time = started.elapsed();

        // Every follower against the stored log of its build.
        let mut stored: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
        for id in &ids {
            let record = server.wait_finished(id, LIMIT).await;
            *statuses
                .entry(record["status"].as_str().unwrap_or("?").to_string())
                .or_default() += 1;
            let seqs = server
                .log(id)
                .await
                .iter()
                .filter_map(|l| l["seq"].as_u64())
                .collect();
            stored.insert(id.clone(), seqs);
        }
        let (mut lines_expected, mut lost, mut repeated, mut stream_errors) = (0, 0, 0, 0);
        for follower in followed {
            let (id, sse, status, seqs) = follower.unwrap();
            if status != StatusCode::OK {
                stream_errors += 1;
                continue;
            }
            let expected = &stored[&id];
            lines_expected += expected.len();
            let got: HashSet<u64> = seqs.iter().copied().collect();
            repeated += seqs.len() - got.len();
            let missing = expected.iter().filter(|s| !got.contains(s)).count();
            if missing > 0 && lost == 0 {
                errors.push(format!(
                    "a {} follower of {id} missed {missing} of {} lines",
                    if sse { "SSE" } else { "NDJSON" },
                    expected.len()
                ));
            }
            lost += missing;
        }
        sampling.abort();
        drop(client);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss_after = rss_kib(pid);
        let fds_after = fds(pid);
        rss_after_bursts.push(rss_after);

        let succeeded = statuses.get("BUILD_STATUS_SUCCEEDED").copied().unwrap_or(0);
        report.row(
            format!("burst {burst}: creates accepted"),
            format!("{} of {} in {}", ids.len(), scale.creates, ms(accepted_in)),
        );
        report.row(
            format!("burst {burst}: accept latency p50 / p99 / max"),
            format!(
                "{} / {} / {}",
                ms(percentile(&latencies, 50.0)),
                ms(percentile(&latencies, 99.0)),
                ms(*latencies.last().unwrap_or(&Duration::ZERO))
            ),
        );
        report.row(
            format!("burst {burst}: builds succeeded"),
            format!(
                "{succeeded} of {} ({} to the last end)",
                ids.len(),
                ms(build_time)
            ),
        );
        report.row(
            format!("burst {burst}: followers (NDJSON + SSE)"),
            format!(
                "{}, {lines_expected} lines due, {lost} lost, {repeated} repeated, {stream_errors} refused",
                scale.followers.min(ids.len() * 100)
            ),
        );
        report.row(
            format!("burst {burst}: server RSS peak / after"),
            format!("{} / {}", mib(peak.load(Ordering::Relaxed)), mib(rss_after)),
        );
        report.row(format!("burst {burst}: descriptors after"), fds_after);

        report.require(errors.is_empty(), || {
            format!(
                "burst {burst}: {} errors, first: {}",
                errors.len(),
                errors[0]
            )
        });
        report.require(succeeded == ids.len(), || {
            format!("burst {burst}: builds ended {statuses:?}")
        });
        report.require(lost == 0 && repeated == 0 && stream_errors == 0, || {
            format!("burst {burst}: {lost} lines lost, {repeated} repeated, {stream_errors} streams refused")
        });
        // Pooled connections to the engine may stay open: a little slack.
        report.require(fds_after <= fds_baseline + 8, || {
            format!("burst {burst}: descriptors {fds_baseline} -> {fds_after}")
        });
    }
    // Memory is flat across bursts: later bursts end where the first did
    // (the first one grows caches and pools once).
    if let (Some(first), Some(last)) = (rss_after_bursts.first(), rss_after_bursts.last()) {
        report.row(
            "RSS after the first / last burst",
            format!("{} / {}", mib(*first), mib(*last)),
        );
        report.require(*last <= first + 16 * 1024, || {
            format!(
                "RSS grew from {} after the first burst to {} after the last",
                mib(*first),
                mib(*last)
            )
        });
    }
    report
}

/// `SUCCEEDED`, or `FAILED REASON`: how a build ended.
fn outcome(record: &Value) -> String {
    let status = record["status"].as_str().unwrap_or("?");
    let status = status.trim_start_matches("BUILD_STATUS_");
    match record["failure"]["reason"].as_str() {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    }
}

/// A build's stored log as (seq, line) pairs.
async fn numbered_lines(api: &Api, build_id: &str) -> Vec<(u64, String)> {
    api.log(build_id)
        .await
        .iter()
        .map(|l| {
            (
                l["seq"].as_u64().unwrap_or(0),
                l["line"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

async fn kill9(kiln: &Path, scale: Scale) -> Report {
    let mut report = Report::default();
    let dir = tempfile::tempdir().unwrap();
    let mut first = KilnProcess::spawn(kiln, dir.path(), &["--max-concurrent-builds", "2"]);
    let mut ids = Vec::new();
    for i in 0..scale.kill9_builds {
        let mut request = dockerfile_request(
            &format!("kill9-{i}"),
            &printing_dockerfile(&format!("k{i}"), 40, "sleep 0.1;"),
        );
        request["noCache"] = true.into();
        ids.push(first.create_build(&request).await);
    }
    // Kill once two builds are RUNNING and have printed something.
    let started = Instant::now();
    let running: Vec<String> = loop {
        let mut running = Vec::new();
        for id in &ids {
            if first.build(id).await["status"] == "BUILD_STATUS_RUNNING"
                && first.log(id).await.len() > 5
            {
                running.push(id.clone());
            }
        }
        if running.len() == 2 || started.elapsed() > Duration::from_secs(120) {
            break running;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut before: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    for id in &ids {
        before.insert(id.clone(), numbered_lines(&first, id).await);
    }
    first.kill9();
    let killed_at = Instant::now();
    let second = KilnProcess::spawn(kiln, dir.path(), &["--max-concurrent-builds", "2"]);
    let restart = killed_at.elapsed();

    let (mut interrupted, mut succeeded, mut other, mut kept, mut lost) = (0, 0, 0, 0, 0);
    for id in &ids {
        let record = second.wait_finished(id, LIMIT).await;
        let after = numbered_lines(&second, id).await;
        for line in &before[id] {
            if after.contains(line) {
                kept += 1;
            } else {
                lost += 1;
            }
        }
        let was_running = running.contains(id);
        match (
            record["status"].as_str(),
            record["failure"]["reason"].as_str(),
        ) {
            (Some("BUILD_STATUS_FAILED"), Some("INTERRUPTED")) if was_running => interrupted += 1,
            (Some("BUILD_STATUS_SUCCEEDED"), _) if !was_running => succeeded += 1,
            _ => {
                other += 1;
                report.problems.push(format!(
                    "build {id} (running at the kill: {was_running}) ended {} {}",
                    record["status"], record["failure"]
                ));
            }
        }
    }
    let leftovers: usize = ["staging", "workspaces"]
        .iter()
        .map(|d| {
            std::fs::read_dir(dir.path().join(d))
                .map(|e| e.count())
                .unwrap_or(0)
        })
        .sum();
    report.row(
        "builds in flight (running + queued)",
        format!("{} ({} running)", ids.len(), running.len()),
    );
    report.row("restart: kill to listening", ms(restart));
    report.row(
        "running ones closed INTERRUPTED",
        format!("{interrupted} of {}", running.len()),
    );
    report.row(
        "queued ones built after restart",
        format!("{succeeded} of {}", ids.len() - running.len()),
    );
    report.row(
        "log lines stored before the kill: kept / lost",
        format!("{kept} / {lost}"),
    );
    report.row("staging and workspace directories left", leftovers);
    report.require(running.len() == 2, || {
        format!("only {} builds were running at the kill", running.len())
    });
    report.require(lost == 0, || format!("{lost} log lines lost over the kill"));
    report.require(other == 0, || format!("{other} builds ended otherwise"));
    report.require(leftovers == 0, || {
        format!("{leftovers} directories left behind")
    });
    report
}

async fn registry_outage(kiln: &Path) -> Report {
    let mut report = Report::default();
    let registry = TestRegistry::start(RegistryMode::Open).await;
    let port: u16 = registry.addr.rsplit(':').next().unwrap().parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = KilnProcess::spawn(kiln, dir.path(), &["--registry", &registry.addr]);
    // A layer big enough that its push takes a while.
    let dockerfile =
        format!("FROM {REGISTRY}/base/busybox:1\nRUN head -c 150000000 /dev/urandom > /blob\n");
    let mut request = dockerfile_request("outage", &dockerfile);
    request["noCache"] = true.into();
    let id = server.create_build(&request).await;
    let started = Instant::now();
    while !server.log_text(&id).await.contains("pushing ") {
        if started.elapsed() > LIMIT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Stop it mid-push, and bring it back (new storage: the push starts over).
    drop(registry);
    let down = Duration::from_millis(1500);
    tokio::time::sleep(down).await;
    let _back = TestRegistry::start_on(RegistryMode::Open, port).await;
    let record = server.wait_finished(&id, LIMIT).await;
    let log = server.log_text(&id).await;
    // Either the engine retries the layer upload, or Kiln the whole push.
    let engine_retries = log.matches("the engine retries it").count();
    let kiln_retries = log.matches("; retrying in").count();
    let retries = engine_retries + kiln_retries;
    report.row("registry down for", ms(down));
    report.row(
        "retries in the log: the engine's (layer) / Kiln's (push)",
        format!("{engine_retries} / {kiln_retries}"),
    );
    report.row("build", outcome(&record));
    report.row("build took", ms(started.elapsed()));
    report.require(record["status"] == "BUILD_STATUS_SUCCEEDED", || {
        format!(
            "the build did not survive the outage: {}",
            record["failure"]
        )
    });
    report.require(retries >= 1, || {
        "the push was not retried (did it end before the stop?)".into()
    });
    report
}

async fn engine_unreachable(kiln: &Path) -> Report {
    let mut report = Report::default();
    let dir = tempfile::tempdir().unwrap();
    // A socket file nothing listens on (connections are refused), as a
    // stopped dockerd leaves it. (No socket file at all: `kiln serve`
    // refuses to start, saying so.)
    let socket = dir.path().join("dead-docker.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let server = KilnProcess::spawn(
        kiln,
        &dir.path().join("data"),
        &["--docker-host", &format!("unix://{}", socket.display())],
    );
    let started = Instant::now();
    let id = server
        .create_build(&dockerfile_request(
            "no-engine",
            &printing_dockerfile("e", 1, ""),
        ))
        .await;
    let record = server.wait_finished(&id, LIMIT).await;
    let took = started.elapsed();
    let health = server
        .request_with(Method::GET, "/healthz", &[], Vec::new())
        .await;
    report.row("build", outcome(&record));
    report.row(
        "message",
        record["failure"]["message"].as_str().unwrap_or(""),
    );
    report.row("failed after", ms(took));
    report.row("server still answers /healthz", health.status);
    report.require(record["failure"]["reason"] == "ENGINE_ERROR", || {
        format!("not ENGINE_ERROR: {}", record["failure"])
    });
    report.require(health.status == StatusCode::OK, || {
        "the server stopped answering".into()
    });
    let message = record["failure"]["message"].as_str().unwrap_or("");
    report.require(message.contains(&socket.display().to_string()), || {
        format!("the message does not say which engine did not answer: {message}")
    });
    report
}

async fn disk_fills_up(kiln: &Path) -> Report {
    let mut report = Report::default();
    let disk = SmallDisk::mount(48);
    let data = disk.path().join("data");
    let server = KilnProcess::spawn(kiln, &data, &["--min-free-disk-mib", "4"]);
    let free = || free_mib(&data);
    let free_before = free();
    // A build that writes on beside the one that fills the disk.
    let mut beside = dockerfile_request(
        "beside-the-full-one",
        &printing_dockerfile("d", 100, "sleep 0.1;"),
    );
    beside["noCache"] = true.into();
    let beside = server.create_build(&beside).await;
    // It is running (writing its log) before the disk fills.
    let started = Instant::now();
    while server.build(&beside).await["status"] != "BUILD_STATUS_RUNNING"
        && started.elapsed() < LIMIT
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dockerfile = format!("FROM {REGISTRY}/base/busybox:1\nCOPY . /c\n");
    let started = Instant::now();
    let filler = server
        .create_build(&json!({
            "name": "fills-the-disk",
            "zippedCode": base64(&many_small_files_zip(&dockerfile, 15_000)),
        }))
        .await;
    let filled = server.wait_finished(&filler, LIMIT).await;
    let took = started.elapsed();
    let beside = server.wait_finished(&beside, LIMIT).await;
    let after = server
        .create_build(&dockerfile_request(
            "after-the-disk-filled",
            &printing_dockerfile("a", 1, ""),
        ))
        .await;
    let after = server.wait_finished(&after, LIMIT).await;
    let health = server
        .request_with(Method::GET, "/healthz", &[], Vec::new())
        .await;
    let free_after = free();
    report.row("the build that filled the disk", outcome(&filled));
    report.row(
        "message",
        filled["failure"]["message"].as_str().unwrap_or(""),
    );
    report.row("failed after", ms(took));
    report.row("the build running beside it", outcome(&beside));
    report.row("the next build", outcome(&after));
    report.row(
        "free MiB before / after",
        format!("{free_before} / {free_after}"),
    );
    report.row("server still answers /healthz", health.status);
    report.require(filled["failure"]["reason"] == "DISK_FULL", || {
        format!("not DISK_FULL: {}", filled["failure"])
    });
    let beside_lines = numbered_lines(&server, beside["buildId"].as_str().unwrap_or(""))
        .await
        .iter()
        .filter(|(_, line)| {
            line.split_whitespace()
                .last()
                .is_some_and(|word| word.starts_with("d-"))
        })
        .count();
    report.row("its log lines kept", format!("{beside_lines} / 100"));
    report.require(after["status"] == "BUILD_STATUS_SUCCEEDED", || {
        format!("the next build did not succeed: {after}")
    });
    report.require(
        beside["status"] == "BUILD_STATUS_SUCCEEDED" && beside_lines == 100,
        || {
            format!(
                "the build beside the full one suffered: {}, {beside_lines} lines",
                outcome(&beside)
            )
        },
    );
    report.require(free_after + 2 >= free_before, || {
        format!(
            "{free_before} MiB were free before, {free_after} after: the failed build left files"
        )
    });
    report.require(health.status == StatusCode::OK, || {
        "the server stopped answering".into()
    });
    report
}
