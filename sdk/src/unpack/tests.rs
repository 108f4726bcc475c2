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

/// Issue 12: generated hostile archives (names that climb, are absolute,
/// hold NULs, backslashes or dots; links and hard links anywhere; special
/// files; bombs) never write outside the context, never panic, and every
/// link reported for the host to create stays inside.
mod generated {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Kind {
        File(Vec<u8>),
        Dir,
        Symlink(String),
        HardLink(String),
        Fifo,
    }

    fn part() -> impl Strategy<Value = String> {
        prop_oneof![
            16 => "[a-z]{1,4}",
            2 => Just("..".to_string()),
            1 => Just(".".to_string()),
            1 => Just(String::new()),
            1 => Just("\\..".to_string()),
            1 => Just("a\0b".to_string()),
            1 => "[^/]{1,6}",
        ]
    }

    fn path() -> impl Strategy<Value = String> {
        (
            prop::bool::weighted(0.1),
            prop::collection::vec(part(), 1..5),
        )
            .prop_map(|(absolute, parts)| {
                let joined = parts.join("/");
                if absolute {
                    format!("/{joined}")
                } else {
                    joined
                }
            })
    }

    fn kind() -> impl Strategy<Value = Kind> {
        prop_oneof![
            4 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Kind::File),
            2 => Just(Kind::Dir),
            2 => path().prop_map(Kind::Symlink),
            1 => path().prop_map(Kind::HardLink),
            1 => Just(Kind::Fifo),
        ]
    }

    fn entries() -> impl Strategy<Value = Vec<(String, Kind, u32)>> {
        prop::collection::vec(
            (
                path(),
                kind(),
                prop_oneof![Just(0o644), Just(0o755), Just(0o4777)],
            ),
            0..10,
        )
    }

    /// A tar written header by header, so hostile names reach the
    /// archive as they are (the tar crate's own writer refuses them).
    fn raw_tar(entries: &[(String, Kind, u32)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, mode) in entries {
            let (entry_type, data, link): (_, &[u8], Option<&str>) = match kind {
                Kind::File(data) => (tar::EntryType::Regular, data, None),
                Kind::Dir => (tar::EntryType::Directory, &[], None),
                Kind::Symlink(target) => (tar::EntryType::Symlink, &[], Some(target)),
                Kind::HardLink(target) => (tar::EntryType::Link, &[], Some(target)),
                Kind::Fifo => (tar::EntryType::Fifo, &[], None),
            };
            let mut header = tar::Header::new_old();
            header.set_entry_type(entry_type);
            header.set_size(data.len() as u64);
            header.set_mode(*mode);
            let old = header.as_old_mut();
            let bytes = name.as_bytes();
            let n = bytes.len().min(old.name.len());
            old.name[..n].copy_from_slice(&bytes[..n]);
            if let Some(link) = link {
                let bytes = link.as_bytes();
                let n = bytes.len().min(old.linkname.len());
                old.linkname[..n].copy_from_slice(&bytes[..n]);
            }
            header.set_cksum();
            builder.append(&header, data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn zip(entries: &[(String, Kind, u32)]) -> Vec<u8> {
        let mut cursor = io::Cursor::new(Vec::new());
        {
            let mut writer = zip::ZipWriter::new(&mut cursor);
            let options =
                |mode: u32| zip::write::SimpleFileOptions::default().unix_permissions(mode);
            for (name, kind, mode) in entries {
                // The zip writer refuses some names itself; those entries
                // are simply not in the archive.
                let _ = match kind {
                    Kind::File(data) => writer
                        .start_file(name.as_str(), options(*mode))
                        .and_then(|()| writer.write_all(data).map_err(Into::into)),
                    Kind::Dir => writer.add_directory(name.as_str(), options(*mode)),
                    Kind::Symlink(target) | Kind::HardLink(target) => {
                        writer.add_symlink(name.as_str(), target.as_str(), options(*mode))
                    }
                    Kind::Fifo => writer.start_file(name.as_str(), options(0o010644)),
                };
            }
            let _ = writer.finish();
        }
        cursor.into_inner()
    }

    /// Every path under `dir`, links not followed.
    fn all_paths(dir: &Path, into: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            into.push(path.clone());
            if entry.file_type().unwrap().is_dir() {
                all_paths(&path, into);
            }
        }
    }

    /// Unpack into `<outer>/context`; check nothing landed beside it.
    fn check(
        unpack: impl FnOnce(&Path) -> Result<Unpacked, UnpackError>,
    ) -> Result<(), TestCaseError> {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("context");
        fs::create_dir(&root).unwrap();
        let result = unpack(&root);
        let mut paths = Vec::new();
        all_paths(outer.path(), &mut paths);
        for path in &paths {
            prop_assert!(
                path.starts_with(&root),
                "{} was written outside the context",
                path.display()
            );
            prop_assert!(
                !fs::symlink_metadata(path).unwrap().file_type().is_symlink(),
                "a link was created: {}",
                path.display()
            );
        }
        match result {
            Ok(unpacked) => {
                for (link, target) in &unpacked.symlinks {
                    prop_assert!(
                        link_stays_inside(Path::new(link), target),
                        "{link} -> {target} was accepted"
                    );
                }
            }
            Err(UnpackError::Invalid(message)) => {
                prop_assert!(message.len() < 1024, "a {}-byte message", message.len());
            }
            Err(UnpackError::Io(_)) => {}
        }
        Ok(())
    }

    const SMALL: Limits = Limits {
        max_bytes: 256,
        max_entries: 8,
    };

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn generated_tars_stay_inside_the_context(entries in entries(), small in any::<bool>()) {
            let tar = raw_tar(&entries);
            let limits = if small { SMALL } else { ROOMY };
            check(|root| unpack_tar(&tar[..], root, limits))?;
        }

        #[test]
        fn generated_zips_stay_inside_the_context(entries in entries(), small in any::<bool>()) {
            let archive = zip(&entries);
            let limits = if small { SMALL } else { ROOMY };
            check(|root| unpack_zip(io::Cursor::new(archive), root, limits))?;
        }

    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_are_refused_or_unpacked_never_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            check(|root| unpack_tar(&bytes[..], root, ROOMY))?;
            check(|root| unpack_zip(io::Cursor::new(bytes.clone()), root, ROOMY))?;
            check(|root| unpack_tar_gz(&bytes[..], root, ROOMY))?;
        }
    }
}
