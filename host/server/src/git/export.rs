//! Write a commit's tree into a build context: regular files with their
//! executable bit, links checked to stay inside the context, gitlinks
//! (submodules) collected for the caller. Names git itself would refuse
//! (`..`, `.git`, slashes) make the whole export fail, and the same size
//! and entry limits as unpacked archives apply.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use gix::objs::tree::EntryKind;

use super::kept::{FileStamp, Known, Snapshot};
use super::{GitError, RepoUrl};

/// Most bytes and entries one checkout may write.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_entries: u64,
}

/// `contextDir` without leading `./`, trailing `/` or empty parts.
pub fn normalized_dir(dir: &str) -> String {
    dir.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// The tree at `dir` inside `root` (the root itself for `""`).
pub fn subtree<'repo>(
    root: &gix::Tree<'repo>,
    dir: &str,
    url: &RepoUrl,
    commit: &gix::ObjectId,
) -> Result<gix::Tree<'repo>, GitError> {
    let dir = normalized_dir(dir);
    if dir.is_empty() {
        return Ok(root.clone());
    }
    let entry = root
        .lookup_entry_by_path(&dir)
        .map_err(|e| GitError::Internal(super::error_chain(&e)))?
        .ok_or_else(|| GitError::ContextDirMissing {
            url: url.redacted(),
            commit: commit.to_string(),
            dir: dir.clone(),
        })?;
    if entry.mode().kind() != EntryKind::Tree {
        return Err(GitError::ContextDirNotDirectory {
            commit: commit.to_string(),
            dir,
        });
    }
    entry
        .object()
        .map_err(|e| GitError::Internal(super::error_chain(&e)))?
        .peel_to_tree()
        .map_err(|e| GitError::Internal(super::error_chain(&e)))
}

/// Writes trees under one destination directory, counting against limits.
pub struct Writer<'a> {
    dest: &'a Path,
    limits: &'a Limits,
    pub files: u64,
    pub bytes: u64,
    entries: u64,
    links: Vec<(String, String)>,
    /// Submodule commits found: path relative to the destination, commit.
    pub gitlinks: Vec<(String, gix::ObjectId)>,
    /// Files found by the walk, written together afterwards: path
    /// relative to the destination, blob, mode.
    pending: Vec<(String, gix::ObjectId, u32)>,
    /// What a reused context already holds (see [`super::kept`]); the walk
    /// takes out each path the new tree has, and [`Writer::sweep`] removes
    /// the rest.
    previous: HashMap<String, Known>,
    /// What this export made: directories, and files with their stamps.
    made: Snapshot,
    /// Files kept from the reused context, unwritten.
    pub reused_files: u64,
}

impl<'a> Writer<'a> {
    pub fn new(dest: &'a Path, limits: &'a Limits) -> Self {
        Writer {
            dest,
            limits,
            files: 0,
            bytes: 0,
            entries: 0,
            links: Vec::new(),
            gitlinks: Vec::new(),
            pending: Vec::new(),
            previous: HashMap::new(),
            made: Snapshot::default(),
            reused_files: 0,
        }
    }

    /// Write over a reused context holding `previous` (trusted as is).
    pub fn reusing(mut self, previous: HashMap<String, Known>) -> Self {
        self.previous = previous;
        self
    }

    /// Make room at `relative` for a new entry of another kind (or a
    /// changed file): remove what the reused context has there.
    fn clear_previous(&mut self, relative: &str) -> Result<Option<Known>, GitError> {
        let Some(known) = self.previous.remove(relative) else {
            return Ok(None);
        };
        if let Known::Dir = known {
            // What was inside goes with it.
            let inside = format!("{relative}/");
            self.previous.retain(|path, _| !path.starts_with(&inside));
        }
        let path = self.path_of(relative);
        known.remove(&path).map_err(|e| io_error(&path, e))?;
        Ok(Some(known))
    }

    /// Remove what the reused context had and the new tree does not.
    pub fn sweep(&mut self) -> Result<(), GitError> {
        let mut stale: Vec<(String, Known)> = self.previous.drain().collect();
        // Parents before their children: a removed directory takes its
        // contents with it.
        stale.sort_by(|a, b| a.0.cmp(&b.0));
        for (relative, known) in stale {
            let path = self.path_of(&relative);
            match known.remove(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_error(&path, e))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Count a kept file's bytes against the limit, as writing it would.
    fn count_bytes(&mut self, len: u64) -> Result<(), GitError> {
        self.bytes += len;
        if self.bytes > self.limits.max_bytes {
            return Err(GitError::TooLarge(format!(
                "more than {} bytes of files",
                self.limits.max_bytes
            )));
        }
        Ok(())
    }

    /// What this export made, for the next one to reuse.
    pub fn into_snapshot(self) -> Snapshot {
        self.made
    }

    /// Write `tree` at `prefix` (relative to the destination): walk it
    /// (directories, links, limits), then write its files on a few threads.
    pub fn write_tree(
        &mut self,
        repo: &gix::Repository,
        tree: &gix::Tree<'_>,
        prefix: &str,
    ) -> Result<(), GitError> {
        self.walk(repo, tree, prefix)?;
        self.write_pending(repo)
    }

    fn walk(
        &mut self,
        repo: &gix::Repository,
        tree: &gix::Tree<'_>,
        prefix: &str,
    ) -> Result<(), GitError> {
        let internal = |e: gix::Error| GitError::Internal(super::error_chain(&e));
        let dir = self.path_of(prefix);
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        // Collect first: the tree's buffer is borrowed while iterating.
        let mut entries = Vec::new();
        for entry in tree.iter() {
            let entry = entry.map_err(internal)?;
            entries.push((
                entry.filename().to_string(),
                entry.mode().kind(),
                entry.object_id(),
            ));
        }
        for (name, kind, id) in entries {
            check_name(&name, prefix)?;
            let relative = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            self.entries += 1;
            if self.entries > self.limits.max_entries {
                return Err(GitError::TooLarge(format!(
                    "more than {} files and directories",
                    self.limits.max_entries
                )));
            }
            match kind {
                EntryKind::Tree => {
                    if let Some(Known::File(_)) = self.previous.get(&relative) {
                        self.clear_previous(&relative)?;
                    }
                    self.previous.remove(&relative);
                    self.made.dirs.push(relative.clone());
                    let sub = repo.find_tree(id).map_err(internal)?;
                    self.walk(repo, &sub, &relative)?;
                }
                EntryKind::Blob | EntryKind::BlobExecutable => {
                    let mode = if kind == EntryKind::BlobExecutable {
                        0o755
                    } else {
                        0o644
                    };
                    match self.previous.get(&relative) {
                        Some(Known::File(stamp)) if stamp.id == id && stamp.mode == mode => {
                            let stamp = *stamp;
                            self.previous.remove(&relative);
                            self.count_bytes(stamp.size)?;
                            self.files += 1;
                            self.reused_files += 1;
                            self.made.files.push((relative, stamp));
                        }
                        _ => {
                            self.clear_previous(&relative)?;
                            self.pending.push((relative, id, mode));
                        }
                    }
                }
                EntryKind::Link => {
                    self.clear_previous(&relative)?;
                    let blob = repo.find_blob(id).map_err(internal)?;
                    let target = String::from_utf8(blob.data.clone()).map_err(|_| {
                        GitError::UnsafeTree(format!(
                            "symbolic link `{relative}` has a target that is not UTF-8"
                        ))
                    })?;
                    self.links.push((relative, target));
                }
                EntryKind::Commit => {
                    // A submodule: an empty directory unless it is fetched.
                    if let Some(Known::File(_)) = self.previous.get(&relative) {
                        self.clear_previous(&relative)?;
                    }
                    self.previous.remove(&relative);
                    self.made.dirs.push(relative.clone());
                    let path = self.path_of(&relative);
                    std::fs::create_dir_all(&path).map_err(|e| io_error(&path, e))?;
                    self.gitlinks.push((relative, id));
                }
            }
        }
        Ok(())
    }

    /// Create the links last, once every directory they may point into
    /// exists, with the same checks as links from archives.
    pub fn finish(&mut self) -> Result<(), GitError> {
        let links = std::mem::take(&mut self.links);
        crate::context::create_symlinks(self.dest, &links).map_err(|e| match e {
            crate::context::ContextError::Invalid(m) => GitError::UnsafeTree(m),
            other => GitError::Internal(other.to_string()),
        })
    }

    /// Write the walked files, split across up to four threads (reading
    /// and inflating objects is most of the cost); the byte limit is shared.
    fn write_pending(&mut self, repo: &gix::Repository) -> Result<(), GitError> {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return Ok(());
        }
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, 4);
        let shared = repo.clone().into_sync();
        let bytes = AtomicU64::new(self.bytes);
        let stop = AtomicBool::new(false);
        let max_bytes = self.limits.max_bytes;
        let chunk = pending.len().div_ceil(workers);
        let dest = self.dest;
        let results: Vec<Result<Vec<(String, FileStamp)>, GitError>> =
            std::thread::scope(|scope| {
                let handles: Vec<_> = pending
                    .chunks(chunk)
                    .map(|files| {
                        let (shared, bytes, stop) = (&shared, &bytes, &stop);
                        scope.spawn(move || -> Result<Vec<(String, FileStamp)>, GitError> {
                            let repo = shared.to_thread_local();
                            let mut made = Vec::with_capacity(files.len());
                            for (relative, id, mode) in files {
                                if stop.load(Ordering::Relaxed) {
                                    return Ok(made);
                                }
                                let path = &dest.join(relative);
                                let fail = |e: GitError| {
                                    stop.store(true, Ordering::Relaxed);
                                    e
                                };
                                let blob = repo.find_blob(*id).map_err(|e| {
                                    fail(GitError::Internal(super::error_chain(&e)))
                                })?;
                                let len = blob.data.len() as u64;
                                if bytes.fetch_add(len, Ordering::Relaxed) + len > max_bytes {
                                    return Err(fail(GitError::TooLarge(format!(
                                        "more than {max_bytes} bytes of files"
                                    ))));
                                }
                                let mut file = std::fs::OpenOptions::new()
                                    .write(true)
                                    .create_new(true)
                                    .mode(*mode)
                                    .open(path)
                                    .map_err(|e| fail(io_error(path, e)))?;
                                file.write_all(&blob.data)
                                    .map_err(|e| fail(io_error(path, e)))?;
                                // The stamp a later build checks the file
                                // against (an fstat of the open file).
                                let metadata =
                                    file.metadata().map_err(|e| fail(io_error(path, e)))?;
                                made.push((relative.clone(), FileStamp::of(&metadata, *id, *mode)));
                            }
                            Ok(made)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(GitError::Internal("a checkout thread panicked".into()))
                        })
                    })
                    .collect()
            });
        for made in results {
            self.made.files.extend(made?);
        }
        self.bytes = bytes.load(Ordering::Relaxed);
        self.files += pending.len() as u64;
        Ok(())
    }

    fn path_of(&self, relative: &str) -> PathBuf {
        if relative.is_empty() {
            self.dest.to_path_buf()
        } else {
            self.dest.join(relative)
        }
    }
}

fn io_error(path: &Path, e: std::io::Error) -> GitError {
    GitError::Internal(format!("cannot write {}: {e}", path.display()))
}

/// Refuse names that would leave the directory or plant a repository.
fn check_name(name: &str, prefix: &str) -> Result<(), GitError> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\0')
        || name.eq_ignore_ascii_case(".git");
    if bad {
        return Err(GitError::UnsafeTree(format!(
            "entry {name:?} in {:?} is not a safe file name",
            if prefix.is_empty() { "/" } else { prefix }
        )));
    }
    Ok(())
}

/// `.gitmodules` of a commit: submodule path → URL.
pub struct GitModules(Vec<(String, String)>);

impl GitModules {
    /// The URL of the submodule at `path`, resolved against `parent`.
    pub fn url_for(&self, path: &str, parent: &RepoUrl) -> Result<RepoUrl, String> {
        let url = self
            .0
            .iter()
            .find(|(p, _)| normalized_dir(p) == path)
            .map(|(_, url)| url)
            .ok_or_else(|| "it has no entry in .gitmodules".to_string())?;
        parent.join(url).map_err(|e| e.to_string())
    }
}

/// Read `.gitmodules` from the repository root's tree (a missing file is
/// an empty list).
pub fn read_gitmodules(
    repo: &gix::Repository,
    root: &gix::Tree<'_>,
) -> Result<GitModules, GitError> {
    let internal = |e: gix::Error| GitError::Internal(super::error_chain(&e));
    let Some(entry) = root.lookup_entry_by_path(".gitmodules").map_err(internal)? else {
        return Ok(GitModules(Vec::new()));
    };
    let blob = repo.find_blob(entry.object_id()).map_err(internal)?;
    Ok(parse_gitmodules(&String::from_utf8_lossy(&blob.data)))
}

/// The `path` and `url` keys of each `[submodule "…"]` section.
fn parse_gitmodules(text: &str) -> GitModules {
    let mut out = Vec::new();
    let mut path: Option<String> = None;
    let mut url: Option<String> = None;
    let mut flush = |path: &mut Option<String>, url: &mut Option<String>| {
        if let (Some(p), Some(u)) = (path.take(), url.take()) {
            out.push((p, u));
        }
    };
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            flush(&mut path, &mut url);
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            let value = value.trim().trim_matches('"').to_string();
            match key.trim() {
                "path" => path = Some(value),
                "url" => url = Some(value),
                _ => {}
            }
        }
    }
    flush(&mut path, &mut url);
    GitModules(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitmodules_sections_give_paths_and_urls() {
        let modules = parse_gitmodules(
            "[submodule \"lib\"]\n\tpath = vendor/lib\n\turl = ../lib.git\n[submodule \"x\"]\n\turl = https://example.com/x.git\n\tpath = x\n",
        );
        let parent = RepoUrl::parse("https://example.com/team/app.git").unwrap();
        assert_eq!(
            modules.url_for("vendor/lib", &parent).unwrap().as_str(),
            "https://example.com/team/lib.git"
        );
        assert_eq!(
            modules.url_for("x", &parent).unwrap().as_str(),
            "https://example.com/x.git"
        );
        assert!(modules.url_for("missing", &parent).is_err());
    }

    #[test]
    fn unsafe_names_are_refused() {
        for name in ["..", ".", ".git", ".GIT", "a/b", ""] {
            assert!(check_name(name, "").is_err(), "{name:?}");
        }
        assert!(check_name("src", "").is_ok());
        assert_eq!(normalized_dir("./services//api/"), "services/api");
    }
}
