//! Archive extraction for context sources (feature `unpack`): zip, tar and
//! tar.gz into `/context`, as Kiln's own `inline-zip` and `upload` sources
//! do it. It runs inside the plugin's sandbox, where the only writable
//! directory is the context preopen, so a check missed here still could not
//! write outside the context; the checks exist to refuse hostile archives
//! with a clear message instead of a bare I/O error:
//!
//! * entries whose path is absolute or climbs out with `..`;
//! * symbolic links that point outside the context (the links themselves are
//!   not created here: WASI cannot make them, so they are reported and the
//!   host creates them after checking again);
//! * device files, FIFOs and other special entries;
//! * archive bombs: the unpacked bytes are counted as they are written (a
//!   header's claimed size is not trusted), and so are the entries.
//!
//! Unix permission bits cannot be set through WASI either: executable files
//! are reported in [`Unpacked::modes`] for the host to apply.

use std::fs;
use std::io::{self, Read, Seek, Write};
use std::path::{Component, Path, PathBuf};

mod positional;

use positional::{PositionalFile, WindowedReader};

/// Open an archive to unpack (e.g. the staged input under `/input`): read
/// with positional calls (under wasmtime-wasi, a plain `File`'s reads each
/// hop to a blocking thread and back) through a 64 KiB window that a zip
/// reader's seek from entry to entry does not throw away.
pub fn open_archive(path: impl AsRef<Path>) -> io::Result<impl Read + Seek> {
    Ok(WindowedReader::new(fs::File::open(path)?, 64 * 1024))
}

/// How much an archive may unpack to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most bytes the unpacked files may hold together.
    pub max_bytes: u64,
    /// Most files and directories.
    pub max_entries: u64,
}

/// What was unpacked, and what the host still has to do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unpacked {
    /// Regular files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// (path, permission bits) for files whose mode matters (executables).
    pub modes: Vec<(String, u32)>,
    /// (link path, target) for symbolic links, both checked to stay inside.
    pub symlinks: Vec<(String, String)>,
}

/// Why an archive was refused.
#[derive(Debug)]
pub enum UnpackError {
    /// The archive is unusable as a context; the message says why and what to do.
    Invalid(String),
    /// Writing the context failed.
    Io(String),
}

impl std::fmt::Display for UnpackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnpackError::Invalid(m) | UnpackError::Io(m) => f.write_str(m),
        }
    }
}

fn invalid(message: String) -> UnpackError {
    UnpackError::Invalid(message)
}

fn io_error(entry: &str, e: io::Error) -> UnpackError {
    UnpackError::Io(format!("cannot write `{entry}`: {e}"))
}

/// Most bytes of an entry's whole name (Linux's `PATH_MAX`).
pub const MAX_NAME_BYTES: usize = 4096;
/// Most bytes of one component of an entry's name (Linux's `NAME_MAX`).
pub const MAX_COMPONENT_BYTES: usize = 255;

/// `name` as an error message shows it: control characters escaped, at
/// most 100 characters, so a hostile 5000-character name does not become a
/// 5 KB message.
pub fn shown_name(name: &str) -> String {
    const SHOWN: usize = 100;
    let mut shown = String::new();
    for (count, c) in name.chars().enumerate() {
        if count == SHOWN {
            shown.push_str(&format!("… ({} bytes)", name.len()));
            break;
        }
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

/// The entry's path relative to the context, or why it may not be unpacked.
pub fn safe_relative_path(name: &str) -> Result<PathBuf, UnpackError> {
    let shown = shown_name(name);
    if name.contains('\0') {
        return Err(invalid(format!(
            "archive entry `{shown}` has a NUL character in its name; no file system can hold it, re-create the archive from files with ordinary names"
        )));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(invalid(format!(
            "archive entry `{shown}` has a name of {} bytes; names may have at most {MAX_NAME_BYTES}",
            name.len()
        )));
    }
    if let Some(long) = name
        .split('/')
        .find(|part| part.len() > MAX_COMPONENT_BYTES)
    {
        return Err(invalid(format!(
            "archive entry `{shown}` has a path component of {} bytes; each part of a name may have at most {MAX_COMPONENT_BYTES}",
            long.len()
        )));
    }
    let escape = || {
        invalid(format!(
            "archive entry `{shown}` points outside the build context; \
             re-create the archive from inside the context directory, with relative paths and no `..`"
        ))
    };
    if name.starts_with('/') || name.contains('\\') {
        return Err(escape());
    }
    let mut out = PathBuf::new();
    for part in Path::new(name).components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(escape())
            }
        }
    }
    Ok(out)
}

/// Whether a link at `link` (relative to the root) with `target` resolves,
/// lexically, to a place inside the root.
pub fn link_stays_inside(link: &Path, target: &str) -> bool {
    if target.is_empty() || target.starts_with('/') || target.contains('\0') {
        return false;
    }
    let mut depth: Vec<&std::ffi::OsStr> = link
        .parent()
        .map(|p| p.iter().collect())
        .unwrap_or_default();
    for part in Path::new(target).components() {
        match part {
            Component::Normal(p) => depth.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Counts what an archive has unpacked so far against the limits, and
/// remembers which directories exist: in the sandbox every filesystem call
/// crosses into the host, so a directory is created once, not per file.
struct Budget {
    limits: Limits,
    entries: u64,
    bytes: u64,
    made_dirs: std::collections::HashSet<PathBuf>,
    /// One copy buffer for every file: each write is a host call in the
    /// sandbox, so writes are big; allocating it per file would cost more
    /// than the copying for small files.
    buffer: Vec<u8>,
}

impl Budget {
    fn entry(&mut self) -> Result<(), UnpackError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(invalid(format!(
                "the archive holds more than {} entries, the limit for a build context; \
                 leave out dependencies and build outputs (a .dockerignore helps)",
                self.limits.max_entries
            )));
        }
        Ok(())
    }

    fn make_dir(&mut self, name: &str, dir: &Path) -> Result<(), UnpackError> {
        if !self.made_dirs.contains(dir) {
            fs::create_dir_all(dir).map_err(|e| io_error(name, e))?;
            self.made_dirs.insert(dir.to_path_buf());
        }
        Ok(())
    }

    /// Copy one file's contents, counting real bytes, not the header's claim.
    fn copy(
        &mut self,
        name: &str,
        reader: &mut dyn Read,
        target: &Path,
    ) -> Result<u64, UnpackError> {
        if let Some(parent) = target.parent() {
            self.make_dir(name, parent)?;
        }
        // Positional writes: see `open_archive`.
        let mut out = PositionalFile::new(fs::File::create(target).map_err(|e| io_error(name, e))?);
        let left = self.limits.max_bytes.saturating_sub(self.bytes);
        let mut written = 0u64;
        let mut limited = reader.take(left + 1);
        let buffer = &mut self.buffer;
        loop {
            let n = limited
                .read(buffer)
                .map_err(|e| invalid(format!("archive entry `{name}` cannot be read: {e}")))?;
            if n == 0 {
                break;
            }
            out.write_all(&buffer[..n]).map_err(|e| io_error(name, e))?;
            written += n as u64;
        }
        if written > left {
            return Err(invalid(format!(
                "the archive unpacks to more than {} bytes (stopped at `{name}`): it may be an archive bomb, \
                 or the context needs a .dockerignore",
                self.limits.max_bytes
            )));
        }
        self.bytes += written;
        Ok(written)
    }
}

fn note_mode(unpacked: &mut Unpacked, relative: &Path, mode: Option<u32>) {
    if let Some(mode) = mode {
        let permissions = mode & 0o777;
        if permissions & 0o111 != 0 {
            unpacked
                .modes
                .push((relative.to_string_lossy().into_owned(), permissions));
        }
    }
}

fn note_symlink(
    unpacked: &mut Unpacked,
    name: &str,
    relative: &Path,
    target: &str,
) -> Result<(), UnpackError> {
    if !link_stays_inside(relative, target) {
        return Err(invalid(format!(
            "archive entry `{name}` is a symbolic link to `{target}`, which is outside the build context; \
             a context may only link to files inside it"
        )));
    }
    unpacked
        .symlinks
        .push((relative.to_string_lossy().into_owned(), target.to_string()));
    Ok(())
}

/// Unpack a zip archive into `root`.
pub fn unpack_zip<R: Read + Seek>(
    reader: R,
    root: &Path,
    limits: Limits,
) -> Result<Unpacked, UnpackError> {
    let mut archive = zip::ZipArchive::new(reader).map_err(|e| {
        invalid(format!(
            "the context is not a readable zip archive ({e}); make it with `zip -r` or similar"
        ))
    })?;
    let mut budget = Budget {
        limits,
        entries: 0,
        bytes: 0,
        made_dirs: Default::default(),
        buffer: vec![0u8; 256 * 1024],
    };
    let mut unpacked = Unpacked::default();
    for index in 0..archive.len() {
        budget.entry()?;
        let mut entry = archive
            .by_index(index)
            .map_err(|e| invalid(format!("zip entry #{index} is unreadable: {e}")))?;
        let name = entry.name().to_string();
        let relative = safe_relative_path(&name)?;
        if relative.as_os_str().is_empty() {
            continue;
        }
        let target = root.join(&relative);
        if entry.is_symlink() {
            let mut link = String::new();
            entry
                .read_to_string(&mut link)
                .map_err(|e| invalid(format!("zip entry `{name}` is an unreadable link: {e}")))?;
            note_symlink(&mut unpacked, &name, &relative, &link)?;
            continue;
        }
        if entry.is_dir() {
            budget.make_dir(&name, &target)?;
            continue;
        }
        if let Some(mode) = entry.unix_mode() {
            let kind = mode & 0o170000;
            if kind != 0 && kind != 0o100000 {
                return Err(invalid(format!(
                    "zip entry `{name}` is a special file (device, FIFO or socket); a build context may hold only files, directories and links"
                )));
            }
        }
        budget.copy(&name, &mut entry, &target)?;
        unpacked.files += 1;
        note_mode(&mut unpacked, &relative, entry.unix_mode());
    }
    unpacked.bytes = budget.bytes;
    Ok(unpacked)
}

/// Unpack a tar archive (already decompressed) into `root`.
pub fn unpack_tar<R: Read>(
    reader: R,
    root: &Path,
    limits: Limits,
) -> Result<Unpacked, UnpackError> {
    let mut archive = tar::Archive::new(reader);
    let mut budget = Budget {
        limits,
        entries: 0,
        bytes: 0,
        made_dirs: Default::default(),
        buffer: vec![0u8; 256 * 1024],
    };
    let mut unpacked = Unpacked::default();
    let entries = archive
        .entries()
        .map_err(|e| invalid(format!("the context is not a readable tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| invalid(format!("the tar archive is corrupt: {e}")))?;
        budget.entry()?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let relative = safe_relative_path(&name)?;
        if relative.as_os_str().is_empty() {
            continue;
        }
        let target = root.join(&relative);
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Directory => {
                budget.make_dir(&name, &target)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                budget.copy(&name, &mut entry, &target)?;
                unpacked.files += 1;
                note_mode(&mut unpacked, &relative, entry.header().mode().ok());
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                note_symlink(&mut unpacked, &name, &relative, &link)?;
            }
            tar::EntryType::Link => {
                // A hard link: copy the file it names, which must already be
                // unpacked inside the context.
                let link = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let source = safe_relative_path(&link).map_err(|_| {
                    invalid(format!(
                        "archive entry `{name}` is a hard link to `{link}`, which is outside the build context"
                    ))
                })?;
                let mut file = fs::File::open(root.join(&source)).map_err(|_| {
                    invalid(format!(
                        "archive entry `{name}` is a hard link to `{link}`, which is not a file earlier in the archive"
                    ))
                })?;
                budget.copy(&name, &mut file, &target)?;
                unpacked.files += 1;
                note_mode(&mut unpacked, &relative, entry.header().mode().ok());
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader | tar::EntryType::GNULongName | tar::EntryType::GNULongLink => {}
            other => {
                return Err(invalid(format!(
                    "archive entry `{name}` is a {} entry; a build context may hold only files, directories and links",
                    describe(other)
                )))
            }
        }
    }
    unpacked.bytes = budget.bytes;
    Ok(unpacked)
}

fn describe(kind: tar::EntryType) -> &'static str {
    match kind {
        tar::EntryType::Char => "character device",
        tar::EntryType::Block => "block device",
        tar::EntryType::Fifo => "FIFO",
        _ => "special",
    }
}

/// Unpack a gzip-compressed tar archive into `root`.
pub fn unpack_tar_gz<R: Read>(
    reader: R,
    root: &Path,
    limits: Limits,
) -> Result<Unpacked, UnpackError> {
    unpack_tar(flate2::read::GzDecoder::new(reader), root, limits)
}

mod report {
    use super::{UnpackError, Unpacked};
    use crate::source::{ContextInfo, FileMode, PluginError, Symlink};

    /// What the plugin reports: counts, modes and links for the host, and
    /// a summary line naming `what` was unpacked.
    pub fn context_info(unpacked: Unpacked, what: &str) -> ContextInfo {
        ContextInfo {
            summary: format!(
                "unpacked {} files ({} bytes) from {what}",
                unpacked.files, unpacked.bytes
            ),
            files: unpacked.files,
            bytes: unpacked.bytes,
            file_modes: unpacked
                .modes
                .into_iter()
                .map(|(path, mode)| FileMode { path, mode })
                .collect(),
            symlinks: unpacked
                .symlinks
                .into_iter()
                .map(|(path, target)| Symlink { path, target })
                .collect(),
        }
    }

    /// An unusable archive is the user's to fix; an I/O failure is not.
    impl From<UnpackError> for PluginError {
        fn from(error: UnpackError) -> Self {
            match error {
                UnpackError::Invalid(m) => PluginError::ContextInvalid(m),
                UnpackError::Io(m) => PluginError::Internal(m),
            }
        }
    }
}

#[cfg(test)]
mod tests;

pub use report::context_info;
