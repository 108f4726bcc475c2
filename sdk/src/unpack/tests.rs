use super::*;

const ROOMY: Limits = Limits {
    max_bytes: 1 << 30,
    max_entries: 10_000,
};

fn zip_of(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut cursor = io::Cursor::new(Vec::new());
    {
        let mut writer = zip::ZipWriter::new(&mut cursor);
        for (name, data, mode) in entries {
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .unix_permissions(*mode);
            writer.start_file(*name, options).unwrap();
            writer.write_all(data).unwrap();
        }
        writer.finish().unwrap();
    }
    cursor.into_inner()
}

fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    build(&mut builder);
    builder.into_inner().unwrap()
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header
}

fn message(result: Result<Unpacked, UnpackError>) -> String {
    match result {
        Err(UnpackError::Invalid(m)) => m,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_zip_unpacks_with_its_executables_reported() {
    let dir = tempfile::tempdir().unwrap();
    let zip = zip_of(&[
        ("Dockerfile", b"FROM x\n", 0o644),
        ("bin/run.sh", b"#!/bin/sh\n", 0o755),
    ]);
    let unpacked = unpack_zip(io::Cursor::new(zip), dir.path(), ROOMY).unwrap();
    assert_eq!(unpacked.files, 2);
    assert_eq!(unpacked.bytes, 17);
    assert_eq!(unpacked.modes, vec![("bin/run.sh".to_string(), 0o755)]);
    assert_eq!(
        fs::read(dir.path().join("bin/run.sh")).unwrap(),
        b"#!/bin/sh\n"
    );
}

#[test]
fn escaping_entries_are_refused_by_name() {
    for name in ["../evil", "a/../../evil", "/etc/evil", "a\\..\\evil"] {
        let dir = tempfile::tempdir().unwrap();
        let zip = zip_of(&[(name, b"x", 0o644)]);
        let m = message(unpack_zip(io::Cursor::new(zip), dir.path(), ROOMY));
        assert!(
            m.contains(name) && m.contains("outside the build context"),
            "{name}: {m}"
        );
    }
}

/// Issue 12: a 5000-character entry name was a plugin failure with a 5 KB
/// message, and a NUL in a name was called a path escaping the context.
#[test]
fn issue_12_overlong_and_nul_names_are_invalid_contexts_with_short_messages() {
    let long = "a".repeat(5000);
    let deep = format!("{}/x", "d".repeat(300));
    let nul = "bad\0name";
    for (name, expected) in [
        (long.as_str(), "name of 5000 bytes"),
        (deep.as_str(), "path component of 300 bytes"),
        (nul, "NUL character"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let archive = zip_of(&[(name, b"x", 0o644)]);
        let m = message(unpack_zip(io::Cursor::new(archive), dir.path(), ROOMY));
        assert!(m.contains(expected), "{expected}: {m}");
        assert!(
            m.len() < 400,
            "the message stays short ({} bytes): {m}",
            m.len()
        );
        assert!(!m.contains("outside the build context"), "{m}");
    }
}

#[test]
fn a_zip_bomb_stops_at_the_byte_limit() {
    let dir = tempfile::tempdir().unwrap();
    let zeros = vec![0u8; 8 << 20];
    let zip = zip_of(&[("zeros.bin", &zeros, 0o644)]);
    assert!(
        zip.len() < 64 * 1024,
        "highly compressible: {} bytes",
        zip.len()
    );
    let limits = Limits {
        max_bytes: 1 << 20,
        max_entries: 10,
    };
    let m = message(unpack_zip(io::Cursor::new(zip), dir.path(), limits));
    assert!(
        m.contains("more than 1048576 bytes") && m.contains("archive bomb"),
        "{m}"
    );
    // It stopped writing just past the limit.
    let written = fs::metadata(dir.path().join("zeros.bin")).unwrap().len();
    assert!(written <= (1 << 20) + 1, "{written}");
}

#[test]
fn too_many_entries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
    let entries: Vec<(&str, &[u8], u32)> = names
        .iter()
        .map(|n| (n.as_str(), &b"x"[..], 0o644))
        .collect();
    let limits = Limits {
        max_bytes: 1 << 20,
        max_entries: 10,
    };
    let m = message(unpack_zip(
        io::Cursor::new(zip_of(&entries)),
        dir.path(),
        limits,
    ));
    assert!(m.contains("more than 10 entries"), "{m}");
}

#[test]
fn tar_symlinks_inside_are_reported_and_outside_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tar = tar_of(|b| {
        b.append_data(
            &mut header(tar::EntryType::Regular, 2, 0o644),
            "app/config.yml",
            &b"a\n"[..],
        )
        .unwrap();
        let mut link = header(tar::EntryType::Symlink, 0, 0o777);
        b.append_link(&mut link, "current", "app/config.yml")
            .unwrap();
    });
    let unpacked = unpack_tar(&tar[..], dir.path(), ROOMY).unwrap();
    assert_eq!(
        unpacked.symlinks,
        vec![("current".to_string(), "app/config.yml".to_string())]
    );

    for target in ["../../etc/passwd", "/etc/passwd", "a/../../../x"] {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_of(|b| {
            let mut link = header(tar::EntryType::Symlink, 0, 0o777);
            b.append_link(&mut link, "sub/link", target).unwrap();
        });
        let m = message(unpack_tar(&tar[..], dir.path(), ROOMY));
        assert!(
            m.contains(target) && m.contains("outside the build context"),
            "{target}: {m}"
        );
    }
}

#[test]
fn tar_device_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tar = tar_of(|b| {
        b.append_data(
            &mut header(tar::EntryType::Char, 0, 0o644),
            "dev/null",
            &b""[..],
        )
        .unwrap();
    });
    let m = message(unpack_tar(&tar[..], dir.path(), ROOMY));
    assert!(
        m.contains("dev/null") && m.contains("character device"),
        "{m}"
    );
}

#[test]
fn tar_gz_unpacks_and_hard_links_are_copied_from_inside() {
    let dir = tempfile::tempdir().unwrap();
    let tar = tar_of(|b| {
        b.append_data(
            &mut header(tar::EntryType::Regular, 3, 0o755),
            "tool",
            &b"abc"[..],
        )
        .unwrap();
        let mut link = header(tar::EntryType::Link, 0, 0o755);
        b.append_link(&mut link, "tool-again", "tool").unwrap();
    });
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let unpacked = unpack_tar_gz(&gz.finish().unwrap()[..], dir.path(), ROOMY).unwrap();
    assert_eq!(unpacked.files, 2);
    assert_eq!(fs::read(dir.path().join("tool-again")).unwrap(), b"abc");
    assert_eq!(unpacked.modes.len(), 2);

    let tar = tar_of(|b| {
        let mut link = header(tar::EntryType::Link, 0, 0o644);
        b.append_link(&mut link, "stolen", "../../etc/passwd")
            .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let m = message(unpack_tar(&tar[..], dir.path(), ROOMY));
    assert!(m.contains("hard link") && m.contains("outside"), "{m}");
}

#[test]
fn link_targets_are_checked_from_the_links_directory() {
    assert!(link_stays_inside(Path::new("a/b/link"), "../c"));
    assert!(link_stays_inside(Path::new("a/link"), "../c"));
    assert!(!link_stays_inside(Path::new("a/link"), "../../c"));
    assert!(!link_stays_inside(Path::new("link"), "/abs"));
}
