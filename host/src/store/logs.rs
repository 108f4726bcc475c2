//! Build logs as they are produced: every line is stored before anyone is
//! told about it, and followers are only told *that* lines exist (a watch of
//! the last sequence number), then read them from the store. A slow follower
//! therefore never blocks the build or other followers; it just reads a
//! bigger batch when it gets round to it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio::sync::watch;

use super::{LogLine, Store};

/// Longest line kept; longer ones are cut (and say so).
const MAX_LINE_BYTES: usize = 16 * 1024;

/// Where followers learn that a build's log grew. One channel per build
/// with a writer or a follower.
#[derive(Clone, Default)]
pub struct LogHub {
    channels: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
}

impl LogHub {
    fn sender(&self, build_id: &str, current: u64) -> watch::Sender<u64> {
        let mut channels = self.channels.lock().unwrap();
        channels
            .entry(build_id.to_string())
            .or_insert_with(|| watch::channel(current).0)
            .clone()
    }

    /// Watch a build's last log sequence number. The channel closes when the
    /// build's writer is [`finish`](Self::finish)ed.
    pub fn subscribe(&self, build_id: &str) -> watch::Receiver<u64> {
        self.sender(build_id, 0).subscribe()
    }

    /// The build ended: close its channel so followers drain and stop.
    pub fn finish(&self, build_id: &str) {
        self.channels.lock().unwrap().remove(build_id);
    }

    /// Drop a channel nobody writes to any more (a follower of a finished build).
    pub fn release_if_idle(&self, build_id: &str) {
        let mut channels = self.channels.lock().unwrap();
        if let Some(sender) = channels.get(build_id) {
            if sender.receiver_count() == 0 {
                channels.remove(build_id);
            }
        }
    }
}

/// Appends lines to one build's log. Cheap to clone; all clones share the
/// sequence counter.
#[derive(Clone)]
pub struct BuildLog {
    inner: Arc<BuildLogInner>,
}

struct BuildLogInner {
    store: Store,
    build_id: String,
    next_seq: Mutex<u64>,
    notify: watch::Sender<u64>,
}

impl BuildLog {
    /// A writer for `build_id`, continuing after any lines already stored.
    pub fn open(store: &Store, hub: &LogHub, build_id: &str) -> Result<Self, super::StoreError> {
        let last = store.last_log_seq(build_id)?;
        Ok(BuildLog {
            inner: Arc::new(BuildLogInner {
                store: store.clone(),
                build_id: build_id.to_string(),
                next_seq: Mutex::new(last + 1),
                notify: hub.sender(build_id, last),
            }),
        })
    }

    /// The build this log belongs to.
    pub fn build_id(&self) -> &str {
        &self.inner.build_id
    }

    /// Append a line. `stream` is `system`, `build` or `plugin`.
    pub fn write(&self, stream: &str, line: &str) {
        let mut text = line.trim_end_matches(['\n', '\r']).to_string();
        if text.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
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
            return;
        }
        self.inner.notify.send_replace(entry.seq);
        *next += 1;
    }

    /// A line from the host itself.
    pub fn system(&self, line: &str) {
        self.write("system", line)
    }
}
