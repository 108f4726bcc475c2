//! Build logs as they are produced.
//!
//! A line is stored, then made durable by a group commit (one flush for
//! every line written meanwhile, by any build), and only then announced.
//! Followers learn *that* lines exist — a watch of the build's last durable
//! sequence number — and read them from the store. So a follower never sees
//! a line a crash could take back, a slow follower never blocks the build or
//! other followers (it just reads a bigger batch when it gets round to it),
//! and the flush cost is shared by every line written in the same instant.

use std::collections::HashMap;
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

/// Lines stored but not yet flushed, per build, and the flusher's bell.
#[derive(Default)]
struct GroupCommit {
    pending: Mutex<HashMap<String, (watch::Sender<u64>, u64)>>,
    bell: Arc<Notify>,
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        // Wake the flusher so it sees the hub is gone and ends.
        self.bell.notify_one();
    }
}

impl LogHub {
    /// A hub for `store`; starts its group-commit task on the current runtime.
    pub fn new(store: Store) -> Self {
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
                    .into_values()
                    .collect();
                if batch.is_empty() {
                    // Wait for the next line without keeping the hub alive.
                    drop(commits);
                    notified.await;
                    continue;
                }
                if let Err(e) = store.flush().await {
                    tracing::error!("cannot flush build logs: {e}");
                }
                for (sender, seq) in batch {
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

    fn committed_later(&self, build_id: &str, sender: &watch::Sender<u64>, seq: u64) {
        self.commits
            .pending
            .lock()
            .unwrap()
            .insert(build_id.to_string(), (sender.clone(), seq));
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
    store: Store,
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
        let last = store.last_log_seq(build_id)?;
        Ok(BuildLog {
            inner: Arc::new(BuildLogInner {
                masks: Default::default(),
                store: store.clone(),
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
        if let Err(e) = self
            .inner
            .store
            .append_log(&self.inner.build_id, entry.seq, &entry)
        {
            tracing::error!(build_id = %self.inner.build_id, "cannot store a log line: {e}");
            let mut lost = self.inner.lost.lock().unwrap();
            match &mut *lost {
                Some((_, count)) => *count += 1,
                None => *lost = Some((e, 1)),
            }
            return;
        }
        self.inner
            .hub
            .committed_later(&self.inner.build_id, &self.inner.notify, entry.seq);
        *next += 1;
    }

    /// Whether lines could not be stored: (how many, the first error, and
    /// whether it was the disk being full).
    pub fn lost_lines(&self) -> Option<(u64, String, bool)> {
        let lost = self.inner.lost.lock().unwrap();
        lost.as_ref().map(|(error, count)| {
            let disk_full = matches!(error, super::StoreError::Sled(sled::Error::Io(io)) if io.kind() == std::io::ErrorKind::StorageFull);
            (*count, error.to_string(), disk_full)
        })
    }

    /// A line from the host itself.
    pub fn system(&self, line: &str) {
        self.write("system", line)
    }
}
