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
//! cargo bench -p kiln --bench reliability -- --only load --bursts 6 # memory over more bursts
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
//! - `disk`: the data directory on a small tmpfs fills up mid-build.
//! - `upload`: UploadBuildContext of incompressible bytes against a plain
//!   loopback copy of the same bytes into a file, both on a tmpfs; beside
//!   them the same copy hashing on a second thread (the best a receiver
//!   that makes the content id does here) and SHA-256 alone (the floor).
//!   Printed, not asserted.
//! - `speed`: side by side in one run, Kiln against doing it by hand: the
//!   hello build (warm and no-cache) and a build of 20,000 one-byte files
//!   (no-cache; 2,000 in `--short`; both sides' files on a tmpfs) through
//!   the API against `docker build` + `docker push` of the same directory
//!   on the same engine, with where Kiln's time goes; Kiln signs nothing
//!   there, as `docker` does not (signing's cost is the `trust` bench's).
//!   Printed, not asserted: speed is a benchmark's business, not a pass/fail
//!   test's.
//!
//! Needs what `scripts/setup.sh` starts (engine, registry on
//! 127.0.0.1:5000, base images).
//!
//! To profile the bursts of creates alone, give `load` a `perf` control
//! FIFO: it writes `enable` before each burst's creates and `disable` once
//! they are answered.
//!
//! ```text
//! mkfifo /tmp/ctl /tmp/ack
//! perf record -a -g -D -1 --control fifo:/tmp/ctl,/tmp/ack -o burst.data &
//! KILN_BENCH_PERF_CONTROL=/tmp/ctl target/release/deps/reliability-* --only load
//! ```

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
    upload_mib: usize,
    speed_runs: usize,
    /// One-byte files in the many-files build of the speed section.
    tiny_files: usize,
}

const FULL: Scale = Scale {
    creates: 200,
    followers: 500,
    bursts: 3,
    log_lines: 50,
    kill9_builds: 10,
    upload_mib: 256,
    speed_runs: 7,
    tiny_files: 20_000,
};

const SHORT: Scale = Scale {
    creates: 40,
    followers: 100,
    bursts: 2,
    log_lines: 20,
    kill9_builds: 4,
    upload_mib: 64,
    speed_runs: 3,
    tiny_files: 2_000,
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
            "--bursts" => {
                scale.bursts = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--bursts needs a number")
            }
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
    let sections: [(&str, &str); 7] = [
        ("load", "load: concurrent creates and log followers"),
        ("kill9", "kill -9 with builds in flight, then restart"),
        ("registry", "registry stopped mid-push, then back"),
        ("engine", "Docker Engine unreachable"),
        ("disk", "ENOSPC: a 48 MiB tmpfs data directory fills up"),
        (
            "upload",
            "upload: POST /v1/contexts beside a plain loopback copy",
        ),
        ("speed", "speed: Kiln beside the same work done by hand"),
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
                "disk" => disk_fills_up(&kiln).await,
                "upload" => upload(&kiln, scale).await,
                _ => speed(&kiln, scale).await,
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
/// The server's open descriptors, in two kinds.
#[derive(Clone, Copy)]
struct Descriptors {
    /// What the server must give back: connections accepted on the API's
    /// port (and its listener), files, pipes, timers.
    own: usize,
    /// Sockets it opened itself: pooled connections to the engine and the
    /// registry, kept for reuse and as many as builds last ran at once.
    pooled: usize,
}

impl std::fmt::Display for Descriptors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} own + {} pooled", self.own, self.pooled)
    }
}

/// `pid`'s descriptors; sockets whose local port is `api_port` (read from
/// its `/proc/<pid>/net/tcp*`) are the API's.
fn fds(pid: u32, api_port: u16) -> Descriptors {
    let mut api_sockets = HashSet::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|local| local.rsplit(':').next())
                .and_then(|port| u16::from_str_radix(port, 16).ok());
            if let (Some(port), Some(inode)) = (local_port, fields.get(9)) {
                if port == api_port {
                    api_sockets.insert(format!("socket:[{inode}]"));
                }
            }
        }
    }
    let mut counted = Descriptors { own: 0, pooled: 0 };
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        let target = target.to_string_lossy();
        if target.starts_with("socket:") && !api_sockets.contains(target.as_ref()) {
            counted.pooled += 1;
        } else {
            counted.own += 1;
        }
    }
    counted
}

fn api_port(server: &KilnProcess) -> u16 {
    server
        .server_url()
        .rsplit(':')
        .next()
        .and_then(|port| port.trim_end_matches('/').parse().ok())
        .expect("the server's URL ends in its port")
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
    let port = api_port(&server);
    let fds_baseline = fds(pid, port);
    report.row("server RSS after warm-up", mib(rss_baseline));
    report.row("server descriptors after warm-up", fds_baseline);

    let mut rss_after_bursts = Vec::new();
    // What the server has stored (sled's files): its in-memory page table
    // grows with it (heaptrack), so RSS growth is read beside it.
    let mut store_after_bursts = Vec::new();
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
        perf_control("enable");
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
        perf_control("disable");
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
        let (mut created, mut started) = (Vec::new(), Vec::new());
        for id in &ids {
            let record = server.wait_finished(id, LIMIT).await;
            created.extend(utc(&record["createTime"]));
            started.extend(utc(&record["startTime"]));
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
        let rss_after = settled_rss(pid).await;
        let fds_after = fds(pid, port);
        rss_after_bursts.push(rss_after);
        let store_bytes = kiln_tests::kiln_server::gc::dir_size(&dir.path().join("db"));
        store_after_bursts.push(store_bytes);

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
        // Workers give way while creates are answered: the first build
        // should start once the last create is stored, not among them.
        if let (Some(first), Some(last), Some(start)) = (
            created.iter().min(),
            created.iter().max(),
            started.iter().min(),
        ) {
            report.row(
                format!("burst {burst}: creates stored within / first build started at"),
                format!(
                    "{} / {}",
                    ms(since(*first, *last)),
                    ms(since(*first, *start))
                ),
            );
        }
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
            format!("burst {burst}: server RSS peak / after (store on disk)"),
            format!(
                "{} / {} ({})",
                mib(peak.load(Ordering::Relaxed)),
                mib(rss_after),
                mib(store_bytes / 1024)
            ),
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
        // Every connection the burst's clients made is closed, every file
        // shut; the bench's own client may hold a connection or two more
        // than at warm-up. Connections out (engine, registry) stay pooled
        // for reuse: a few per build that ran at once (measured +4 to +6
        // with 4 starting together), never growing burst to burst.
        report.require(
            fds_after.own <= fds_baseline.own + 2 && fds_after.pooled <= fds_baseline.pooled + 12,
            || format!("burst {burst}: descriptors {fds_baseline} -> {fds_after}"),
        );
    }
    // Memory is flat across bursts: later bursts end where the first did
    // (the first one grows caches and pools once).
    if let (Some(first), Some(last)) = (rss_after_bursts.first(), rss_after_bursts.last()) {
        report.row(
            "RSS after the first / last burst",
            format!("{} / {}", mib(*first), mib(*last)),
        );
        let later_bursts = rss_after_bursts.len().saturating_sub(1).max(1) as f64;
        let store_growth = match (store_after_bursts.first(), store_after_bursts.last()) {
            (Some(first), Some(last)) => last.saturating_sub(*first),
            _ => 0,
        };
        report.row(
            "growth per burst after the first: RSS / store on disk",
            format!(
                "{:+.1} MiB / {:+.1} MiB",
                (*last as f64 - *first as f64) / 1024.0 / later_bursts,
                store_growth as f64 / (1 << 20) as f64 / later_bursts
            ),
        );
        // The first two bursts still fill caches and pools (measured: a
        // step of ~10 MiB from the first to the second, then a few MiB
        // over six more); the trend from the second on is the growth.
        if let Some(slope) = least_squares_slope(&rss_after_bursts[1..]) {
            report.row(
                "RSS trend per burst from the second on (least squares)",
                format!("{:+.2} MiB", slope / 1024.0),
            );
        }
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

/// The slope of `values` against their index (None for fewer than 3).
fn least_squares_slope(values: &[u64]) -> Option<f64> {
    if values.len() < 3 {
        return None;
    }
    let n = values.len() as f64;
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let (mut covariance, mut variance) = (0.0, 0.0);
    for (x, &y) in values.iter().enumerate() {
        let dx = x as f64 - mean_x;
        covariance += dx * (y as f64 - mean_y);
        variance += dx * dx;
    }
    Some(covariance / variance)
}

/// `pid`'s resident size (KiB) once it has stopped falling: the server
/// trims its heap once it has been quiet for a second, and a sample taken
/// before that counts memory on its way back (waits at most 10 s more).
async fn settled_rss(pid: u32) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = rss_kib(pid);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = rss_kib(pid);
        if last.saturating_sub(now) < 256 || Instant::now() >= deadline {
            return now;
        }
        last = now;
    }
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

/// Median of some durations.
fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    percentile(&values, 50.0)
}

/// `a / b` as a ratio, two decimals.
fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64().max(1e-9))
}

/// A server that signs and attests nothing: the side-by-side rows compare
/// Kiln with `docker build` + `docker push`, which do neither. What
/// signing, provenance and the SBOM add to a build is measured on its own
/// (`cargo bench -p kiln-server --bench trust`).
fn unsigned_server(kiln: &Path, data: &Path) -> KilnProcess {
    std::fs::create_dir_all(data).unwrap();
    let config = data.join("unsigned.toml");
    std::fs::write(&config, "[signing]\nenabled = false\n").unwrap();
    KilnProcess::spawn(kiln, data, &["--config", config.to_str().unwrap()])
}

async fn speed(kiln: &Path, scale: Scale) -> Report {
    let mut report = Report::default();
    let dir = tempfile::tempdir().unwrap();
    let server = unsigned_server(kiln, dir.path());
    let hello = workspace().join("examples/hello");
    let side = SideBySide {
        label: "hello (signing off)".into(),
        name: "speed-hello",
        dir: &hello,
        cases: &[(false, "≤ 1.00×"), (true, "≤ 1.05×")],
        runs: scale.speed_runs,
    };
    beside_docker(&server, side, &mut report).await;
    drop(server);
    // The unpack issue's (#18) whole build: many tiny files, no cache.
    // Kiln's data directory and the by-hand context are both on a tmpfs:
    // on this VM's disk (ext4 without a journal) a new file's inode is
    // found by scanning past every inode deleted in the last ~30 s (perf:
    // `recently_deleted`, `find_inode_bit`, ~70 % of `unzip`'s time), so
    // by hand alone swung from 4.7 to 27 s with the disk's recent past, and
    // that is what would be measured. The engine's own storage stays where
    // it is, for both.
    let disk = SmallDisk::mount(1536);
    let server = unsigned_server(kiln, &disk.path().join("data"));
    let tiny = tiny_files_context(disk.path(), scale.tiny_files);
    let side = SideBySide {
        label: format!("{} one-byte files (tmpfs, signing off)", scale.tiny_files),
        name: "speed-tiny-files",
        dir: tiny.path(),
        cases: &[(true, "≤ 1.20×")],
        runs: scale.speed_runs,
    };
    beside_docker(&server, side, &mut report).await;
    report
}

/// Tell a `perf record --control fifo:...` (KILN_BENCH_PERF_CONTROL) to
/// `command` (`enable`, `disable`), when one is listening.
fn perf_control(command: &str) {
    if let Some(fifo) = std::env::var_os("KILN_BENCH_PERF_CONTROL") {
        if let Err(e) = std::fs::write(&fifo, format!("{command}\n")) {
            eprintln!("cannot write {command} to {fifo:?}: {e}");
        }
    }
}

/// UploadBuildContext beside a plain loopback copy of the same bytes.
async fn upload(kiln: &Path, scale: Scale) -> Report {
    let mut report = Report::default();
    // Both uploads land in memory (a tmpfs): this virtual disk's write-back
    // speed swings by 2× from run to run and would be all that was
    // measured. Room for every run's blob plus the floor.
    let runs = scale.speed_runs as u32;
    let disk = SmallDisk::mount(scale.upload_mib as u32 * (runs + 2) + 512);
    let server = KilnProcess::spawn(kiln, &disk.path().join("data"), &[]);
    upload_beside_a_copy(&server, disk.path(), scale, &mut report).await;
    report
}

/// Bytes no compressor or deduplication can shortcut (xorshift).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// UploadBuildContext against the same bytes sent over a loopback socket
/// into a file by the simplest receiver there is.
async fn upload_beside_a_copy(server: &KilnProcess, dir: &Path, scale: Scale, report: &mut Report) {
    let payload = noise(scale.upload_mib << 20, 7);
    let archive = tar_entries(&[TarEntry::File("blob.bin", &payload, 0o644)]);
    drop(payload);
    let megabytes = archive.len() as f64 / 1e6;
    let (mut kiln_times, mut copy_times, mut hash_times) = (Vec::new(), Vec::new(), Vec::new());
    let mut hashing_copy_times = Vec::new();
    let mut copy_cpu = Vec::new();
    for run in 0..scale.speed_runs {
        // A different last byte makes each upload new content (a repeat
        // is deduplicated by its hash and would not be written).
        let mut body = archive.clone();
        body.extend_from_slice(&[0u8; 1024]);
        let last = body.len() - 1;
        body[last] = run as u8 + 1;
        let started = Instant::now();
        let answer = server.upload(body).await;
        kiln_times.push(started.elapsed());
        report.require(answer.status == StatusCode::CREATED, || {
            format!("upload {run}: {} {}", answer.status, answer.error_message())
        });

        // The baseline: blocking reads into one 1 MiB buffer, each written
        // straight to the file; nothing here is slowed by how this bench
        // was compiled (dev profile in CI). Then the same copy that also
        // hashes what it receives, on a thread of its own: what the
        // simplest receiver that makes a content id reaches on this
        // machine, with nothing of HTTP.
        for (hashing, times) in [(false, &mut copy_times), (true, &mut hashing_copy_times)] {
            let copy = dir.join(format!("copy-{run}"));
            let (payload, sink) = (archive.clone(), copy.clone());
            let (took, cpu) =
                tokio::task::spawn_blocking(move || loopback_copy(&payload, &sink, hashing))
                    .await
                    .unwrap();
            times.push(took);
            if !hashing {
                copy_cpu.push(cpu);
            }
            let _ = std::fs::remove_file(&copy);
        }

        // What no upload can beat on this machine: the content id, SHA-256
        // of the same bytes already in memory, on one core.
        let payload = archive.clone();
        let took = tokio::task::spawn_blocking(move || {
            use sha2::Digest;
            let started = Instant::now();
            std::hint::black_box(sha2::Sha256::digest(&payload));
            started.elapsed()
        })
        .await
        .unwrap();
        hash_times.push(took);
    }
    // The copy's own speed swings by 3x from run to run on a shared
    // machine; the best run of each shows what the code can do, the median
    // what to expect.
    let best = |times: &[Duration]| times.iter().min().copied().unwrap_or_default();
    let (kiln_best, copy_best) = (best(&kiln_times), best(&copy_times));
    let hash_best = best(&hash_times);
    let kiln = median(kiln_times);
    let copy = median(copy_times);
    let rate = |d: Duration| format!("{:.0} MB/s", megabytes / d.as_secs_f64());
    report.row(
        format!(
            "upload {megabytes:.0} MB, median of {}: Kiln (POST /v1/contexts) / plain loopback copy",
            scale.speed_runs
        ),
        format!("{} / {} = {}", rate(kiln), rate(copy), ratio(copy, kiln)),
    );
    report.row(
        "upload, best run of each (goal: Kiln ≥ 0.80× the copy)",
        format!(
            "{} / {} = {}",
            rate(kiln_best),
            rate(copy_best),
            ratio(copy_best, kiln_best)
        ),
    );
    report.row(
        "upload's ceiling: the plain copy also hashing, on a second thread, best run",
        format!(
            "{} = {} the copy's best",
            rate(best(&hashing_copy_times)),
            ratio(copy_best, best(&hashing_copy_times))
        ),
    );
    report.row(
        "upload's floor: SHA-256 alone (the content id), same bytes in memory, one core, best run",
        format!(
            "{} = {} the copy's best",
            rate(hash_best),
            ratio(copy_best, hash_best)
        ),
    );
    // The best any receiver that hashes could do here: the copy's own CPU
    // time plus the hashing's, spread over every core, but never faster
    // than the hashing alone (one core, in order). Below 0.80× the goal
    // cannot be met on this machine, however the upload is written.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let bound = ((best(&copy_cpu) + hash_best) / cores).max(hash_best);
    report.row(
        format!("upload's bound on {cores} cores: (the copy's CPU + SHA-256's) / cores, at least SHA-256's"),
        format!(
            "{} = {} the copy's best",
            rate(bound),
            ratio(copy_best, bound)
        ),
    );
    // Every upload hashes all its bytes on one core: how near Kiln comes
    // to that is what its receiving and writing (on the other core, with
    // this client) cost.
    report.row(
        "upload's best run against its floor (Kiln / SHA-256 alone)",
        ratio(hash_best, kiln_best),
    );
    report.row(
        "upload's best run against its ceiling (Kiln / the copy also hashing)",
        ratio(best(&hashing_copy_times), kiln_best),
    );
}

/// Send `payload` over a loopback socket to a receiver that writes it to
/// `sink` with blocking reads and writes of up to 1 MiB; with `hashing`,
/// each buffer then goes to a thread that SHA-256es it (buffers come back
/// for reuse, so neither side allocates). How long until the receiver is
/// done, and the CPU time its threads used (sender, receiver, hasher).
fn loopback_copy(payload: &[u8], sink: &Path, hashing: bool) -> (Duration, Duration) {
    use std::io::{Read, Write};
    use std::sync::mpsc::sync_channel;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let sink = sink.to_path_buf();
    let receiver = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut file = std::fs::File::create(&sink).unwrap();
        let (to_hasher, chunks) = sync_channel::<(Vec<u8>, usize)>(4);
        let (give_back, returned) = sync_channel::<Vec<u8>>(4);
        let hasher = hashing.then(|| {
            std::thread::spawn(move || {
                use sha2::Digest;
                let mut hash = sha2::Sha256::new();
                for (buffer, n) in chunks {
                    hash.update(&buffer[..n]);
                    let _ = give_back.send(buffer);
                }
                std::hint::black_box(hash.finalize());
                thread_cpu()
            })
        });
        let mut spare = (0..4).map(|_| vec![0u8; 1 << 20]).collect::<Vec<_>>();
        loop {
            let mut buffer = spare.pop().unwrap_or_else(|| returned.recv().unwrap());
            let n = socket.read(&mut buffer).unwrap();
            if n == 0 {
                break;
            }
            file.write_all(&buffer[..n]).unwrap();
            match hashing {
                true => to_hasher.send((buffer, n)).unwrap(),
                false => spare.push(buffer),
            }
        }
        drop(to_hasher);
        let hashed = hasher.map_or(Duration::ZERO, |hasher| hasher.join().unwrap());
        thread_cpu() + hashed
    });
    let started = Instant::now();
    let sender_before = thread_cpu();
    let mut socket = std::net::TcpStream::connect(address).unwrap();
    socket.write_all(payload).unwrap();
    socket.shutdown(std::net::Shutdown::Write).unwrap();
    let sent = thread_cpu().saturating_sub(sender_before);
    let received = receiver.join().unwrap();
    (started.elapsed(), sent + received)
}

/// The CPU time the calling thread has used (Linux's schedstat: nanoseconds
/// on a CPU first); zero where it cannot be read.
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|line| line.split_whitespace().next()?.parse().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

/// Where one Kiln build's time went, from its stored log's timestamps.
#[derive(Default)]
struct Phases {
    /// POST sent → 202.
    accept: Duration,
    /// Accepted (createTime) → the worker's first log line.
    queue: Duration,
    /// First line → the builder's line: the context made ready.
    context: Duration,
    /// The builder's line → `pushing`: the engine builds.
    engine: Duration,
    /// `pushing` → `build succeeded`: push, inspect, untag, clean up.
    push: Duration,
    /// `build succeeded` → the client's follow stream ended.
    tail: Duration,
}

/// An RFC 3339 time from the API.
fn utc(value: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    let time = chrono::DateTime::parse_from_rfc3339(value.as_str()?).ok()?;
    Some(time.with_timezone(&chrono::Utc))
}

fn since(from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>) -> Duration {
    (to - from).to_std().unwrap_or_default()
}

/// One build of `dir` through the API, the way a client does it: zip,
/// POST, follow the log to its end, read the record.
async fn kiln_build(
    server: &KilnProcess,
    name: &str,
    dir: &Path,
    no_cache: bool,
) -> (Duration, Phases, Value) {
    let started = Instant::now();
    let request = json!({
        "name": name,
        "zippedCode": base64(&zip_dir(dir)),
        "noCache": no_cache,
    });
    let posted = Instant::now();
    let answer = server.post_json("/v1/builds", &request).await;
    let accept = posted.elapsed();
    assert_eq!(
        answer.status,
        StatusCode::ACCEPTED,
        "{}",
        answer.error_message()
    );
    let id = answer.json()["buildId"].as_str().unwrap().to_string();
    let followed = server
        .get(&format!("/v1/builds/{id}/logs?fromStart=true&follow=true"))
        .await;
    let ended = chrono::Utc::now();
    let took = started.elapsed();
    let record = server.build(&id).await;
    let lines = parse_ndjson(&followed.body);
    let time_of = |needle: &dyn Fn(&str) -> bool| {
        lines
            .iter()
            .find(|l| needle(l["line"].as_str().unwrap_or("")))
            .and_then(|l| utc(&l["time"]))
    };
    let created = utc(&record["createTime"]);
    let first = time_of(&|_| true);
    let builder = time_of(&|l| l.starts_with("builder:"));
    let pushing = time_of(&|l| l.starts_with("pushing "));
    let succeeded = time_of(&|l| l.starts_with("build succeeded"));
    let mut phases = Phases {
        accept,
        ..Phases::default()
    };
    if let (Some(c), Some(f), Some(b), Some(p), Some(s)) =
        (created, first, builder, pushing, succeeded)
    {
        phases.queue = since(c, f);
        phases.context = since(f, b);
        phases.engine = since(b, p);
        phases.push = since(p, s);
        phases.tail = since(s, ended);
    }
    (took, phases, record)
}

/// `docker build` + `docker push` of `dir`, as a user would type them:
/// (build, push).
fn docker_by_hand(name: &str, dir: &Path, no_cache: bool) -> (Duration, Duration) {
    let reference = format!("{REGISTRY}/bench/{name}-by-hand:latest");
    // Debian's docker.io client (20.10) builds with BuildKit on its own; a
    // newer client elsewhere on PATH wants the buildx plugin for that.
    let client = Path::new("/usr/bin/docker");
    let client = if client.exists() {
        client
    } else {
        Path::new("docker")
    };
    let docker = |args: &[&str]| {
        let output = std::process::Command::new(client)
            .args(args)
            .env("DOCKER_BUILDKIT", "1")
            .output()
            .expect("the docker command (Debian's docker.io) runs");
        assert!(
            output.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let started = Instant::now();
    let mut build = vec!["build", "-q", "-t", &reference];
    if no_cache {
        build.push("--no-cache");
    }
    build.push(dir.to_str().unwrap());
    docker(&build);
    let built = started.elapsed();
    let started = Instant::now();
    docker(&["push", "-q", &reference]);
    (built, started.elapsed())
}

/// A context of `count` one-byte files under `f/` and a Dockerfile that
/// copies them (the unpack issue's case).
fn tiny_files_context(under: &Path, count: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir_in(under).unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {REGISTRY}/base/busybox:1\nCOPY f /f\n"),
    )
    .unwrap();
    for i in 0..count {
        let sub = dir.path().join(format!("f/d{}", i / 200));
        if i % 200 == 0 {
            std::fs::create_dir_all(&sub).unwrap();
        }
        std::fs::write(sub.join(format!("x{i}")), "x").unwrap();
    }
    dir
}

/// Builds of one context through Kiln and by hand, interleaved, for each
/// cache setting: the medians, and where Kiln's time went.
struct SideBySide<'a> {
    /// How the rows name the case.
    label: String,
    /// Image name (Kiln's) and the by-hand image's prefix.
    name: &'a str,
    dir: &'a Path,
    /// (no_cache, goal) per row.
    cases: &'a [(bool, &'a str)],
    runs: usize,
}

async fn beside_docker(server: &KilnProcess, side: SideBySide<'_>, report: &mut Report) {
    let SideBySide {
        label,
        name,
        dir,
        cases,
        runs,
    } = side;
    // One of each first: base image, plugin cache and connections warm.
    let (_, _, warm) = kiln_build(server, name, dir, false).await;
    report.require(warm["status"] == "BUILD_STATUS_SUCCEEDED", || {
        format!("the {label} warm-up build ended {}", outcome(&warm))
    });
    let owned_dir = dir.to_path_buf();
    let owned_name = name.to_string();
    tokio::task::spawn_blocking(move || docker_by_hand(&owned_name, &owned_dir, false))
        .await
        .unwrap();
    for &(no_cache, goal) in cases {
        let case = if no_cache { "no-cache" } else { "warm" };
        let mut kiln_times = Vec::new();
        let mut phases: Vec<Phases> = Vec::new();
        let (mut hand_builds, mut hand_pushes) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let (took, split, record) = kiln_build(server, name, dir, no_cache).await;
            report.require(record["status"] == "BUILD_STATUS_SUCCEEDED", || {
                format!("a {case} {label} build ended {}", outcome(&record))
            });
            kiln_times.push(took);
            phases.push(split);
            let (owned_dir, owned_name) = (dir.to_path_buf(), name.to_string());
            let (built, pushed) = tokio::task::spawn_blocking(move || {
                docker_by_hand(&owned_name, &owned_dir, no_cache)
            })
            .await
            .unwrap();
            hand_builds.push(built);
            hand_pushes.push(pushed);
        }
        let kiln = median(kiln_times);
        let hand = median(
            hand_builds
                .iter()
                .zip(&hand_pushes)
                .map(|(b, p)| *b + *p)
                .collect(),
        );
        report.row(
            format!("{label} {case}: Kiln (zip, POST, follow log) / docker build + push"),
            format!(
                "{} / {} = {} (goal {goal}; median of {runs})",
                ms(kiln),
                ms(hand),
                ratio(kiln, hand),
            ),
        );
        let pick = |f: fn(&Phases) -> Duration| median(phases.iter().map(f).collect());
        report.row(
            format!("{label} {case}, Kiln's time: accept / queue / context / engine build / push / log end"),
            format!(
                "{} / {} / {} / {} / {} / {}",
                ms(pick(|p| p.accept)),
                ms(pick(|p| p.queue)),
                ms(pick(|p| p.context)),
                ms(pick(|p| p.engine)),
                ms(pick(|p| p.push)),
                ms(pick(|p| p.tail)),
            ),
        );
        report.row(
            format!("{label} {case}, by hand: docker build / docker push"),
            format!("{} / {}", ms(median(hand_builds)), ms(median(hand_pushes))),
        );
    }
}
