//! What signing, provenance and the SBOM add to a build, measured against
//! the real engine and registry (run `scripts/setup.sh` first), printed as
//! a table of medians:
//!
//! * a build's duration with signing off (an organization switched off)
//!   and on (the default), and the difference;
//! * each part, from the build's log: the provenance statement (base
//!   images resolved), the SBOM (the image's filesystem rebuilt from the
//!   registry, then the attestor), the signature's push and the
//!   attestations' push (side by side with the signature).
//!
//! Two images: busybox (`hello`-sized, 2 MB) and Debian with Python
//! (160 MB, the wizard's base). Each run labels the image anew, so every
//! build pushes (and signs) a new digest over cached layers.
//!
//! `cargo bench -p kiln-server --bench trust`

use std::time::Duration;

use kiln_tests::*;
use serde_json::json;

const RUNS: usize = 7;

/// The first number a log line matching `pattern` (one capture) holds.
fn logged_ms(log: &str, pattern: &str) -> f64 {
    let pattern = regex::Regex::new(pattern).unwrap();
    let found = pattern
        .captures(log)
        .unwrap_or_else(|| panic!("{pattern} in the log:\n{log}"));
    found[1].parse().unwrap()
}

struct Run {
    off_ms: f64,
    on_ms: f64,
    provenance_ms: f64,
    sbom_ms: f64,
    signature_push_ms: f64,
    attestations_push_ms: f64,
}

async fn build(api: &Api, name: &str, base: &str, run: usize) -> (f64, String) {
    let dockerfile = format!("FROM {base}\nARG RUN\nLABEL kiln.bench.run=$RUN\n");
    let mut request = dockerfile_request(name, &dockerfile);
    request["buildArgs"] = json!({"RUN": run.to_string()});
    let id = api.create_build(&request).await;
    let record = api.wait_succeeded(&id, Duration::from_secs(300)).await;
    let duration = record["metrics"]["durationMs"].as_f64().unwrap();
    (duration, api.log_text(&id).await)
}

async fn measure(t: &TestServer, unsigned: &Api, base: &str) -> Vec<Run> {
    let name = unique_name("trust-bench");
    // Warm the engine's cache and the registry's blobs for both.
    build(t, &name, base, 0).await;
    build(unsigned, &name, base, 0).await;
    let mut runs = Vec::new();
    for run in 1..=RUNS {
        let (off_ms, _) = build(unsigned, &name, base, run).await;
        let (on_ms, log) = build(t, &name, base, run).await;
        let sbom_ms = logged_ms(&log, r"rebuilt from the registry \(.*\) in (\d+) ms")
            + logged_ms(&log, r"attestor sbom: .* \((\d+) ms\)");
        runs.push(Run {
            off_ms,
            on_ms,
            provenance_ms: logged_ms(&log, r"provenance: the statement made in (\d+) ms"),
            sbom_ms,
            signature_push_ms: logged_ms(&log, r"\nsignature of .* in (\d+) ms"),
            attestations_push_ms: logged_ms(&log, r"\nprovenance of .* in (\d+) ms") - sbom_ms,
        });
    }
    runs
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    percentile(&sorted(values.collect()), 0.5)
}

#[tokio::main]
async fn main() {
    let t = TestServer::start().await;
    let plain_token = t.server.create_org_with_token("bench-unsigned").unwrap();
    let set = t
        .request_as(
            Some(&t.token),
            hyper::Method::PUT,
            "/v1/orgs/bench-unsigned/signing",
            Some(br#"{"enabled": false}"#.to_vec()),
        )
        .await;
    assert_eq!(set.status, 200);
    let unsigned = t.as_token(&plain_token);
    println!("\n## What signing, provenance and the SBOM add to a build (medians of {RUNS})\n");
    println!("| image | build, signing off | build, signing on | added | provenance statement | SBOM (rebuild + attestor) | signature push | attestations push |");
    println!("|---|---|---|---|---|---|---|---|");
    for (label, base) in [
        ("busybox (2 MB)", format!("{REGISTRY}/base/busybox:1")),
        (
            "Debian + Python (160 MB)",
            format!("{REGISTRY}/base/python:1"),
        ),
    ] {
        let runs = measure(&t, &unsigned, &base).await;
        let m = |pick: fn(&Run) -> f64| median(runs.iter().map(pick));
        let (off, on) = (m(|r| r.off_ms), m(|r| r.on_ms));
        println!(
            "| {label} | {off:.0} ms | {on:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
            on - off,
            m(|r| r.provenance_ms),
            m(|r| r.sbom_ms),
            m(|r| r.signature_push_ms),
            m(|r| r.attestations_push_ms),
        );
    }
    println!("\nThe signature's push runs beside the SBOM and the attestations' push: a build waits for the provenance statement, then the slower of the two.");
    // What the SBOM's rebuild is up against: the same layers fetched and
    // unpacked by curl and tar, on the same disk, now.
    let native = median((0..3).map(|_| native_unpack_ms("base/python", "1")));
    println!("\nFor comparison, `curl | tar -xz` of base/python:1's layers into a fresh directory: {native:.0} ms (median of 3).");
}

/// Fetch `repository:tag`'s layers from the test registry with curl and
/// unpack them with tar into a fresh directory; the milliseconds it took.
fn native_unpack_ms(repository: &str, tag: &str) -> f64 {
    let manifest = std::process::Command::new("curl")
        .args([
            "-sf",
            "-H",
            "Accept: application/vnd.docker.distribution.manifest.v2+json",
        ])
        .arg(format!("http://{REGISTRY}/v2/{repository}/manifests/{tag}"))
        .output()
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    for layer in manifest["layers"].as_array().unwrap() {
        let url = format!(
            "http://{REGISTRY}/v2/{repository}/blobs/{}",
            layer["digest"].as_str().unwrap()
        );
        // tar's complaints (device nodes it may not make) do not matter
        // to the timing.
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "curl -sf {url} | tar -xzf - -C {} 2>/dev/null",
                dir.path().display()
            ))
            .status()
            .unwrap();
    }
    started.elapsed().as_secs_f64() * 1000.0
}
