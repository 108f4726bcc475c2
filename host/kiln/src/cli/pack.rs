//! Packing a directory into a build context on the client: the files
//! `.dockerignore` leaves in (Docker's semantics, shared with the server),
//! never `.git` unless asked, into a zip with modes and links kept.

use std::fs;
use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};

use kiln_api::dockerignore::DockerIgnore;

/// What went into the archive.
#[derive(Debug, Default)]
pub struct Packed {
    pub files: u64,
    pub bytes: u64,
    /// Relative paths, `/`-separated, in archive order.
    pub paths: Vec<String>,
}

/// Why a directory could not be packed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("{0}")]
    Ignore(String),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write the archive: {0}")]
    Write(String),
}

/// The relative paths of `dir` that a build would see, sorted, walking into
/// directories only where something inside may be kept.
pub fn context_files(
    dir: &Path,
    dockerfile: &str,
    include_git: bool,
) -> Result<Vec<(String, PathBuf)>, PackError> {
    if !dir.is_dir() {
        return Err(PackError::NotADirectory(dir.to_path_buf()));
    }
    let ignore = match fs::read_to_string(dir.join(".dockerignore")) {
        Ok(text) => DockerIgnore::parse(&text).map_err(PackError::Ignore)?,
        Err(_) => DockerIgnore::default(),
    };
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let entries = fs::read_dir(&current).map_err(|source| PackError::Read {
            path: current.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| PackError::Read {
                path: current.clone(),
                source,
            })?;
            let path = entry.path();
            let relative = path
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if !include_git && (relative == ".git" || relative.starts_with(".git/")) {
                continue;
            }
            let kept = relative == dockerfile || relative == ".dockerignore";
            let excluded = !kept && ignore.excludes(&relative);
            let meta = fs::symlink_metadata(&path).map_err(|source| PackError::Read {
                path: path.clone(),
                source,
            })?;
            if meta.is_dir() {
                let holds_kept = dockerfile.starts_with(&format!("{relative}/"));
                if !excluded || ignore.has_exceptions() || holds_kept {
                    stack.push(path);
                }
                continue;
            }
            if !excluded {
                out.push((relative, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Write the context into `out` as a zip, calling `progress(bytes)` as
/// file contents go in.
pub fn pack_zip<W: Write + Seek>(
    files: &[(String, PathBuf)],
    out: W,
    mut progress: impl FnMut(u64),
) -> Result<Packed, PackError> {
    use std::os::unix::fs::PermissionsExt;
    let mut writer = zip::ZipWriter::new(out);
    let mut packed = Packed::default();
    let write_err = |e: zip::result::ZipError| PackError::Write(e.to_string());
    for (relative, path) in files {
        let meta = fs::symlink_metadata(path).map_err(|source| PackError::Read {
            path: path.clone(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(1))
            .unix_permissions(mode)
            .large_file(meta.len() >= u32::MAX as u64);
        if meta.file_type().is_symlink() {
            let target = fs::read_link(path).map_err(|source| PackError::Read {
                path: path.clone(),
                source,
            })?;
            writer
                .add_symlink(
                    relative.as_str(),
                    target.to_string_lossy().as_ref(),
                    options,
                )
                .map_err(write_err)?;
        } else {
            writer
                .start_file(relative.as_str(), options)
                .map_err(write_err)?;
            let mut file = fs::File::open(path).map_err(|source| PackError::Read {
                path: path.clone(),
                source,
            })?;
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let n =
                    io::Read::read(&mut file, &mut buffer).map_err(|source| PackError::Read {
                        path: path.clone(),
                        source,
                    })?;
                if n == 0 {
                    break;
                }
                writer
                    .write_all(&buffer[..n])
                    .map_err(|e| PackError::Write(e.to_string()))?;
                packed.bytes += n as u64;
                progress(n as u64);
            }
        }
        packed.files += 1;
        packed.paths.push(relative.clone());
    }
    writer.finish().map_err(write_err)?;
    Ok(packed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_honors_dockerignore_and_skips_git() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (path, text) in [
            ("Dockerfile", "FROM x"),
            (".dockerignore", "*.log\nbuild\n"),
            ("src/a.rs", "a"),
            ("debug.log", "x"),
            ("build/out.bin", "x"),
            (".git/HEAD", "ref"),
        ] {
            let p = root.join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        let files = context_files(root, "Dockerfile", false).unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec![".dockerignore", "Dockerfile", "src/a.rs"]);
        let with_git = context_files(root, "Dockerfile", true).unwrap();
        assert!(with_git.iter().any(|(n, _)| n == ".git/HEAD"));

        let mut out = io::Cursor::new(Vec::new());
        let packed = pack_zip(&files, &mut out, |_| {}).unwrap();
        assert_eq!(packed.files, 3);
        let archive = zip::ZipArchive::new(io::Cursor::new(out.into_inner())).unwrap();
        assert_eq!(archive.len(), 3);
    }
}
