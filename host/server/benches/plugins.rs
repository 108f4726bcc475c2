//! The plugin runtime's costs, printed as a table:
//!
//! * cold compile time of each first-party plugin (cranelift, no cache);
//! * loading the same plugin from the on-disk compile cache;
//! * the per-call overhead every build pays: a fresh store, an instance
//!   from the `InstancePre`, nothing called (`instantiate`);
//! * unpacking archives inside the sandbox against the same code natively
//!   and against `unzip -q` / `tar -x(z)f`: zips through the inline-zip
//!   plugin, tars and tar.gz through the upload plugin; 4 MiB in 1000 files,
//!   20,000 one-byte files and 200 MiB in 4 files in each format, and
//!   100,000 one-byte files as a zip and a tar.gz.
//!
//! `cargo bench -p kiln-server --bench plugins` (`KILN_BENCH_DIR=/some/tmpfs`
//! to unpack somewhere else than the system's temporary directory)

use std::io::Write;
use std::time::{Duration, Instant};

use kiln_server::plugins::bindings::source::exports::kiln::plugin::source::SourceSpec;
use kiln_server::plugins::{
    embedded, first_party, Capabilities, LoadOptions, PluginRuntime, Preopens,
};
use kiln_server::scheduler::{staged_archive, staged_file_name};

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

/// How an archive is packed, and what unpacks it natively.
#[derive(Clone, Copy, PartialEq)]
enum Format {
    Zip,
    Tar,
    TarGz,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Zip => "zip",
            Format::Tar => "tar",
            Format::TarGz => "tar.gz",
        }
    }

    /// The plugin a build of this format goes through: an inline zip's, or
    /// an uploaded archive's.
    fn source(self) -> &'static str {
        match self {
            Format::Zip => "inline-zip",
            Format::Tar | Format::TarGz => "upload",
        }
    }

    /// The command a user would type: `unzip -q` or `tar -x(z)f`.
    fn native_command(
        self,
        archive: &std::path::Path,
        into: &std::path::Path,
    ) -> std::process::Command {
        let mut command;
        match self {
            Format::Zip => {
                command = std::process::Command::new("unzip");
                command.arg("-q").arg(archive).arg("-d").arg(into);
            }
            Format::Tar | Format::TarGz => {
                command = std::process::Command::new("tar");
                command
                    .arg(if self == Format::Tar { "-xf" } else { "-xzf" })
                    .arg(archive)
                    .arg("-C")
                    .arg(into);
            }
        }
        command
    }

    fn native_name(self) -> &'static str {
        match self {
            Format::Zip => "`unzip -q`",
            Format::Tar => "`tar -xf`",
            Format::TarGz => "`tar -xzf`",
        }
    }
}

/// An archive to unpack: `files` files of `size` incompressible bytes each.
struct ArchiveCase {
    name: &'static str,
    format: Format,
    files: u64,
    archive: Vec<u8>,
}

impl ArchiveCase {
    fn random_files(name: &'static str, format: Format, files: u64, size: usize) -> Self {
        let mut x: u64 = 0x9E3779B97F4A7C15;
        let mut data = vec![0u8; size];
        let mut next_file = |i: u64| {
            for byte in data.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *byte = x as u8;
            }
            (format!("dir{}/file{i}.bin", i % 100), data.clone())
        };
        let archive = match format {
            Format::Zip => {
                let mut cursor = std::io::Cursor::new(Vec::new());
                let mut writer = zip::ZipWriter::new(&mut cursor);
                for i in 0..files {
                    let options = zip::write::SimpleFileOptions::default()
                        .compression_method(zip::CompressionMethod::Deflated)
                        .large_file(size >= 1 << 30);
                    let (path, data) = next_file(i);
                    writer.start_file(path, options).unwrap();
                    writer.write_all(&data).unwrap();
                }
                writer.finish().unwrap();
                cursor.into_inner()
            }
            Format::Tar | Format::TarGz => {
                let mut builder = tar::Builder::new(Vec::new());
                for i in 0..files {
                    let (path, data) = next_file(i);
                    let mut header = tar::Header::new_gnu();
                    header.set_size(data.len() as u64);
                    header.set_mode(0o644);
                    header.set_entry_type(tar::EntryType::Regular);
                    builder.append_data(&mut header, path, &data[..]).unwrap();
                }
                let tar = builder.into_inner().unwrap();
                match format {
                    Format::TarGz => kiln_tests::gzip(&tar),
                    _ => tar,
                }
            }
        };
        ArchiveCase {
            name,
            format,
            files,
            archive,
        }
    }
}

/// Unpack `case` `runs` times each way; rows for the medians.
async fn extraction_rows(
    runtime: &PluginRuntime,
    scratch: &std::path::Path,
    case: &ArchiveCase,
    runs: usize,
) -> Vec<(String, String)> {
    let source = case.format.source();
    // Staged and described to the plugin exactly as the host does it.
    let (input_path, options) = staged_archive(Some(case.format.name()));
    let plugin = runtime.source(source).unwrap();
    let input = tempfile::tempdir_in(scratch).unwrap();
    let archive_path = input.path().join(staged_file_name(case.format.name()));
    std::fs::write(&archive_path, &case.archive).unwrap();
    let limits = kiln_sdk::unpack::Limits {
        max_bytes: 1 << 34,
        max_entries: 200_000,
    };
    let mut native_present = true;
    let (mut sandboxed, mut native, mut by_hand) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let context = tempfile::tempdir_in(scratch).unwrap();
        let spec = SourceSpec {
            kind: source.into(),
            input_path: input_path.clone(),
            options: options.clone(),
            max_unpacked_bytes: limits.max_bytes,
            max_entries: limits.max_entries,
        };
        let preopens = Preopens {
            context: Some(context.path().to_path_buf()),
            context_writable: true,
            input: Some(input.path().to_path_buf()),
            credentials: None,
            rootfs: None,
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
        let reader = kiln_sdk::unpack::open_archive(&archive_path).unwrap();
        let unpacked = match case.format {
            Format::Zip => kiln_sdk::unpack::unpack_zip(reader, target.path(), limits),
            Format::Tar => kiln_sdk::unpack::unpack_tar(reader, target.path(), limits),
            Format::TarGz => kiln_sdk::unpack::unpack_tar_gz(reader, target.path(), limits),
        }
        .unwrap();
        native.push(started.elapsed());
        assert_eq!(unpacked.files, case.files);
        drop(target);

        let target = tempfile::tempdir_in(scratch).unwrap();
        let started = Instant::now();
        match case
            .format
            .native_command(&archive_path, target.path())
            .status()
        {
            Ok(status) => {
                by_hand.push(started.elapsed());
                assert!(status.success(), "{} failed", case.format.native_name());
            }
            Err(_) => native_present = false,
        }
    }
    let sandboxed = median(sandboxed);
    let ratio = |other: Duration| sandboxed.as_secs_f64() / other.as_secs_f64();
    let mut rows = vec![(
        format!(
            "{} {} ({:.1} MiB), in the sandbox ({source})",
            case.format.name(),
            case.name,
            case.archive.len() as f64 / (1 << 20) as f64
        ),
        format!("{} (median of {runs})", ms(sandboxed)),
    )];
    let native = median(native);
    rows.push((
        "… the same code, native".into(),
        format!("{}; sandbox/native {:.2}", ms(native), ratio(native)),
    ));
    let tool = case.format.native_name();
    rows.push(match native_present {
        true => {
            let by_hand = median(by_hand);
            (
                format!("… {tool}"),
                format!("{}; sandbox/{tool} {:.2}", ms(by_hand), ratio(by_hand)),
            )
        }
        false => (format!("… {tool}"), "not installed".into()),
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
    // Each shape in each format a context comes in (an inline zip; an
    // uploaded tar, tar.gz or zip goes through the upload plugin with the
    // same SDK code), and the 100,000 files.
    for format in [Format::Zip, Format::Tar, Format::TarGz] {
        for case in [
            ArchiveCase::random_files("4 MiB / 1000 files", format, 1000, 4096),
            ArchiveCase::random_files("20,000 one-byte files", format, 20_000, 1),
            ArchiveCase::random_files("200 MiB / 4 files", format, 4, 50 << 20),
        ] {
            rows.extend(extraction_rows(&runtime, scratch.path(), &case, 7).await);
        }
    }
    for format in [Format::Zip, Format::TarGz] {
        let case = ArchiveCase::random_files("100,000 one-byte files", format, 100_000, 1);
        rows.extend(extraction_rows(&runtime, scratch.path(), &case, 3).await);
    }
    let width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(10);
    println!("\n| {:width$} | result |", "measure");
    println!("|{}|--------|", "-".repeat(width + 2));
    for (what, result) in rows {
        println!("| {what:width$} | {result} |");
    }
}
