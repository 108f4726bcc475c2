//! Contexts kept between builds of one repository, so that a warm build
//! writes only what changed.
//!
//! When a build from git ends, its context directory (the exported tree,
//! plus whatever the build did to it) moves aside under the mirror, into
//! `<mirror>.exports/<key>/tree/`, beside a [`Snapshot`] of what the export
//! wrote: per file, the blob id and mode, and the inode, size and ctime it
//! had right after it was written. The next checkout of the same
//! repository, context directory and submodule setting takes it (an atomic
//! rename, so one build at a time), moves it into its own context
//! directory, and trusts a file only while its `lstat` still matches the
//! snapshot, as git trusts its index. Everything else is removed before the
//! export runs: files the build changed or added, symbolic links (the
//! export makes them again, with its checks), anything the snapshot does
//! not name. The export then writes only files whose blob or mode changed,
//! and removes the paths the new tree no longer has.
//!
//! Why ctime: user space cannot set it, and every write, chmod, rename and
//! link changes it. A file changed in the same clock tick as it was written
//! could still look unchanged, so a file whose ctime is not older than the
//! end of its export is left out of the snapshot (git calls these "racy").
//! Files at the top of the context are left out too: moving them aside and
//! back changes their ctime (a moved directory's children keep theirs).

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A file as its export left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub id: gix::ObjectId,
    /// The mode git gave it (0o644 or 0o755).
    pub mode: u32,
    /// Its permission bits on disk (git's mode after the umask).
    pub perm: u32,
    pub size: u64,
    pub ino: u64,
    /// ctime in nanoseconds since the epoch.
    pub ctime: i64,
}

impl FileStamp {
    /// The stamp of a file just written with `id` and `mode`.
    pub fn of(metadata: &std::fs::Metadata, id: gix::ObjectId, mode: u32) -> Self {
        FileStamp {
            id,
            mode,
            perm: metadata.mode() & 0o7777,
            size: metadata.size(),
            ino: metadata.ino(),
            ctime: ctime_ns(metadata),
        }
    }

    /// Whether `metadata` (from `lstat`) is still this file, untouched.
    fn matches(&self, metadata: &std::fs::Metadata) -> bool {
        metadata.file_type().is_file()
            && metadata.ino() == self.ino
            && metadata.size() == self.size
            && ctime_ns(metadata) == self.ctime
            && metadata.mode() & 0o7777 == self.perm
    }
}

fn ctime_ns(metadata: &std::fs::Metadata) -> i64 {
    metadata
        .ctime()
        .saturating_mul(1_000_000_000)
        .saturating_add(metadata.ctime_nsec())
}

/// What is on disk at a path of a reused context, trusted.
#[derive(Debug, Clone, Copy)]
pub enum Known {
    Dir,
    File(FileStamp),
}

impl Known {
    /// Remove it from `path` (a directory with everything inside).
    pub fn remove(&self, path: &Path) -> std::io::Result<()> {
        match self {
            Known::Dir => std::fs::remove_dir_all(path),
            Known::File(_) => std::fs::remove_file(path),
        }
    }
}

/// Where the contexts kept for `mirror` live: `<mirror>.exports/`.
pub fn exports_of(mirror: &Path) -> PathBuf {
    mirror.with_extension("exports")
}

/// What one export wrote: the directories, and the files it can vouch for.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub dirs: Vec<String>,
    pub files: Vec<(String, FileStamp)>,
}

/// A finished export and where it is kept when its build ends.
#[derive(Clone)]
pub struct KeptExport {
    /// `<mirror>.exports/`.
    pub(super) exports: PathBuf,
    /// The entry's name: repository, context directory and submodule
    /// setting, hashed.
    pub(super) key: String,
    pub(super) snapshot: Arc<Snapshot>,
}

impl std::fmt::Debug for KeptExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptExport")
            .field("exports", &self.exports)
            .field("key", &self.key)
            .field("files", &self.snapshot.files.len())
            .finish()
    }
}

/// A name no other kept-export operation (of this process or another) uses.
fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Names in an exports directory that only an operation in progress (or
/// one a crash interrupted) uses.
const TRANSIENT: [&str; 4] = ["keep-", "taken-", "stale-", "settled-"];

/// Remove what interrupted operations left in `exports` (call it when no
/// build runs).
pub fn remove_transient(exports: &Path) {
    let Ok(entries) = std::fs::read_dir(exports) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if TRANSIENT.iter().any(|p| name.starts_with(p)) {
            let _ = remove_any(&entry.path());
        }
    }
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The filesystem's clock now, as ctime would read it: the end of an
/// export. Files whose ctime is not older were written in this tick.
pub fn settled_time(exports: &Path) -> Option<i64> {
    std::fs::create_dir_all(exports).ok()?;
    let marker = exports.join(unique("settled"));
    let file = std::fs::File::create(&marker).ok()?;
    let time = file.metadata().ok().map(|m| ctime_ns(&m));
    let _ = std::fs::remove_file(&marker);
    time
}

/// The longest wait for the filesystem's clock to tick past an export.
const MAX_SETTLE: std::time::Duration = std::time::Duration::from_millis(100);

/// The settled time after an export whose newest file has ctime `newest`:
/// waits (a clock tick, a few milliseconds at most) until the filesystem's
/// clock has moved past it, so that every file the export wrote is older
/// than the settled time and can be vouched for. Without the wait, an
/// export that fits in one tick (a small repository on a fast disk) would
/// keep nothing. Nothing else writes the context meanwhile: the build has
/// not started. Gives up after [`MAX_SETTLE`] with the time it has.
pub fn settle(exports: &Path, newest: Option<i64>) -> Option<i64> {
    let started = std::time::Instant::now();
    loop {
        let settled = settled_time(exports)?;
        if newest.is_none_or(|newest| newest < settled) || started.elapsed() >= MAX_SETTLE {
            return Some(settled);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

impl Snapshot {
    /// The newest ctime among its files.
    pub fn newest_ctime(&self) -> Option<i64> {
        self.files.iter().map(|(_, stamp)| stamp.ctime).max()
    }

    /// The snapshot to keep: without files written in the export's last
    /// clock tick (`settled`, or all of them when the time is unknown) and
    /// without top-level files.
    pub fn vouched(mut self, settled: Option<i64>) -> Self {
        self.files.retain(|(path, stamp)| {
            path.contains('/') && settled.is_some_and(|settled| stamp.ctime < settled)
        });
        self
    }

    fn write_to(&self, path: &Path) -> std::io::Result<()> {
        let mut out = BufWriter::new(std::fs::File::create(path)?);
        out.write_all(MAGIC)?;
        out.write_all(&(self.dirs.len() as u64).to_le_bytes())?;
        for dir in &self.dirs {
            write_str(&mut out, dir)?;
        }
        out.write_all(&(self.files.len() as u64).to_le_bytes())?;
        for (path, stamp) in &self.files {
            write_str(&mut out, path)?;
            let id = stamp.id.as_bytes();
            out.write_all(&[id.len() as u8])?;
            out.write_all(id)?;
            out.write_all(&stamp.mode.to_le_bytes())?;
            out.write_all(&stamp.perm.to_le_bytes())?;
            out.write_all(&stamp.size.to_le_bytes())?;
            out.write_all(&stamp.ino.to_le_bytes())?;
            out.write_all(&stamp.ctime.to_le_bytes())?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    }

    fn read_from(path: &Path) -> std::io::Result<Self> {
        let mut input = BufReader::new(std::fs::File::open(path)?);
        let mut magic = [0u8; MAGIC.len()];
        input.read_exact(&mut magic)?;
        if magic != *MAGIC {
            return Err(corrupt("not a snapshot of this version"));
        }
        let mut snapshot = Snapshot::default();
        for _ in 0..read_u64(&mut input)? {
            snapshot.dirs.push(read_str(&mut input)?);
        }
        for _ in 0..read_u64(&mut input)? {
            let path = read_str(&mut input)?;
            let mut len = [0u8; 1];
            input.read_exact(&mut len)?;
            let mut id = vec![0u8; len[0] as usize];
            input.read_exact(&mut id)?;
            let id = gix::ObjectId::try_from(id.as_slice())
                .map_err(|_| corrupt("an object id of an unknown length"))?;
            let mut mode = [0u8; 4];
            input.read_exact(&mut mode)?;
            let mut perm = [0u8; 4];
            input.read_exact(&mut perm)?;
            let stamp = FileStamp {
                id,
                mode: u32::from_le_bytes(mode),
                perm: u32::from_le_bytes(perm),
                size: read_u64(&mut input)?,
                ino: read_u64(&mut input)?,
                ctime: read_u64(&mut input)? as i64,
            };
            snapshot.files.push((path, stamp));
        }
        Ok(snapshot)
    }
}

const MAGIC: &[u8; 16] = b"kiln-export-v2\0\0";

fn corrupt(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

fn write_str(out: &mut impl Write, s: &str) -> std::io::Result<()> {
    out.write_all(&(s.len() as u64).to_le_bytes())?;
    out.write_all(s.as_bytes())
}

fn read_u64(input: &mut impl Read) -> std::io::Result<u64> {
    let mut bytes = [0u8; 8];
    input.read_exact(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

fn read_str(input: &mut impl Read) -> std::io::Result<String> {
    let len = read_u64(input)?;
    if len > 1 << 20 {
        return Err(corrupt("a path longer than 1 MiB"));
    }
    let mut bytes = vec![0u8; len as usize];
    input.read_exact(&mut bytes)?;
    String::from_utf8(bytes).map_err(|_| corrupt("a path that is not UTF-8"))
}

impl KeptExport {
    pub(super) fn new(exports: PathBuf, key: String, snapshot: Snapshot) -> Self {
        KeptExport {
            exports,
            key,
            snapshot: Arc::new(snapshot),
        }
    }

    /// Move `context` (its build has ended) aside as the entry to reuse,
    /// replacing an older one. `context` is left empty; when something
    /// fails nothing is kept, and what had already moved is removed with
    /// the half-made entry (the build's workspace goes anyway).
    pub fn keep(&self, context: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.exports)?;
        let staging = self.exports.join(unique("keep"));
        let tree = staging.join("tree");
        std::fs::create_dir_all(&tree)?;
        let moved = (|| {
            self.snapshot.write_to(&staging.join("snapshot"))?;
            for entry in std::fs::read_dir(context)? {
                let entry = entry?;
                std::fs::rename(entry.path(), tree.join(entry.file_name()))?;
            }
            let entry = self.exports.join(&self.key);
            if std::fs::rename(&staging, &entry).is_err() {
                // An older one is there: newer wins.
                let stale = self.exports.join(unique("stale"));
                std::fs::rename(&entry, &stale)?;
                std::fs::rename(&staging, &entry)?;
                remove_any(&stale)?;
            }
            Ok(())
        })();
        if moved.is_err() {
            let _ = remove_any(&staging);
        }
        moved
    }
}

/// Take the kept entry `key` of `exports`, move its tree into `dest` (an
/// empty directory) and remove what cannot be trusted; answers what can.
/// `None`: nothing was kept (or it could not be used), `dest` is as it was.
pub fn take(exports: &Path, key: &str, dest: &Path) -> Option<HashMap<String, Known>> {
    let taken = exports.join(unique("taken"));
    std::fs::rename(exports.join(key), &taken).ok()?;
    let moved = (|| -> std::io::Result<Option<Snapshot>> {
        if std::fs::read_dir(dest)?.next().is_some() {
            // Something wrote here before the checkout: export afresh.
            return Ok(None);
        }
        let snapshot = Snapshot::read_from(&taken.join("snapshot"))?;
        for entry in std::fs::read_dir(taken.join("tree"))? {
            let entry = entry?;
            std::fs::rename(entry.path(), dest.join(entry.file_name()))?;
        }
        Ok(Some(snapshot))
    })();
    let _ = remove_any(&taken);
    match moved.and_then(|snapshot| snapshot.map(|s| trusted(dest, &s)).transpose()) {
        Ok(known) => known,
        Err(e) => {
            tracing::warn!(
                "cannot reuse the kept context {}: {e}",
                exports.join(key).display()
            );
            // Whatever moved in is not trusted: start from nothing.
            clear(dest);
            None
        }
    }
}

fn clear(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let _ = remove_any(&entry.path());
        }
    }
}

/// Walk `root` without following links; remove every entry `snapshot`
/// cannot vouch for; answer the rest.
fn trusted(root: &Path, snapshot: &Snapshot) -> std::io::Result<HashMap<String, Known>> {
    let dirs: HashSet<&str> = snapshot.dirs.iter().map(String::as_str).collect();
    let files: HashMap<&str, &FileStamp> = snapshot
        .files
        .iter()
        .map(|(p, s)| (p.as_str(), s))
        .collect();
    let mut known = HashMap::with_capacity(snapshot.dirs.len() + snapshot.files.len());
    let mut stack = vec![String::new()];
    while let Some(dir) = stack.pop() {
        let path = if dir.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&dir)
        };
        for entry in std::fs::read_dir(&path)? {
            let entry = entry?;
            let name = entry.file_name();
            let relative = match name.to_str() {
                Some(name) if dir.is_empty() => name.to_string(),
                Some(name) => format!("{dir}/{name}"),
                None => {
                    remove_any(&entry.path())?;
                    continue;
                }
            };
            // `DirEntry::metadata` is an lstat: links are never followed.
            let metadata = entry.metadata()?;
            if metadata.is_dir() && dirs.contains(relative.as_str()) {
                known.insert(relative.clone(), Known::Dir);
                stack.push(relative);
            } else if let Some(stamp) = files
                .get(relative.as_str())
                .filter(|stamp| stamp.matches(&metadata))
            {
                known.insert(relative, Known::File(**stamp));
            } else {
                remove_any(&entry.path())?;
            }
        }
    }
    Ok(known)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn id(n: u8) -> gix::ObjectId {
        gix::ObjectId::from_bytes_or_panic(&[n; 20])
    }

    /// A context as an export writes it: `a/one`, `a/b/two`, `top`, and
    /// the snapshot of it (taken once the clock has moved on).
    fn exported(dir: &Path) -> Snapshot {
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        let mut files = Vec::new();
        for (path, content) in [("a/one", "1"), ("a/b/two", "22"), ("top", "3")] {
            std::fs::write(dir.join(path), content).unwrap();
            let mode = 0o644;
            std::fs::set_permissions(dir.join(path), std::fs::Permissions::from_mode(mode))
                .unwrap();
            let metadata = std::fs::metadata(dir.join(path)).unwrap();
            files.push((
                path.to_string(),
                FileStamp::of(&metadata, id(content.len() as u8), mode),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        let settled = settled_time(&dir.join("../exports-clock"));
        Snapshot {
            dirs: vec!["a".into(), "a/b".into()],
            files,
        }
        .vouched(settled)
    }

    #[test]
    fn a_snapshot_survives_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let snapshot = exported(&dir.path().join("ctx"));
        snapshot.write_to(&dir.path().join("snapshot")).unwrap();
        let read = Snapshot::read_from(&dir.path().join("snapshot")).unwrap();
        assert_eq!(read.dirs, snapshot.dirs);
        assert_eq!(read.files, snapshot.files);
        std::fs::write(dir.path().join("snapshot"), b"kiln-export-v0\0\0").unwrap();
        assert!(Snapshot::read_from(&dir.path().join("snapshot")).is_err());
    }

    #[test]
    fn settling_waits_for_the_clock_to_pass_the_newest_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("just-written");
        std::fs::write(&file, "x").unwrap();
        let newest = ctime_ns(&std::fs::metadata(&file).unwrap());
        let settled = settle(&dir.path().join("clock"), Some(newest)).unwrap();
        assert!(settled > newest, "{settled} is not past {newest}");
    }

    #[test]
    fn top_level_files_and_files_of_the_last_tick_are_not_vouched_for() {
        let dir = tempfile::tempdir().unwrap();
        let snapshot = exported(&dir.path().join("ctx"));
        let paths: Vec<&str> = snapshot.files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["a/one", "a/b/two"]);
        // Written "now": not older than the settled time.
        let racy = Snapshot {
            dirs: Vec::new(),
            files: snapshot.files.clone(),
        }
        .vouched(Some(i64::MIN));
        assert!(racy.files.is_empty());
        assert!(snapshot.clone().vouched(None).files.is_empty());
    }

    #[test]
    fn only_untouched_files_are_trusted_after_a_build_changed_the_context() {
        let dir = tempfile::tempdir().unwrap();
        let context = dir.path().join("ctx");
        let snapshot = exported(&context);
        let exports = dir.path().join("exports");
        let kept = KeptExport::new(exports.clone(), "key".into(), snapshot);
        // What a build may do to its context: rewrite a file in place (same
        // size), add files, plant a link where a directory was.
        std::fs::write(context.join("a/b/two"), "XX").unwrap();
        std::fs::write(context.join("a/added"), "new").unwrap();
        std::fs::rename(context.join("a/b"), dir.path().join("moved-b")).unwrap();
        std::os::unix::fs::symlink("/etc", context.join("a/b")).unwrap();
        kept.keep(&context).unwrap();
        assert_eq!(std::fs::read_dir(&context).unwrap().count(), 0);

        let dest = dir.path().join("next");
        std::fs::create_dir_all(&dest).unwrap();
        let known = take(&exports, "key", &dest).expect("the kept context is reused");
        assert!(matches!(known.get("a"), Some(Known::Dir)));
        assert!(matches!(known.get("a/one"), Some(Known::File(_))));
        for gone in ["a/b", "a/b/two", "a/added", "top"] {
            assert!(!known.contains_key(gone), "{gone} is trusted");
            assert!(
                std::fs::symlink_metadata(dest.join(gone)).is_err(),
                "{gone} is still there"
            );
        }
        assert!(
            Path::new("/etc/passwd").exists(),
            "the link was not followed"
        );
        assert_eq!(std::fs::read_to_string(dest.join("a/one")).unwrap(), "1");
        // Taken: a second build finds nothing kept.
        let other = dir.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        assert!(take(&exports, "key", &other).is_none());
        assert_eq!(std::fs::read_dir(&exports).unwrap().count(), 0);
    }

    #[test]
    fn a_context_something_wrote_to_first_is_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let context = dir.path().join("ctx");
        let exports = dir.path().join("exports");
        KeptExport::new(exports.clone(), "key".into(), exported(&context))
            .keep(&context)
            .unwrap();
        let dest = dir.path().join("next");
        std::fs::create_dir_all(&dest).unwrap();
        std::fs::write(dest.join("planted"), "x").unwrap();
        assert!(take(&exports, "key", &dest).is_none());
        let left: Vec<_> = std::fs::read_dir(&dest).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "the destination is as it was");
    }

    #[test]
    fn what_interrupted_moves_left_goes_and_kept_contexts_stay() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "keep-1-2-3/tree/a",
            "taken-1-2-4/tree",
            "stale-1-2-5",
            "0123abcd/tree/src",
        ] {
            std::fs::create_dir_all(dir.path().join(name)).unwrap();
        }
        std::fs::write(dir.path().join("settled-1-2-6"), "").unwrap();
        remove_transient(dir.path());
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["0123abcd"]);
    }
}
