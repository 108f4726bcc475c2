//! The plugin runtime's costs, printed as a table:
//!
//! * cold compile time of each first-party plugin (cranelift, no cache);
//! * loading the same plugin from the on-disk compile cache;
//! * the per-call overhead every build pays: a fresh store, an instance
//!   from the `InstancePre`, nothing called (`instantiate`);
//! * unpacking zips inside the sandbox (the inline-zip plugin) against the
//!   same code natively and against `unzip -q`: 4 MiB in 1000 files, 20,000
//!   one-byte files, 200 MiB in 4 files.
//!
//! `cargo bench -p kiln-server --bench plugins` (`KILN_BENCH_DIR=/some/tmpfs`
//! to unpack somewhere else than the system's temporary directory)

use std::io::Write;
use std::time::{Duration, Instant};

use kiln_server::plugins::bindings::source::exports::kiln::plugin::source::SourceSpec;
use kiln_server::plugins::{
    embedded, first_party, Capabilities, LoadOptions, PluginRuntime, Preopens,
};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// A zip to unpack: `files` files of `size` incompressible bytes each.
struct ZipCase {
    name: &'static str,
    files: u64,
    zip: Vec<u8>,
}

impl ZipCase {
    fn random_files(name: &'static str, files: u64, size: usize) -> Self {
        let mut cursor = std::io::Cursor::new(Vec::new());
        let mut writer = zip::ZipWriter::new(&mut cursor);
        let mut x: u64 = 0x9E3779B97F4A7C15;
        let mut data = vec![0u8; size];
        for i in 0..files {
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .large_file(size >= 1 << 30);
            writer
                .start_file(format!("dir{}/file{i}.bin", i % 100), options)
                .unwrap();
            for byte in data.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *byte = x as u8;
            }
            writer.write_all(&data).unwrap();
        }
        writer.finish().unwrap();
        ZipCase {
            name,
            files,
            zip: cursor.into_inner(),
        }
    }
}

/// Unpack `case` seven times each way; rows for the medians.
async fn extraction_rows(
    runtime: &PluginRuntime,
    scratch: &std::path::Path,
    case: &ZipCase,
) -> Vec<(String, String)> {
    let plugin = runtime.source("inline-zip").unwrap();
    let input = tempfile::tempdir_in(scratch).unwrap();
    let zip_path = input.path().join("context.zip");
    std::fs::write(&zip_path, &case.zip).unwrap();
    let unzip_present = std::process::Command::new("unzip")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    let (mut sandboxed, mut native, mut unzip) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..7 {
        let context = tempfile::tempdir_in(scratch).unwrap();
        let spec = SourceSpec {
            kind: "inline-zip".into(),
            input_path: Some("/input/context.zip".into()),
            options: Vec::new(),
            max_unpacked_bytes: 1 << 34,
            max_entries: 100_000,
        };
        let preopens = Preopens {
            context: Some(context.path().to_path_buf()),
            context_writable: true,
            input: Some(input.path().to_path_buf()),
            credentials: None,
        };
        let caps = Capabilities::for_plugin(plugin);
        let started = Instant::now();
        let info = runtime
            .materialize(plugin, caps, &preopens, &spec)
            .await
            .unwrap()
            .unwrap();
        sandboxed.push(started.elapsed());
        assert_eq!(info.files, case.files);
        drop(context);

        let target = tempfile::tempdir_in(scratch).unwrap();
        let started = Instant::now();
        let unpacked = kiln_sdk::unpack::unpack_zip(
            kiln_sdk::unpack::open_archive(&zip_path).unwrap(),
            target.path(),
            kiln_sdk::unpack::Limits {
                max_bytes: 1 << 34,
                max_entries: 100_000,
            },
        )
        .unwrap();
        native.push(started.elapsed());
        assert_eq!(unpacked.files, case.files);
        drop(target);

        if unzip_present {
            let target = tempfile::tempdir_in(scratch).unwrap();
            let started = Instant::now();
            let status = std::process::Command::new("unzip")
                .arg("-q")
                .arg(&zip_path)
                .arg("-d")
                .arg(target.path())
                .status()
                .unwrap();
            unzip.push(started.elapsed());
            assert!(status.success());
        }
    }
    let sandboxed = median(sandboxed);
    let ratio = |other: Duration| sandboxed.as_secs_f64() / other.as_secs_f64();
    let mut rows = vec![(
        format!(
            "unzip {} ({:.1} MiB zip), in the sandbox",
            case.name,
            case.zip.len() as f64 / (1 << 20) as f64
        ),
        format!("{} (median of 7)", ms(sandboxed)),
    )];
    let native = median(native);
    rows.push((
        "… the same code, native".into(),
        format!("{}; sandbox/native {:.2}", ms(native), ratio(native)),
    ));
    rows.push(match unzip_present {
        true => {
            let unzip = median(unzip);
            (
                "… `unzip -q`".into(),
                format!("{}; sandbox/unzip {:.2}", ms(unzip), ratio(unzip)),
            )
        }
        false => ("… `unzip -q`".into(), "not installed".into()),
    });
    rows
}

#[tokio::main]
async fn main() {
    let mut rows: Vec<(String, String)> = Vec::new();
    let cache = tempfile::tempdir().unwrap();

    // Cold compile, per plugin.
    let runtime = PluginRuntime::load(first_party(&[], &Default::default())).unwrap();
    for plugin in embedded::PLUGINS {
        let times: Vec<Duration> = (0..5)
            .map(|_| {
                let started = Instant::now();
                wasmtime::component::Component::new(runtime.engine(), plugin.component).unwrap();
                started.elapsed()
            })
            .collect();
        rows.push((
            format!(
                "cold compile, {} ({} KiB)",
                plugin.dir,
                plugin.component.len() / 1024
            ),
            format!("{} (median of 5)", ms(median(times))),
        ));
    }

    // Cache: the first load fills it, later ones hit it.
    let no_grants = Default::default();
    let options = || LoadOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        ..first_party(&[], &no_grants)
    };
    drop(PluginRuntime::load(options()).unwrap());
    let mut per_plugin: std::collections::BTreeMap<String, Vec<Duration>> = Default::default();
    for _ in 0..9 {
        let warm = PluginRuntime::load(options()).unwrap();
        for plugin in warm.plugins() {
            assert!(plugin.from_cache, "{} was not cached", plugin.manifest.id);
            per_plugin
                .entry(plugin.manifest.id.clone())
                .or_default()
                .push(plugin.load_time);
        }
    }
    for (id, times) in per_plugin {
        rows.push((
            format!("cache-hit load, {id}"),
            format!("{} (median of 9)", ms(median(times))),
        ));
    }

    // Per-call overhead: fresh store + instantiate (what every call pays
    // before its export runs).
    for id in ["inline-zip", "buildkit"] {
        let plugin = runtime.plugins().find(|p| p.manifest.id == id).unwrap();
        for _ in 0..50 {
            runtime.instantiate(plugin).await.unwrap();
        }
        let mut times = Vec::with_capacity(500);
        for _ in 0..500 {
            let started = Instant::now();
            runtime.instantiate(plugin).await.unwrap();
            times.push(started.elapsed());
        }
        rows.push((
            format!("store + instantiate, {id}"),
            format!("{} (median of 500)", us(median(times))),
        ));
    }

    // Extraction: the inline-zip plugin in its sandbox against the same
    // code natively and against `unzip -q`, all into one filesystem.
    // `KILN_BENCH_DIR` picks the filesystem (a tmpfs takes the disk's
    // inode allocation out of the comparison).
    let scratch = match std::env::var_os("KILN_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    for case in [
        ZipCase::random_files("4 MiB / 1000 files", 1000, 4096),
        ZipCase::random_files("20,000 one-byte files", 20_000, 1),
        ZipCase::random_files("200 MiB / 4 files", 4, 50 << 20),
    ] {
        rows.extend(extraction_rows(&runtime, scratch.path(), &case).await);
    }
    let width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(10);
    println!("\n| {:width$} | result |", "measure");
    println!("|{}|--------|", "-".repeat(width + 2));
    for (what, result) in rows {
        println!("| {what:width$} | {result} |");
    }
}
