//! The plugin runtime's costs, printed as a table:
//!
//! * cold compile time of each first-party plugin (cranelift, no cache);
//! * loading the same plugin from the on-disk compile cache;
//! * the per-call overhead every build pays: a fresh store, an instance
//!   from the `InstancePre`, nothing called (`instantiate`);
//! * unpacking a 4 MiB, 1000-file zip inside the sandbox (the inline-zip
//!   plugin) against the same code natively.
//!
//! `cargo bench -p kiln-server --bench plugins`

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

/// 1000 files of 4 KiB of incompressible bytes: a zip of about 4 MiB.
fn test_zip() -> Vec<u8> {
    let mut cursor = std::io::Cursor::new(Vec::new());
    let mut writer = zip::ZipWriter::new(&mut cursor);
    let mut x: u64 = 0x9E3779B97F4A7C15;
    for i in 0..1000 {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        writer
            .start_file(format!("dir{}/file{i}.bin", i % 20), options)
            .unwrap();
        let mut data = vec![0u8; 4096];
        for byte in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *byte = x as u8;
        }
        writer.write_all(&data).unwrap();
    }
    writer.finish().unwrap();
    cursor.into_inner()
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

    // Extraction: sandboxed plugin against native code.
    let zip = test_zip();
    let zip_mib = zip.len() as f64 / (1 << 20) as f64;
    let plugin = runtime.source("inline-zip").unwrap();
    let mut sandboxed = Vec::new();
    let mut native = Vec::new();
    for _ in 0..7 {
        let input = tempfile::tempdir().unwrap();
        std::fs::write(input.path().join("context.zip"), &zip).unwrap();
        let context = tempfile::tempdir().unwrap();
        let spec = SourceSpec {
            kind: "inline-zip".into(),
            input_path: Some("/input/context.zip".into()),
            options: Vec::new(),
            max_unpacked_bytes: 1 << 30,
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
        assert_eq!(info.files, 1000);

        let target = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let unpacked = kiln_sdk::unpack::unpack_zip(
            std::io::BufReader::new(std::fs::File::open(input.path().join("context.zip")).unwrap()),
            target.path(),
            kiln_sdk::unpack::Limits {
                max_bytes: 1 << 30,
                max_entries: 100_000,
            },
        )
        .unwrap();
        native.push(started.elapsed());
        assert_eq!(unpacked.files, 1000);
    }
    let (sandboxed, native) = (median(sandboxed), median(native));
    rows.push((
        format!("unzip {zip_mib:.1} MiB / 1000 files, in the sandbox"),
        format!("{} (median of 7)", ms(sandboxed)),
    ));
    rows.push((
        "… the same code, native".into(),
        format!(
            "{} (median of 7); sandbox/native {:.2}",
            ms(native),
            sandboxed.as_secs_f64() / native.as_secs_f64()
        ),
    ));

    let width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(10);
    println!("\n| {:width$} | result |", "measure");
    println!("|{}|--------|", "-".repeat(width + 2));
    for (what, result) in rows {
        println!("| {what:width$} | {result} |");
    }
}
