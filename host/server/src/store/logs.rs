//! Build logs as they are produced, and the files that keep them.
//!
//! A line is appended to its build's file, then made durable by a group
//! commit (one fsync per file for every line written meanwhile, all files
//! at once), and only then announced.
//! Followers learn *that* lines exist — a watch of the build's last durable
//! sequence number — and read them from the store. So a follower never sees
//! a line a crash could take back, a slow follower never blocks the build or
//! other followers (it just reads a bigger batch when it gets round to it),
//! and the flush cost is shared by every line written in the same instant.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio::sync::{watch, Notify};

use super::{LogLine, Store};

/// Longest line kept; longer ones are cut (and say so).
const MAX_LINE_BYTES: usize = 16 * 1024;

/// Cut `text` to at most `limit` bytes, at a character boundary; how many
/// bytes were dropped (0: it fitted).
pub fn truncate_at_char_boundary(text: &mut String, limit: usize) -> usize {
    if text.len() <= limit {
        return 0;
    }
    let mut cut = limit;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let dropped = text.len() - cut;
    text.truncate(cut);
    dropped
}

/// Where followers learn that a build's log grew. One channel per build
/// with a writer or a follower; its value is the last durable sequence.
#[derive(Clone)]
pub struct LogHub {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    commits: Arc<GroupCommit>,
}

struct Channel {
    sender: watch::Sender<u64>,
    /// A build is writing to it: keep it even with no follower.
    has_writer: bool,
}

/// Lines written but not yet synced, per build, and the flusher's bell.
#[derive(Default)]
struct GroupCommit {
    pending: Mutex<HashMap<String, Unsynced>>,
    bell: Arc<Notify>,
}

/// A build's lines written since the last group commit.
struct Unsynced {
    /// Its followers' channel.
    sender: watch::Sender<u64>,
    /// The last of them.
    seq: u64,
    file: Arc<LogFile>,
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        // Wake the flusher so it sees the hub is gone and ends.
        self.bell.notify_one();
    }
}

impl Default for LogHub {
    fn default() -> Self {
        Self::new()
    }
}

impl LogHub {
    /// A hub; starts its group-commit task on the current runtime.
    pub fn new() -> Self {
        let commits = Arc::new(GroupCommit::default());
        let weak = Arc::downgrade(&commits);
        let bell = commits.bell.clone();
        tokio::spawn(async move {
            loop {
                let notified = bell.notified();
                let Some(commits) = weak.upgrade() else {
                    return;
                };
                let batch: Vec<_> = std::mem::take(&mut *commits.pending.lock().unwrap())
                    .into_iter()
                    .collect();
                if batch.is_empty() {
                    // Wait for the next line without keeping the hub alive.
                    drop(commits);
                    notified.await;
                    continue;
                }
                // Every file at once: the filesystem's journal commits
                // fsyncs that wait together as one.
                let syncs: Vec<_> = batch
                    .iter()
                    .map(|(_, unsynced)| {
                        let file = unsynced.file.clone();
                        tokio::task::spawn_blocking(move || file.sync())
                    })
                    .collect();
                for ((build_id, _), sync) in batch.iter().zip(syncs) {
                    match sync.await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::error!(build_id, "cannot sync the build's log: {e}"),
                        Err(e) => tracing::error!(build_id, "cannot sync the build's log: {e}"),
                    }
                }
                for (_, Unsynced { sender, seq, .. }) in batch {
                    sender.send_replace(seq);
                }
            }
        });
        LogHub {
            channels: Arc::default(),
            commits,
        }
    }

    fn channel(&self, build_id: &str, current: u64, writer: bool) -> watch::Sender<u64> {
        let mut channels = self.channels.lock().unwrap();
        let channel = channels
            .entry(build_id.to_string())
            .or_insert_with(|| Channel {
                sender: watch::channel(current).0,
                has_writer: false,
            });
        if writer {
            channel.has_writer = true;
            channel.sender.send_if_modified(|seq| {
                let grew = current > *seq;
                *seq = (*seq).max(current);
                grew
            });
        }
        channel.sender.clone()
    }

    /// Watch a build's last durable log sequence number.
    pub fn subscribe(&self, build_id: &str) -> watch::Receiver<u64> {
        self.channel(build_id, 0, false).subscribe()
    }

    /// The build ended (its log is flushed): drop its channel.
    pub fn finish(&self, build_id: &str) {
        self.channels.lock().unwrap().remove(build_id);
    }

    /// Drop a channel nobody listens to any more.
    pub fn release_if_idle(&self, build_id: &str) {
        let mut channels = self.channels.lock().unwrap();
        if let Some(channel) = channels.get(build_id) {
            if !channel.has_writer && channel.sender.receiver_count() == 0 {
                channels.remove(build_id);
            }
        }
    }

    fn committed_later(
        &self,
        build_id: &str,
        sender: &watch::Sender<u64>,
        seq: u64,
        file: &Arc<LogFile>,
    ) {
        self.commits.pending.lock().unwrap().insert(
            build_id.to_string(),
            Unsynced {
                sender: sender.clone(),
                seq,
                file: file.clone(),
            },
        );
        self.commits.bell.notify_one();
    }
}

/// Appends lines to one build's log. Cheap to clone; all clones share the
/// sequence counter.
#[derive(Clone)]
pub struct BuildLog {
    inner: Arc<BuildLogInner>,
    /// Put before each line: which platform of a multi-platform build
    /// wrote it (their builds run side by side).
    prefix: Option<Arc<str>>,
}

struct BuildLogInner {
    /// Secret values this build may print; replaced by `***`.
    masks: std::sync::RwLock<Vec<String>>,
    file: Arc<LogFile>,
    hub: LogHub,
    build_id: String,
    next_seq: Mutex<u64>,
    notify: watch::Sender<u64>,
    /// The first write that failed, and how many did: the build cannot
    /// succeed with a log that lost lines.
    lost: Mutex<Option<(super::StoreError, u64)>>,
}

impl BuildLog {
    /// A writer for `build_id`, continuing after any lines already stored.
    pub fn open(store: &Store, hub: &LogHub, build_id: &str) -> Result<Self, super::StoreError> {
        let (file, last) = store.open_log_for_append(build_id)?;
        Ok(BuildLog {
            inner: Arc::new(BuildLogInner {
                masks: Default::default(),
                file: Arc::new(file),
                hub: hub.clone(),
                build_id: build_id.to_string(),
                next_seq: Mutex::new(last + 1),
                notify: hub.channel(build_id, last, true),
                lost: Mutex::new(None),
            }),
            prefix: None,
        })
    }

    /// The same log, each line written through it starting `[label] `.
    pub fn labelled(&self, label: &str) -> BuildLog {
        BuildLog {
            inner: self.inner.clone(),
            prefix: Some(format!("[{label}] ").into()),
        }
    }

    /// Mask these values in every line written from now on. Every
    /// non-empty value is masked, however short: the API refuses values
    /// under `MIN_SECRET_CHARS`, but a credential-store plugin or an older
    /// store may still hold one, and a garbled line is better than a
    /// shown secret.
    pub fn mask(&self, values: impl IntoIterator<Item = String>) {
        let mut masks = self.inner.masks.write().unwrap();
        masks.extend(values.into_iter().filter(|v| !v.is_empty()));
        // Longest first, so a secret containing another is masked whole.
        masks.sort_by_key(|m| std::cmp::Reverse(m.len()));
    }

    /// The build this log belongs to.
    pub fn build_id(&self) -> &str {
        &self.inner.build_id
    }

    /// `text` with every masked value replaced by `***`: for anything of
    /// the build that leaves the host besides its log (the failure message
    /// in the record quotes the failing step and its output).
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_string();
        for secret in self.inner.masks.read().unwrap().iter() {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "***");
            }
        }
        text
    }

    /// Append a line. `stream` is `system`, `build` or `plugin`.
    pub fn write(&self, stream: &str, line: &str) {
        let line = line.trim_end_matches(['\n', '\r']);
        let mut text = match &self.prefix {
            Some(prefix) => self.redact(&format!("{prefix}{line}")),
            None => self.redact(line),
        };
        if truncate_at_char_boundary(&mut text, MAX_LINE_BYTES) > 0 {
            text.push_str(" [line cut at 16 KiB]");
        }
        let mut next = self.inner.next_seq.lock().unwrap();
        let entry = LogLine {
            seq: *next,
            time: Utc::now(),
            stream: stream.to_string(),
            line: text,
        };
        if let Err(source) = self.inner.file.append(&entry) {
            let e = super::StoreError::Log {
                build_id: self.inner.build_id.clone(),
                source,
            };
            tracing::error!(build_id = %self.inner.build_id, "cannot store a log line: {e}");
            let mut lost = self.inner.lost.lock().unwrap();
            match &mut *lost {
                Some((_, count)) => *count += 1,
                None => *lost = Some((e, 1)),
            }
            return;
        }
        self.inner.hub.committed_later(
            &self.inner.build_id,
            &self.inner.notify,
            entry.seq,
            &self.inner.file,
        );
        *next += 1;
    }

    /// Whether lines could not be stored, or not made durable: what went
    /// wrong, and whether it was the disk being full. (A failed fsync
    /// counts from the group commit's on: the lines were announced, but a
    /// build whose log may have lost them cannot succeed.)
    pub fn lost_lines(&self) -> Option<(String, bool)> {
        let lost = self.inner.lost.lock().unwrap();
        if let Some((error, count)) = lost.as_ref() {
            let disk_full = match error {
                super::StoreError::Sled(sled::Error::Io(io))
                | super::StoreError::Log { source: io, .. } => {
                    io.kind() == std::io::ErrorKind::StorageFull
                }
                _ => false,
            };
            return Some((
                format!("{count} lines of this build's log could not be stored: {error}"),
                disk_full,
            ));
        }
        let (kind, message) = self.inner.file.sync_failure()?;
        Some((
            format!(
                "this build's log could not be made durable (build {}): {message}",
                self.inner.build_id
            ),
            kind == std::io::ErrorKind::StorageFull,
        ))
    }

    /// A line from the host itself.
    pub fn system(&self, line: &str) {
        self.write("system", line)
    }

    /// Make every line written so far durable, now (the group commit
    /// would, a moment later): before the record says the build is over.
    pub fn sync_blocking(&self) -> Result<(), super::StoreError> {
        self.inner
            .file
            .sync()
            .map_err(|source| super::StoreError::Log {
                build_id: self.inner.build_id.clone(),
                source,
            })
    }

    /// [`BuildLog::sync_blocking`] off the runtime's threads.
    pub async fn sync(&self) -> Result<(), super::StoreError> {
        let log = self.clone();
        tokio::task::spawn_blocking(move || log.sync_blocking())
            .await
            .map_err(|e| super::StoreError::Log {
                build_id: self.inner.build_id.clone(),
                source: std::io::Error::other(e),
            })?
    }
}

// ---- the files ----

/// Build logs on disk: one file per build, `<store>/logs/<build id>.ndjson`,
/// a JSON [`LogLine`] per line, appended to and fsynced by the group commit.
///
/// Not in sled: sled 0.34 keeps memory for what it has stored, so a server's
/// resident size grew with every log line it ever kept (a line was a key;
/// storing a build's lines in a few big values grew it faster still, since
/// its cache keeps at least one page per shard). Logs are written once, read
/// in order and removed whole, which a file does with no index at all.
#[derive(Debug)]
pub(super) struct LogFiles {
    dir: PathBuf,
}

/// Where a reader of one build's log got to: the last sequence it read
/// and the byte after that line in the file (so the next read does not
/// scan from the start). A log is only ever replaced whole by a new file
/// renamed over it, made while the old one still existed, so a cursor
/// from the old file is told by its inode and starts over (skipping by
/// sequence what it has read).
#[derive(Debug, Clone, Default)]
pub struct LogCursor {
    pub after_seq: u64,
    offset: u64,
    inode: u64,
}

impl LogCursor {
    /// Read the lines numbered above `after_seq`.
    pub fn after(after_seq: u64) -> Self {
        LogCursor {
            after_seq,
            ..Default::default()
        }
    }
}

/// A log file a build appends to.
#[derive(Debug)]
pub(super) struct LogFile {
    file: File,
    /// Where its complete lines end.
    len: Mutex<u64>,
    /// The first fsync that failed. It stays failed: Linux reports a lost
    /// write-back once, so a later fsync that succeeds does not bring back
    /// the lines written before it.
    sync_failed: Mutex<Option<(std::io::ErrorKind, String)>>,
}

impl LogFile {
    /// Append one line. One `write` per line, so a crash tears at most the
    /// last line, which readers skip and the next writer cuts off; a write
    /// that fails (a full disk) is cut off at once, so the next line does
    /// not run on from a torn one.
    pub(super) fn append(&self, line: &LogLine) -> std::io::Result<()> {
        let mut bytes = serde_json::to_vec(line).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        let mut len = self.len.lock().unwrap();
        match (&self.file).write_all(&bytes) {
            Ok(()) => {
                *len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(*len);
                Err(e)
            }
        }
    }

    /// Make what was appended durable; fails from the first failure on.
    pub(super) fn sync(&self) -> std::io::Result<()> {
        let mut failed = self.sync_failed.lock().unwrap();
        if let Some((kind, message)) = &*failed {
            return Err(std::io::Error::new(*kind, message.clone()));
        }
        self.file.sync_data().inspect_err(|e| {
            *failed = Some((e.kind(), e.to_string()));
        })
    }

    /// Why an fsync of this log failed, if one did.
    fn sync_failure(&self) -> Option<(std::io::ErrorKind, String)> {
        self.sync_failed.lock().unwrap().clone()
    }

    /// A log over `file`, whose complete lines end at `len`.
    fn new(file: File, len: u64) -> Self {
        LogFile {
            file,
            len: Mutex::new(len),
            sync_failed: Mutex::new(None),
        }
    }
}

/// A build id is a file name here: only ids Kiln makes (UUIDs) or test
/// names, never a path.
fn checked_file_name(build_id: &str) -> std::io::Result<String> {
    let plain = !build_id.is_empty()
        && build_id.len() <= 128
        && !build_id.starts_with('.')
        && build_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !plain {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{build_id:?} is not a build id"),
        ));
    }
    Ok(format!("{build_id}.ndjson"))
}

/// Write `lines` to `file` as the log stores them, buffered (not synced).
fn write_lines(file: &File, lines: &[LogLine]) -> std::io::Result<()> {
    let mut writer = std::io::BufWriter::new(file);
    for line in lines {
        serde_json::to_writer(&mut writer, line).map_err(std::io::Error::other)?;
        writer.write_all(b"\n")?;
    }
    writer.flush()
}

/// The sequence number a stored line starts with (`{"seq":N,`): enough
/// to skip a line without parsing it.
fn leading_seq(line: &[u8]) -> Option<u64> {
    let digits = line.strip_prefix(b"{\"seq\":")?;
    let end = digits.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

impl LogFiles {
    pub(super) fn open(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(LogFiles { dir })
    }

    fn path(&self, build_id: &str) -> std::io::Result<PathBuf> {
        Ok(self.dir.join(checked_file_name(build_id)?))
    }

    /// Open `build_id`'s log to append to, creating it; the sequence of
    /// its last line (0: none). A line torn by a crash is cut off first.
    pub(super) fn open_for_append(&self, build_id: &str) -> std::io::Result<(LogFile, u64)> {
        let path = self.path(build_id)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)?;
        let (last_seq, complete_len) = self.last_line(&file)?;
        if complete_len < file.metadata()?.len() {
            file.set_len(complete_len)?;
        }
        Ok((LogFile::new(file, complete_len), last_seq))
    }

    /// Append lines to `build_id`'s log outside a build (the note left
    /// where a removed log was); durable when this returns.
    pub(super) fn append(&self, build_id: &str, lines: &[LogLine]) -> std::io::Result<()> {
        let (log, _) = self.open_for_append(build_id)?;
        write_lines(&log.file, lines)?;
        log.sync()
    }

    /// Remove `build_id`'s log (nothing to do when it has none).
    pub(super) fn remove(&self, build_id: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(build_id)?) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn open_existing(&self, build_id: &str) -> std::io::Result<Option<File>> {
        match File::open(self.path(build_id)?) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The sequence of the last complete line of `build_id`'s log (0: none).
    pub(super) fn last_seq(&self, build_id: &str) -> std::io::Result<u64> {
        match self.open_existing(build_id)? {
            Some(file) => Ok(self.last_line(&file)?.0),
            None => Ok(0),
        }
    }

    /// The last complete line's sequence and where complete lines end.
    /// Only the tail is read, unless one line fills it.
    fn last_line(&self, file: &File) -> std::io::Result<(u64, u64)> {
        const TAIL: u64 = 256 * 1024;
        let len = file.metadata()?.len();
        let start = len.saturating_sub(TAIL);
        let mut tail = Vec::with_capacity((len - start) as usize);
        let mut reader = file;
        reader.seek(SeekFrom::Start(start))?;
        reader.take(len - start).read_to_end(&mut tail)?;
        let Some(end) = tail.iter().rposition(|&b| b == b'\n') else {
            return match start {
                0 => Ok((0, 0)),
                _ => self.last_line_by_scanning(file),
            };
        };
        let line_start = match tail[..end].iter().rposition(|&b| b == b'\n') {
            Some(newline) => newline + 1,
            None if start == 0 => 0,
            None => return self.last_line_by_scanning(file),
        };
        let seq = leading_seq(&tail[line_start..end]).unwrap_or(0);
        Ok((seq, start + end as u64 + 1))
    }

    fn last_line_by_scanning(&self, file: &File) -> std::io::Result<(u64, u64)> {
        let mut reader = BufReader::new(file);
        reader.seek(SeekFrom::Start(0))?;
        let (mut last, mut complete, mut line) = (0, 0, Vec::new());
        loop {
            line.clear();
            let read = reader.read_until(b'\n', &mut line)?;
            if read == 0 || line.last() != Some(&b'\n') {
                return Ok((last, complete));
            }
            complete += read as u64;
            last = leading_seq(&line).unwrap_or(last);
        }
    }

    /// Lines of `build_id`'s log numbered above `cursor.after_seq` and at
    /// most `up_to`, at most `limit` of them; the cursor moves past them.
    pub(super) fn read(
        &self,
        build_id: &str,
        cursor: &mut LogCursor,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<LogLine>, super::StoreError> {
        let mut out = Vec::new();
        if cursor.after_seq >= up_to || limit == 0 {
            return Ok(out);
        }
        let io = |source| super::StoreError::Log {
            build_id: build_id.to_string(),
            source,
        };
        let Some(file) = self.open_existing(build_id).map_err(io)? else {
            return Ok(out);
        };
        let metadata = file.metadata().map_err(io)?;
        let (inode, len) = (
            std::os::unix::fs::MetadataExt::ino(&metadata),
            metadata.len(),
        );
        if cursor.inode != inode || cursor.offset > len {
            cursor.inode = inode;
            cursor.offset = 0;
        }
        let mut reader = BufReader::new(file);
        reader.seek(SeekFrom::Start(cursor.offset)).map_err(io)?;
        let mut line = Vec::new();
        let mut offset = cursor.offset;
        while out.len() < limit {
            line.clear();
            let read = reader.read_until(b'\n', &mut line).map_err(io)?;
            if read == 0 || line.last() != Some(&b'\n') {
                break; // the end, or a line still being written
            }
            let seq = leading_seq(&line);
            if seq.is_some_and(|seq| seq > up_to) {
                break;
            }
            offset += read as u64;
            if seq.is_some_and(|seq| seq <= cursor.after_seq) {
                cursor.offset = offset;
                continue;
            }
            let parsed: LogLine = super::decode(build_id.as_bytes(), &line)?;
            cursor.after_seq = parsed.seq;
            cursor.offset = offset;
            out.push(parsed);
        }
        Ok(out)
    }

    /// Lines and bytes in `build_id`'s log.
    pub(super) fn size(&self, build_id: &str) -> std::io::Result<(u64, u64)> {
        let Some(file) = self.open_existing(build_id)? else {
            return Ok((0, 0));
        };
        let bytes = file.metadata()?.len();
        let mut lines = 0;
        let mut reader = BufReader::new(file);
        loop {
            let buffer = reader.fill_buf()?;
            if buffer.is_empty() {
                return Ok((lines, bytes));
            }
            lines += buffer.iter().filter(|&&b| b == b'\n').count() as u64;
            let consumed = buffer.len();
            reader.consume(consumed);
        }
    }

    /// Write a whole log, replacing any (a log removed but for a note,
    /// the migration from sled): written aside, synced, then renamed, so
    /// a crash leaves the old log or the new, and a reader of the old
    /// one sees its file change (see [`LogCursor`]).
    pub(super) fn write_whole(&self, build_id: &str, lines: &[LogLine]) -> std::io::Result<()> {
        let path = self.path(build_id)?;
        let aside = path.with_extension("ndjson.partial");
        {
            let file = File::create(&aside)?;
            write_lines(&file, lines)?;
            file.sync_data()?;
        }
        std::fs::rename(aside, path)
    }

    /// Make the directory's entries (files created or renamed) durable.
    pub(super) fn sync_dir(&self) -> std::io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{join_key, Store};
    use super::*;

    fn line(seq: u64, text: &str) -> LogLine {
        LogLine {
            seq,
            time: Utc::now(),
            stream: "build".into(),
            line: text.into(),
        }
    }

    fn texts(lines: &[LogLine]) -> Vec<(u64, String)> {
        lines.iter().map(|l| (l.seq, l.line.clone())).collect()
    }

    /// A failed fsync stays failed, even once fsync works again. The fault
    /// is real (the kernel refuses to fsync a pipe, EINVAL); the pipe
    /// stands in for a log file because no real filesystem here can be made
    /// to fail write-back on demand. Then a real file takes the pipe's
    /// descriptor, so the kernel would let the next fsync succeed.
    #[test]
    fn issue_12_a_failed_fsync_stays_failed() {
        use std::os::fd::AsRawFd;
        let (_read, write) = std::io::pipe().unwrap();
        let log = LogFile::new(File::from(std::os::fd::OwnedFd::from(write)), 0);
        assert!(log.sync_failure().is_none());
        let first = log.sync().unwrap_err();
        assert_eq!(first.kind(), std::io::ErrorKind::InvalidInput, "{first}");
        assert_eq!(
            log.sync_failure().map(|(kind, _)| kind),
            Some(std::io::ErrorKind::InvalidInput)
        );
        let dir = tempfile::tempdir().unwrap();
        let real = File::create(dir.path().join("log")).unwrap();
        // SAFETY: both descriptors are open and owned here; dup2 replaces
        // the pipe's end under the log's File with the real file.
        assert!(unsafe { libc::dup2(real.as_raw_fd(), log.file.as_raw_fd()) } >= 0);
        log.file.sync_data().expect("the descriptor now fsyncs");
        let again = log.sync().unwrap_err();
        assert_eq!(again.to_string(), first.to_string());
    }

    #[test]
    fn issue_12_format_1_logs_move_out_of_sled_into_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let db = sled::open(&path).unwrap();
            db.open_tree("meta").unwrap().insert("format", "1").unwrap();
            db.open_tree("orgs").unwrap().insert("acme", "{}").unwrap();
            let logs = db.open_tree("logs").unwrap();
            for (build, count) in [("build-a", 3u64), ("build-b", 300)] {
                for seq in 1..=count {
                    let key = join_key(&[build.as_bytes(), &seq.to_be_bytes()]);
                    let value = serde_json::to_vec(&line(seq, &format!("{build} {seq}"))).unwrap();
                    logs.insert(key, value).unwrap();
                }
            }
            db.flush().unwrap();
        }
        let store = Store::open(&path).unwrap();
        let a = store.log_lines("build-a", 0, u64::MAX, 100).unwrap();
        assert_eq!(
            texts(&a),
            (1..=3)
                .map(|s| (s, format!("build-a {s}")))
                .collect::<Vec<_>>()
        );
        let b = store.log_lines("build-b", 250, u64::MAX, 1000).unwrap();
        assert_eq!(b.len(), 50);
        assert_eq!(b[0].seq, 251);
        assert_eq!(store.last_log_seq("build-b").unwrap(), 300);
        assert!(path.join("logs/build-b.ndjson").is_file());
        drop(store);
        // Opens again as format 2, and sled keeps no log line.
        let store = Store::open(&path).unwrap();
        assert_eq!(store.last_log_seq("build-a").unwrap(), 3);
        assert!(!store
            .inner
            .db
            .tree_names()
            .iter()
            .any(|name| name.as_ref() == b"logs"));
    }

    #[test]
    fn a_line_torn_by_a_crash_is_skipped_then_cut_off_by_the_next_writer() {
        let dir = tempfile::tempdir().unwrap();
        let files = LogFiles::open(dir.path().to_path_buf()).unwrap();
        files
            .append("b1", &[line(1, "one"), line(2, "two")])
            .unwrap();
        let path = dir.path().join("b1.ndjson");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(br#"{"seq":3,"time":"2026-"#).unwrap();
        drop(file);

        let mut cursor = LogCursor::after(0);
        let read = files.read("b1", &mut cursor, u64::MAX, 10).unwrap();
        assert_eq!(texts(&read), [(1, "one".into()), (2, "two".into())]);
        assert_eq!(files.last_seq("b1").unwrap(), 2);

        let (writer, last) = files.open_for_append("b1").unwrap();
        assert_eq!(last, 2);
        writer.append(&line(3, "three")).unwrap();
        let read = files.read("b1", &mut cursor, u64::MAX, 10).unwrap();
        assert_eq!(texts(&read), [(3, "three".into())]);
        assert_eq!(files.size("b1").unwrap().0, 3);
    }

    #[test]
    fn a_cursor_reads_each_line_once_and_starts_over_on_a_rewritten_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lines: Vec<_> = (1..=25).map(|s| line(s, &format!("line {s}"))).collect();
        store.append_log_lines("b2", &lines).unwrap();

        let mut cursor = LogCursor::after(0);
        let mut seen = Vec::new();
        loop {
            let batch = store.read_log("b2", &mut cursor, 20, 7).unwrap();
            if batch.is_empty() {
                break;
            }
            seen.extend(batch.iter().map(|l| l.seq));
        }
        assert_eq!(
            seen,
            (1..=20).collect::<Vec<_>>(),
            "only up to the durable 20"
        );
        assert_eq!(cursor.after_seq, 20);

        // Replaced whole (as retention does): a new file, one note
        // numbered after the old lines; the old cursor finds just that.
        let note = line(26, "removed by retention");
        store.inner.logs.write_whole("b2", &[note]).unwrap();
        let batch = store.read_log("b2", &mut cursor, u64::MAX, 7).unwrap();
        assert_eq!(texts(&batch), [(26, "removed by retention".into())]);
        assert_eq!(store.log_size("b2").unwrap().0, 1);
    }

    #[test]
    fn a_build_id_that_is_not_a_file_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = LogFiles::open(dir.path().join("logs")).unwrap();
        for hostile in ["../escape", "a/b", "", ".hidden", "x\0y"] {
            let error = files.append(hostile, &[line(1, "x")]).unwrap_err();
            assert_eq!(
                error.kind(),
                std::io::ErrorKind::InvalidInput,
                "{hostile:?}"
            );
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "only logs/"
        );
    }
}
