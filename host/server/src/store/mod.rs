//! Durable state in sled: organizations and their tokens, build records,
//! the queue of pending builds, and every build's log.
//!
//! Trees and their keys:
//!
//! | tree | key | value |
//! |---|---|---|
//! | `orgs` | org name | JSON [`Org`] |
//! | `tokens` | sha256 of a token | JSON [`TokenRecord`] |
//! | `token_ids` | token id | sha256 of the token (to revoke by id) |
//! | `builds` | build id (UUIDv7: time-ordered, so new builds go at the end) | JSON [`BuildRecord`] |
//! | `builds_by_org` | org, 0, sequence (big-endian) | build id |
//! | `builds_by_status` | org, 0, status byte, 0, sequence | build id |
//! | `builds_by_name` | org, 0, name, 0, sequence | build id |
//! | `queue` | sequence (big-endian) | build id, for PENDING builds in FIFO order |
//! | `queue_by_org` | org, 0, sequence | build id: the same queue by organization, which the workers take from (turns between organizations) |
//! | `counters` | org, 0, name | next build number for that name (big-endian) |
//! | `contexts` | org, 0, context id | JSON [`ContextRecord`] (the bytes are in `contexts/blobs/<sha256>`) |
//! | `secrets` | org, 0, kind, 0, name | nonce + ChaCha20-Poly1305 sealed value ([`secrets`]) |
//! | `idempotency` | org, 0, operation, 0, key | JSON [`IdempotentAnswer`] |
//! | `projects` | project id | JSON [`ProjectRecord`] |
//! | `projects_by_org` | org, 0, project name | project id (names are unique per organization) |
//! | `builds_by_project` | project id, 0, sequence | build id |
//! | `deliveries` | project id, 0, delivery id | JSON [`DeliveryRecord`]: a push answered, so its repeat builds nothing |
//! | `project_refs` | project id | JSON map of ref → commit: what polling saw last |
//! | `webhooks` | webhook id | JSON [`WebhookRecord`] |
//! | `webhooks_by_org` | org, 0, webhook id | nothing |
//! | `outbound` | webhook id, 0, delivery id | JSON [`OutboundDelivery`] (delivery ids sort by creation) |
//! | `outbound_due` | next attempt (ms, big-endian), 0, webhook id, 0, delivery id | nothing: the deliveries to attempt, soonest first |
//! | `events` | org, 0, event id (big-endian) | JSON `kiln_api::BuildEvent`: the last [`EVENTS_KEPT_PER_ORG`] of each organization, for `GET /v1/events` |
//! | `sessions` | sha256 of a dashboard session id | JSON [`SessionRecord`] |
//!
//! Build logs are files beside the trees, `logs/<build id>.ndjson` (see
//! [`logs`]); format 1 kept them in a `logs` tree, moved out on opening.
//!
//! The secondary indexes of builds are moved after the record changes; a crash in
//! between leaves a stale entry, which [`Store::list_builds`] skips because
//! it re-checks every record it returns.

mod events;
mod logs;
mod projects;
mod records;
pub mod secrets;
mod sessions;
mod webhooks;

pub use events::{StoredEvent, EVENTS_KEPT_PER_ORG};
pub use logs::{truncate_at_char_boundary, BuildLog, LogCursor, LogHub};
pub use sessions::SessionRecord;

pub use records::*;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// Free bytes for unprivileged writers on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let stats = rustix::fs::statvfs(dir)?;
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// Flushes asked for and done, numbered, and the lock that runs one at a time.
#[derive(Default)]
struct Flushes {
    asked: std::sync::atomic::AtomicU64,
    done: std::sync::atomic::AtomicU64,
    lock: tokio::sync::Mutex<()>,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sled(#[from] sled::Error),
    #[error("record {key} is corrupt: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
    #[error("build {0} does not exist")]
    NoSuchBuild(String),
    #[error("build {build_id}'s log: {source}")]
    Log {
        build_id: String,
        source: std::io::Error,
    },
    #[error("the store's log directory: {0}")]
    LogDirectory(std::io::Error),
    #[error("the data directory holds records in format {found}, this Kiln reads format {FORMAT}; use a new --data-dir (or the Kiln that wrote it)")]
    Format { found: String },
}

/// The on-disk format of the records; bumped when an old data directory
/// could not be read correctly. 2: build logs are files (format 1's are
/// moved out of sled when it is opened).
pub const FORMAT: &str = "2";

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The handle every part of the host shares. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    orgs: sled::Tree,
    tokens: sled::Tree,
    token_ids: sled::Tree,
    builds: sled::Tree,
    builds_by_org: sled::Tree,
    builds_by_status: sled::Tree,
    builds_by_name: sled::Tree,
    queue: sled::Tree,
    /// org, sequence → build id: the queue by organization, for taking
    /// turns between organizations.
    queue_by_org: sled::Tree,
    /// How many builds each organization has in `queue_by_org`: the quota
    /// check on every create read it by scanning the queue, which made a
    /// burst of creates quadratic.
    queued_per_org: OrgCounts,
    counters: sled::Tree,
    logs: logs::LogFiles,
    contexts: sled::Tree,
    /// build id → the zip of an inline context (`zippedCode`), from the
    /// build's acceptance until it ends.
    inline_zips: sled::Tree,
    /// org, operation, key → [`IdempotentAnswer`].
    idempotency: sled::Tree,
    projects: sled::Tree,
    projects_by_org: sled::Tree,
    builds_by_project: sled::Tree,
    deliveries: sled::Tree,
    project_refs: sled::Tree,
    webhooks: sled::Tree,
    webhooks_by_org: sled::Tree,
    outbound: sled::Tree,
    outbound_due: sled::Tree,
    events: sled::Tree,
    /// How many events each organization has in `events`: trimming to
    /// [`EVENTS_KEPT_PER_ORG`] had walked 10,000 keys back from the newest
    /// every 256 events, which made appending slower with every event kept.
    events_per_org: OrgCounts,
    /// One trim at a time (a second would walk the keys the first removes).
    events_trim: std::sync::Mutex<()>,
    /// The newest event's id: followers of `GET /v1/events` wait on it.
    event_ids: tokio::sync::watch::Sender<u64>,
    sessions: sled::Tree,
    flushes: Flushes,
    /// Bumped on every revocation, so whatever holds a token for a while
    /// (an open log stream) re-checks it at once.
    revocations: tokio::sync::watch::Sender<u64>,
}

/// The organization a key of a by-organization tree belongs to
/// (`org\0…`, as [`join_key`] makes them).
fn key_org(key: &[u8]) -> String {
    let end = key.iter().position(|b| *b == 0).unwrap_or(key.len());
    String::from_utf8_lossy(&key[..end]).into_owned()
}

/// How many keys each organization has in a by-organization tree, kept in
/// memory so that a check or a trim needs no walk of the tree: counted once
/// when the store opens, then moved by whoever inserts or removes a key.
struct OrgCounts(std::sync::Mutex<HashMap<String, usize>>);

impl OrgCounts {
    /// The counts of `tree`'s keys (`org\0…`).
    fn of(tree: &sled::Tree) -> Result<Self> {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for key in tree.iter().keys() {
            *counts.entry(key_org(&key?)).or_default() += 1;
        }
        Ok(OrgCounts(std::sync::Mutex::new(counts)))
    }

    fn get(&self, org: &str) -> usize {
        self.0.lock().unwrap().get(org).copied().unwrap_or(0)
    }

    /// Move `org`'s count by `change`; answers the new count.
    fn add(&self, org: &str, change: isize) -> usize {
        let mut counts = self.0.lock().unwrap();
        let count = counts.entry(org.to_string()).or_default();
        *count = count.saturating_add_signed(change);
        let now = *count;
        if now == 0 {
            counts.remove(org);
        }
        now
    }

    fn total(&self) -> usize {
        self.0.lock().unwrap().values().sum()
    }
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records always serialize")
}

/// Apply `change` to the JSON record under `key` atomically (sled may run
/// it more than once, on a concurrent change); the record after, or `None`
/// when there is none. A record that does not decode is left as it is.
fn update_json<T: serde::Serialize + serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    key: &str,
    mut change: impl FnMut(&mut T),
) -> Result<Option<T>> {
    let mut decode_error = None;
    let updated = tree.update_and_fetch(key, |old| {
        let old = old?;
        match decode::<T>(key.as_bytes(), old) {
            Ok(mut record) => {
                change(&mut record);
                Some(encode(&record))
            }
            Err(e) => {
                decode_error = Some(e);
                Some(old.to_vec())
            }
        }
    })?;
    if let Some(e) = decode_error {
        return Err(e);
    }
    updated
        .map(|bytes| decode(key.as_bytes(), &bytes))
        .transpose()
}

pub(crate) fn join_key(parts: &[&[u8]]) -> Vec<u8> {
    let mut key = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push(0);
        }
        key.extend_from_slice(part);
    }
    key
}

/// sled's page cache. Its default (1 GiB) let a long-running server's
/// memory grow with every build it stored, never to come back; records
/// and logs are read in order and rarely twice, so a small cache serves.
/// Small it must be: what it holds costs about three times its accounted
/// size (heaptrack: the live heap grew ~6 MB per 200-build burst, all of
/// it log lines and nodes kept by the cache), and at 64 MiB it was still
/// filling after four bursts. At 4 MiB the server's resident size levels
/// off within a few bursts (reliability suite, `--only load --bursts 5`:
/// 88 → 96 → 102 → 103 → 103 MiB); log lines just written, the ones
/// followers read, are still in it.
const CACHE_BYTES: u64 = 4 << 20;

/// How long opening waits for the lock of a store this process has just
/// closed: sled's flusher thread holds it until its next tick.
const LOCK_RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Open sled under `dir`. A lock still held is waited for a little: a
/// handle dropped a moment ago releases it only when its background
/// flusher next wakes (every 200 ms); another process holding it is
/// still refused, once the wait is over.
fn open_db(dir: &Path) -> std::result::Result<sled::Db, sled::Error> {
    let started = std::time::Instant::now();
    loop {
        let opened = sled::Config::new()
            .path(dir)
            .flush_every_ms(Some(200))
            .cache_capacity(CACHE_BYTES)
            .open();
        match opened {
            Err(sled::Error::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.to_string().contains("could not acquire lock") =>
            {
                if started.elapsed() >= LOCK_RELEASE_WAIT {
                    return Err(sled::Error::Io(e));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

impl Store {
    /// Open (or create) the store under `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let db = open_db(dir)?;
        // A data directory from another format is refused up front, not
        // misread record by record.
        let meta = db.open_tree("meta")?;
        let log_files = logs::LogFiles::open(dir.join("logs")).map_err(StoreError::LogDirectory)?;
        if meta.get("format")?.as_deref() == Some(b"1".as_slice()) {
            move_logs_to_files(&db, &log_files)?;
            meta.insert("format", FORMAT)?;
            db.flush()?;
        }
        match meta.get("format")? {
            Some(found) if found.as_ref() != FORMAT.as_bytes() => {
                return Err(StoreError::Format {
                    found: String::from_utf8_lossy(&found).into_owned(),
                })
            }
            Some(_) => {}
            None if db.open_tree("orgs")?.is_empty() => {
                meta.insert("format", FORMAT)?;
            }
            None => {
                return Err(StoreError::Format {
                    found: "0 (before formats were recorded)".into(),
                })
            }
        }
        let queue_by_org = db.open_tree("queue_by_org")?;
        let queued_per_org = OrgCounts::of(&queue_by_org)?;
        let events = db.open_tree("events")?;
        let events_per_org = OrgCounts::of(&events)?;
        let inner = Inner {
            revocations: tokio::sync::watch::Sender::new(0),
            orgs: db.open_tree("orgs")?,
            tokens: db.open_tree("tokens")?,
            token_ids: db.open_tree("token_ids")?,
            builds: db.open_tree("builds")?,
            builds_by_org: db.open_tree("builds_by_org")?,
            builds_by_status: db.open_tree("builds_by_status")?,
            builds_by_name: db.open_tree("builds_by_name")?,
            queue: db.open_tree("queue")?,
            queue_by_org,
            queued_per_org,
            counters: db.open_tree("counters")?,
            logs: log_files,
            contexts: db.open_tree("contexts")?,
            inline_zips: db.open_tree("inline_zips")?,
            idempotency: db.open_tree("idempotency")?,
            projects: db.open_tree("projects")?,
            projects_by_org: db.open_tree("projects_by_org")?,
            builds_by_project: db.open_tree("builds_by_project")?,
            deliveries: db.open_tree("deliveries")?,
            project_refs: db.open_tree("project_refs")?,
            webhooks: db.open_tree("webhooks")?,
            webhooks_by_org: db.open_tree("webhooks_by_org")?,
            outbound: db.open_tree("outbound")?,
            outbound_due: db.open_tree("outbound_due")?,
            events,
            events_per_org,
            events_trim: std::sync::Mutex::new(()),
            event_ids: tokio::sync::watch::Sender::new(0),
            sessions: db.open_tree("sessions")?,
            flushes: Flushes::default(),
            db,
        };
        Ok(Store {
            inner: Arc::new(inner),
        })
    }

    /// The organization secrets, sealed with `key`.
    pub fn secrets(&self, key: &secrets::SecretKey) -> Result<secrets::SecretStore> {
        Ok(secrets::SecretStore::new(
            self.inner.db.open_tree("secrets")?,
            key,
        ))
    }

    /// Make sure everything written so far is on disk.
    ///
    /// One flush runs at a time (sled 0.34's `flush_async` hung when many
    /// ran at once: 40 concurrent creates each flushing stopped every
    /// build), and callers that wait share the next one: a flush that began
    /// after a caller asked covers its writes.
    pub async fn flush(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        let flushes = &self.inner.flushes;
        let ticket = flushes.asked.fetch_add(1, Ordering::SeqCst) + 1;
        let _one_at_a_time = flushes.lock.lock().await;
        if flushes.done.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        let covers = flushes.asked.load(Ordering::SeqCst);
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| StoreError::Sled(sled::Error::Io(std::io::Error::other(e))))??;
        flushes.done.store(covers, Ordering::SeqCst);
        Ok(())
    }

    /// [`flush`](Self::flush), from code that is not async (start-up).
    pub fn flush_blocking(&self) -> Result<()> {
        self.inner.db.flush()?;
        Ok(())
    }

    // ---- organizations and tokens ----

    /// The organization, if it exists.
    pub fn org(&self, name: &str) -> Result<Option<Org>> {
        self.inner
            .orgs
            .get(name)?
            .map(|v| decode(name.as_bytes(), &v))
            .transpose()
    }

    /// Create an organization; false when it already existed.
    pub fn create_org(&self, org: &Org) -> Result<bool> {
        let created = self
            .inner
            .orgs
            .compare_and_swap(&org.name, None as Option<&[u8]>, Some(encode(org)))?
            .is_ok();
        Ok(created)
    }

    /// Replace an existing organization's record (its settings).
    pub fn put_org(&self, org: &Org) -> Result<()> {
        self.inner.orgs.insert(org.name.as_bytes(), encode(org))?;
        Ok(())
    }

    /// Every organization, by name.
    pub fn orgs(&self) -> Result<Vec<Org>> {
        self.inner
            .orgs
            .iter()
            .map(|entry| {
                let (key, value) = entry?;
                decode(&key, &value)
            })
            .collect()
    }

    /// Remember a token (only its hash is stored) as belonging to `org`.
    pub fn add_token(&self, record: &TokenRecord, token: &str) -> Result<()> {
        let hash = token_hash(token);
        self.inner.tokens.insert(&hash, encode(record))?;
        self.inner
            .token_ids
            .insert(record.token_id.as_bytes(), hash)?;
        Ok(())
    }

    /// The token's record, if the token is valid.
    pub fn token(&self, token: &str) -> Result<Option<TokenRecord>> {
        let hash = token_hash(token);
        self.inner
            .tokens
            .get(&hash)?
            .map(|v| decode(b"token", &v))
            .transpose()
    }

    /// Revoke a token of `org` by id; false when there is no such token.
    pub fn revoke_token(&self, org: &str, token_id: &str) -> Result<bool> {
        let Some(hash) = self.inner.token_ids.get(token_id)? else {
            return Ok(false);
        };
        let Some(record) = self.inner.tokens.get(&hash)? else {
            return Ok(false);
        };
        let record: TokenRecord = decode(b"token", &record)?;
        if record.org != org {
            return Ok(false);
        }
        self.inner.tokens.remove(&hash)?;
        self.inner.token_ids.remove(token_id)?;
        self.inner.revocations.send_modify(|count| *count += 1);
        Ok(true)
    }

    /// Changes whenever a token is revoked: holders of a token re-check it
    /// with [`Store::token`].
    pub fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.revocations.subscribe()
    }

    // ---- builds ----

    /// The next build number of `org`'s `name`, taken: a build that needs
    /// its number before it is stored (a project's tags use it) reserves
    /// it, and [`Store::create_build`] keeps it.
    pub fn reserve_number(&self, org: &str, name: &str) -> Result<u64> {
        let counter_key = join_key(&[org.as_bytes(), name.as_bytes()]);
        Ok(self
            .inner
            .counters
            .update_and_fetch(&counter_key, |old| {
                let next = old.map(read_u64).unwrap_or(0) + 1;
                Some(next.to_be_bytes().to_vec())
            })?
            .map(|v| read_u64(&v))
            .unwrap_or(1))
    }

    /// Store a new PENDING build and put it at the end of the queue. Fills
    /// in `number` (per organization and name) unless one was reserved,
    /// and returns the record.
    pub fn create_build(&self, mut record: BuildRecord) -> Result<BuildRecord> {
        if record.number == 0 {
            record.number = self.reserve_number(&record.org, &record.name)?;
        }
        // 1-based, so a sequence of 0 can mean "before everything".
        let seq = self.inner.db.generate_id()? + 1;
        record.seq = seq;
        self.inner
            .builds
            .insert(record.build_id.as_bytes(), encode(&record))?;
        self.inner.builds_by_org.insert(
            join_key(&[record.org.as_bytes(), &seq.to_be_bytes()]),
            record.build_id.as_bytes(),
        )?;
        self.inner.builds_by_status.insert(
            status_key(&record.org, record.status, seq),
            record.build_id.as_bytes(),
        )?;
        self.inner.builds_by_name.insert(
            join_key(&[
                record.org.as_bytes(),
                record.name.as_bytes(),
                &seq.to_be_bytes(),
            ]),
            record.build_id.as_bytes(),
        )?;
        if let Some(project) = &record.project_id {
            self.inner.builds_by_project.insert(
                join_key(&[project.as_bytes(), &seq.to_be_bytes()]),
                record.build_id.as_bytes(),
            )?;
        }
        self.enqueue(&record)?;
        Ok(record)
    }

    /// The build with this id, whatever its organization.
    pub fn build(&self, build_id: &str) -> Result<Option<BuildRecord>> {
        self.inner
            .builds
            .get(build_id)?
            .map(|v| decode(build_id.as_bytes(), &v))
            .transpose()
    }

    /// The build with this id if it belongs to `org`: another organization's
    /// build does not exist for the caller.
    pub fn build_for_org(&self, org: &str, build_id: &str) -> Result<Option<BuildRecord>> {
        Ok(self.build(build_id)?.filter(|b| b.org == org))
    }

    /// Apply `change` to a stored build atomically and return the new record.
    pub fn update_build(
        &self,
        build_id: &str,
        mut change: impl FnMut(&mut BuildRecord),
    ) -> Result<BuildRecord> {
        let mut old_status = None;
        let record = update_json(&self.inner.builds, build_id, |record: &mut BuildRecord| {
            old_status = Some(record.status);
            change(record);
        })?
        .ok_or_else(|| StoreError::NoSuchBuild(build_id.into()))?;
        if let Some(old) = old_status.filter(|old| *old != record.status) {
            self.inner
                .builds_by_status
                .remove(status_key(&record.org, old, record.seq))?;
            self.inner.builds_by_status.insert(
                status_key(&record.org, record.status, record.seq),
                record.build_id.as_bytes(),
            )?;
        }
        Ok(record)
    }

    /// Take the next build off the queue, taking turns between
    /// organizations: the oldest build of the first organization after
    /// `after_org` (in name order, wrapping around) that has one and is not
    /// `held` (e.g. at its running limit). Returns (org, build id).
    ///
    /// Safe to call from several threads without a lock: removing the
    /// `queue_by_org` entry is the claim, and whoever's remove finds it
    /// gone looks again.
    pub fn pop_queued_fair(
        &self,
        after_org: Option<&str>,
        held: impl Fn(&str) -> bool,
    ) -> Result<Option<(String, String)>> {
        let orgs = self.queued_orgs()?;
        let start = after_org.map_or(0, |after| orgs.partition_point(|o| o.as_str() <= after));
        for org in orgs[start..].iter().chain(&orgs[..start]) {
            if held(org) {
                continue;
            }
            let prefix = join_key(&[org.as_bytes(), b""]);
            while let Some((key, build_id)) = self
                .inner
                .queue_by_org
                .scan_prefix(&prefix)
                .next()
                .transpose()?
            {
                if self.inner.queue_by_org.remove(&key)?.is_none() {
                    continue; // another caller took it first
                }
                self.inner.queued_per_org.add(org, -1);
                let seq = &key[key.len() - 8..];
                self.inner.queue.remove(seq)?;
                return Ok(Some((
                    org.clone(),
                    String::from_utf8_lossy(&build_id).into_owned(),
                )));
            }
        }
        Ok(None)
    }

    /// Organizations with queued builds, in name order (one seek each).
    fn queued_orgs(&self) -> Result<Vec<String>> {
        let mut orgs = Vec::new();
        let mut from = Vec::new();
        while let Some(entry) = self.inner.queue_by_org.range(from.clone()..).next() {
            let (key, _) = entry?;
            let org = key_org(&key);
            // Past every `org\0…` key: `\1` sorts after the separator.
            from = [org.as_bytes(), &[1]].concat();
            orgs.push(org);
        }
        Ok(orgs)
    }

    /// How many of `org`'s builds wait in the queue.
    pub fn queued_for_org(&self, org: &str) -> usize {
        self.inner.queued_per_org.get(org)
    }

    /// Put a build on the queue (creation, and restart recovery).
    pub fn enqueue(&self, record: &BuildRecord) -> Result<()> {
        let was_queued = self.inner.queue_by_org.insert(
            join_key(&[record.org.as_bytes(), &record.seq.to_be_bytes()]),
            record.build_id.as_bytes(),
        )?;
        if was_queued.is_none() {
            self.inner.queued_per_org.add(&record.org, 1);
        }
        self.inner
            .queue
            .insert(record.seq.to_be_bytes(), record.build_id.as_bytes())?;
        Ok(())
    }

    /// How many builds wait in the queue (`/metrics`; sled's `len` would
    /// walk the whole tree).
    pub fn queue_len(&self) -> usize {
        self.inner.queued_per_org.total()
    }

    /// Whether the build is waiting in the queue.
    pub fn is_queued(&self, record: &BuildRecord) -> Result<bool> {
        // The tree the workers take from (a data directory from before it
        // existed has its queue in `queue` alone: recovery re-enqueues).
        Ok(self.inner.queue_by_org.contains_key(join_key(&[
            record.org.as_bytes(),
            &record.seq.to_be_bytes(),
        ]))?)
    }

    /// Every build record, in creation order (restart recovery).
    pub fn all_builds(&self) -> impl Iterator<Item = Result<BuildRecord>> + '_ {
        self.inner.builds.iter().map(|entry| {
            let (key, value) = entry?;
            decode(&key, &value)
        })
    }

    /// An organization's builds, newest first, those created before
    /// `before_seq` when given, at most `limit`, filtered by status and name
    /// through their indexes.
    pub fn list_builds(
        &self,
        org: &str,
        filter: &ListFilter,
        limit: usize,
    ) -> Result<Vec<BuildRecord>> {
        let before = filter.before_seq.unwrap_or(u64::MAX);
        let (tree, prefix) = match (&filter.name, filter.status) {
            _ if filter.project_id.is_some() => (
                &self.inner.builds_by_project,
                join_key(&[filter.project_id.as_deref().unwrap_or("").as_bytes(), b""]),
            ),
            (Some(name), _) => (
                &self.inner.builds_by_name,
                join_key(&[org.as_bytes(), name.as_bytes(), b""]),
            ),
            (None, Some(status)) => (
                &self.inner.builds_by_status,
                join_key(&[org.as_bytes(), &[status_byte(status)], b""]),
            ),
            (None, None) => (&self.inner.builds_by_org, join_key(&[org.as_bytes(), b""])),
        };
        let mut start = prefix.clone();
        start.extend_from_slice(&0u64.to_be_bytes());
        let mut end = prefix;
        end.extend_from_slice(&before.to_be_bytes());
        let mut out = Vec::new();
        for entry in tree.range(start..end).rev() {
            let (_, id) = entry?;
            let id = String::from_utf8_lossy(&id).into_owned();
            let Some(record) = self.build(&id)? else {
                continue;
            };
            let matches = record.org == org
                && filter.status.is_none_or(|s| record.status == s)
                && filter.name.as_ref().is_none_or(|n| &record.name == n)
                && filter
                    .project_id
                    .as_ref()
                    .is_none_or(|p| record.project_id.as_ref() == Some(p))
                && filter.branch.as_ref().is_none_or(|b| {
                    record.source.git.as_ref().and_then(|g| g.branch.as_ref()) == Some(b)
                });
            if matches {
                out.push(record);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    // ---- retention (see `crate::gc`) ----

    /// Remove a build's record, its index entries and its log. The build's
    /// number is not reused: the name's counter stays.
    pub fn delete_build(&self, record: &BuildRecord) -> Result<()> {
        let (org, seq) = (record.org.as_bytes(), record.seq.to_be_bytes());
        self.inner.builds_by_org.remove(join_key(&[org, &seq]))?;
        self.inner
            .builds_by_status
            .remove(status_key(&record.org, record.status, record.seq))?;
        self.inner
            .builds_by_name
            .remove(join_key(&[org, record.name.as_bytes(), &seq]))?;
        if let Some(project) = &record.project_id {
            self.inner
                .builds_by_project
                .remove(join_key(&[project.as_bytes(), &seq]))?;
        }
        self.delete_log_lines(&record.build_id)?;
        self.inner.builds.remove(record.build_id.as_bytes())?;
        Ok(())
    }

    /// Lines and bytes a build's log holds in the store.
    pub fn log_size(&self, build_id: &str) -> Result<(u64, u64)> {
        self.inner
            .logs
            .size(build_id)
            .map_err(|source| log_error(build_id, source))
    }

    /// Remove a finished build's log, leaving one system line that says
    /// why (numbered after the removed ones, so a reader resuming where it
    /// stopped sees no line twice), and note the time on the record.
    pub fn remove_log(&self, build_id: &str, why: &str) -> Result<()> {
        let next = self.last_log_seq(build_id)? + 1;
        let now = chrono::Utc::now();
        let note = LogLine {
            seq: next,
            time: now,
            stream: "system".into(),
            line: why.into(),
        };
        // A new file renamed over the old: a reader part-way through the
        // old one notices the change of inode (see `LogCursor`).
        self.inner
            .logs
            .write_whole(build_id, &[note])
            .and_then(|()| self.inner.logs.sync_dir())
            .map_err(|source| log_error(build_id, source))?;
        self.update_build(build_id, |record| record.log_removed_time = Some(now))?;
        Ok(())
    }

    fn delete_log_lines(&self, build_id: &str) -> Result<()> {
        self.inner
            .logs
            .remove(build_id)
            .map_err(|source| log_error(build_id, source))
    }

    /// Every uploaded context: (organization, record).
    pub fn all_contexts(&self) -> impl Iterator<Item = Result<(String, ContextRecord)>> + '_ {
        self.inner.contexts.iter().map(|entry| {
            let (key, value) = entry?;
            let org = key.split(|b| *b == 0).next().unwrap_or_default();
            Ok((
                String::from_utf8_lossy(org).into_owned(),
                decode(&key, &value)?,
            ))
        })
    }

    /// Forget `org`'s uploaded context (its bytes are the caller's to remove).
    pub fn delete_context(&self, org: &str, context_id: &str) -> Result<()> {
        self.inner
            .contexts
            .remove(join_key(&[org.as_bytes(), context_id.as_bytes()]))?;
        Ok(())
    }

    // ---- inline contexts ----

    /// Keep a build's inline context (`zippedCode`) until the build ends;
    /// flushed with its record.
    pub fn put_inline_zip(&self, build_id: &str, zip: &[u8]) -> Result<()> {
        self.inner.inline_zips.insert(build_id, zip)?;
        Ok(())
    }

    /// The inline context kept for a build, if it has one.
    pub fn inline_zip(&self, build_id: &str) -> Result<Option<sled::IVec>> {
        Ok(self.inner.inline_zips.get(build_id)?)
    }

    /// Forget a build's inline context (it ended, or was never stored).
    pub fn remove_inline_zip(&self, build_id: &str) -> Result<()> {
        self.inner.inline_zips.remove(build_id)?;
        Ok(())
    }

    /// The builds that have an inline context kept.
    pub fn inline_zip_owners(&self) -> Result<Vec<String>> {
        self.inner
            .inline_zips
            .iter()
            .keys()
            .map(|key| Ok(String::from_utf8_lossy(&key?).into_owned()))
            .collect()
    }

    /// Kept idempotent answers created before `cutoff`; removed too unless
    /// `dry_run`. Returns how many.
    pub fn prune_idempotent_answers(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
        dry_run: bool,
    ) -> Result<u64> {
        let mut pruned = 0;
        for entry in self.inner.idempotency.iter() {
            let (key, value) = entry?;
            let answer: IdempotentAnswer = decode(&key, &value)?;
            if answer.create_time < cutoff {
                // Only if unchanged: a new answer under the same key stays.
                if dry_run
                    || self
                        .inner
                        .idempotency
                        .compare_and_swap(&key, Some(&value), None::<&[u8]>)?
                        .is_ok()
                {
                    pruned += 1;
                }
            }
        }
        Ok(pruned)
    }

    // ---- uploaded contexts ----

    /// Remember an uploaded context for `org` (again, if it uploaded the same bytes before).
    pub fn put_context(&self, org: &str, record: &ContextRecord) -> Result<()> {
        self.inner.contexts.insert(
            join_key(&[org.as_bytes(), record.context_id.as_bytes()]),
            encode(record),
        )?;
        Ok(())
    }

    /// An uploaded context, if `org` uploaded it.
    pub fn context(&self, org: &str, context_id: &str) -> Result<Option<ContextRecord>> {
        let key = join_key(&[org.as_bytes(), context_id.as_bytes()]);
        self.inner
            .contexts
            .get(&key)?
            .map(|v| decode(&key, &v))
            .transpose()
    }

    // ---- idempotency keys ----

    /// The answer kept for `key` of `org`'s `operation`, if any.
    pub fn idempotent_answer(
        &self,
        org: &str,
        operation: &str,
        key: &str,
    ) -> Result<Option<IdempotentAnswer>> {
        let id = join_key(&[org.as_bytes(), operation.as_bytes(), key.as_bytes()]);
        self.inner
            .idempotency
            .get(&id)?
            .map(|v| decode(&id, &v))
            .transpose()
    }

    /// Keep the answer to `key` of `org`'s `operation`.
    pub fn put_idempotent_answer(
        &self,
        org: &str,
        operation: &str,
        key: &str,
        answer: &IdempotentAnswer,
    ) -> Result<()> {
        let id = join_key(&[org.as_bytes(), operation.as_bytes(), key.as_bytes()]);
        self.inner.idempotency.insert(id, encode(answer))?;
        Ok(())
    }

    // ---- logs ----

    /// Append lines, numbered on from the log's last (1-based, gap-free
    /// per build), to a build's log outside the build's own writer
    /// ([`BuildLog`]); durable when this returns.
    pub fn append_log_lines(&self, build_id: &str, lines: &[LogLine]) -> Result<()> {
        self.inner
            .logs
            .append(build_id, lines)
            .map_err(|source| log_error(build_id, source))
    }

    /// Open a build's log to append to: the file and its last line's
    /// sequence.
    fn open_log_for_append(&self, build_id: &str) -> Result<(logs::LogFile, u64)> {
        self.inner
            .logs
            .open_for_append(build_id)
            .map_err(|source| log_error(build_id, source))
    }

    /// Log lines of a build numbered above `after_seq` and at most
    /// `up_to`, at most `limit` of them.
    pub fn log_lines(
        &self,
        build_id: &str,
        after_seq: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<LogLine>> {
        self.read_log(build_id, &mut LogCursor::after(after_seq), up_to, limit)
    }

    /// [`Store::log_lines`] from where `cursor` got to, moving it on: a
    /// reader that keeps its cursor reads a long log once, not from the
    /// start for every batch.
    pub fn read_log(
        &self,
        build_id: &str,
        cursor: &mut LogCursor,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<LogLine>> {
        self.inner.logs.read(build_id, cursor, up_to, limit)
    }

    /// The sequence number of a build's last log line (0 when it has none).
    pub fn last_log_seq(&self, build_id: &str) -> Result<u64> {
        self.inner
            .logs
            .last_seq(build_id)
            .map_err(|source| log_error(build_id, source))
    }
}

/// What ListBuilds asks for.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub status: Option<BuildStatus>,
    pub name: Option<String>,
    /// Only git builds of this branch (scanned, not indexed).
    pub branch: Option<String>,
    /// Only builds of this project.
    pub project_id: Option<String>,
    /// Only builds created before this sequence (the page token).
    pub before_seq: Option<u64>,
}

fn status_byte(status: BuildStatus) -> u8 {
    match status {
        BuildStatus::Pending => 1,
        BuildStatus::Running => 2,
        BuildStatus::Succeeded => 3,
        BuildStatus::Failed => 4,
        BuildStatus::Cancelled => 5,
    }
}

fn status_key(org: &str, status: BuildStatus, seq: u64) -> Vec<u8> {
    join_key(&[org.as_bytes(), &[status_byte(status)], &seq.to_be_bytes()])
}

fn log_error(build_id: &str, source: std::io::Error) -> StoreError {
    StoreError::Log {
        build_id: build_id.to_string(),
        source,
    }
}

/// Format 1 kept each log line as a key of the `logs` tree (build id, 0,
/// sequence): write each build's lines to its file, then empty the tree.
/// Done again from the start if interrupted: the tree goes only once
/// every file is written and synced.
fn move_logs_to_files(db: &sled::Db, files: &logs::LogFiles) -> Result<()> {
    let tree = db.open_tree("logs")?;
    let mut build: Option<String> = None;
    let mut lines: Vec<LogLine> = Vec::new();
    let write = |build_id: &str, lines: &mut Vec<LogLine>| -> Result<()> {
        let written = files
            .write_whole(build_id, lines)
            .map_err(|source| log_error(build_id, source));
        lines.clear();
        written
    };
    for entry in tree.iter() {
        let (key, value) = entry?;
        let build_id = String::from_utf8_lossy(&key[..key.len().saturating_sub(9)]).into_owned();
        if build.as_deref() != Some(build_id.as_str()) {
            if let Some(done) = build.replace(build_id) {
                write(&done, &mut lines)?;
            }
        }
        lines.push(decode(&key, &value)?);
    }
    if let Some(done) = build {
        write(&done, &mut lines)?;
    }
    files.sync_dir().map_err(StoreError::LogDirectory)?;
    tree.clear()?;
    db.drop_tree("logs")?;
    Ok(())
}

fn read_u64(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_directory_in_another_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        drop(Store::open(&path).unwrap());
        drop(Store::open(&path).unwrap()); // its own format opens again
        {
            let db = sled::open(&path).unwrap();
            db.open_tree("meta").unwrap().insert("format", "9").unwrap();
            db.flush().unwrap();
        }
        let error = Store::open(&path).err().expect("refused");
        assert!(error.to_string().contains("format 9"), "{error}");
    }

    fn queue_build(store: &Store, org: &str, id: &str) {
        store
            .create_build(BuildRecord {
                build_id: id.into(),
                org: org.into(),
                number: 0,
                name: "app".into(),
                status: BuildStatus::Pending,
                source: SourceSummary {
                    kind: "inline-zip".into(),
                    size_bytes: None,
                    format: None,
                    context_id: None,
                    url: None,
                    git: None,
                },
                request: BuildSpec::default(),
                image_refs: Vec::new(),
                digest: None,
                platform_images: Vec::new(),
                metrics: None,
                failure: None,
                wizard: None,
                create_time: chrono::Utc::now(),
                start_time: None,
                finish_time: None,
                seq: 0,
                log_removed_time: None,
                project_id: None,
                trigger: None,
                registry: None,
                profile_used: None,
                attempts: Vec::new(),
                engine: None,
                cache_from: Vec::new(),
                peak_memory_bytes: None,
                attachments: Vec::new(),
            })
            .unwrap();
    }

    /// Organizations take turns in name order, wrapping around, each
    /// oldest first; one whose name begins another's is its own.
    #[test]
    fn the_queue_takes_turns_between_organizations() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for (org, id) in [
            ("ab", "ab-1"),
            ("ab", "ab-2"),
            ("a", "a-1"),
            ("b", "b-1"),
            ("ab", "ab-3"),
        ] {
            queue_build(&store, org, id);
        }
        assert_eq!(store.queued_for_org("ab"), 3);
        assert_eq!(store.queued_for_org("a"), 1);
        let mut last: Option<String> = None;
        let mut order = Vec::new();
        while let Some((org, id)) = store.pop_queued_fair(last.as_deref(), |_| false).unwrap() {
            order.push(id);
            last = Some(org);
        }
        assert_eq!(order, ["a-1", "ab-1", "b-1", "ab-2", "ab-3"]);
        assert_eq!(store.queue_len(), 0);

        // A held organization is passed over, not dropped.
        queue_build(&store, "a", "a-2");
        queue_build(&store, "b", "b-2");
        let (org, id) = store
            .pop_queued_fair(None, |org| org == "a")
            .unwrap()
            .unwrap();
        assert_eq!((org.as_str(), id.as_str()), ("b", "b-2"));
        assert_eq!(store.pop_queued_fair(None, |org| org == "a").unwrap(), None);
        assert_eq!(store.queued_for_org("a"), 1);
    }

    #[test]
    fn threads_taking_from_the_queue_at_once_each_get_a_different_build() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let queued: Vec<String> = (0..400).map(|i| format!("b-{i}")).collect();
        for (i, id) in queued.iter().enumerate() {
            queue_build(&store, ["a", "b", "c"][i % 3], id);
        }
        let taken: Vec<String> = std::thread::scope(|scope| {
            let takers: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let mut mine = Vec::new();
                        while let Some((_, id)) = store.pop_queued_fair(None, |_| false).unwrap() {
                            mine.push(id);
                        }
                        mine
                    })
                })
                .collect();
            takers.into_iter().flat_map(|t| t.join().unwrap()).collect()
        });
        let mut sorted = taken.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), taken.len(), "a build was taken twice");
        let mut expected = queued;
        expected.sort();
        assert_eq!(sorted, expected);
        assert_eq!(store.queue_len(), 0);
        for org in ["a", "b", "c"] {
            assert_eq!(store.queued_for_org(org), 0, "org {org}");
        }
    }

    /// The per-organization counts the quota reads are memory only: a
    /// reopened store counts its queue again, and enqueuing a build that
    /// is already queued (restart recovery) does not count it twice.
    #[test]
    fn queued_counts_are_rebuilt_when_the_store_opens() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            for (org, id) in [("a", "a-1"), ("a", "a-2"), ("b", "b-1")] {
                queue_build(&store, org, id);
            }
            store.pop_queued_fair(None, |org| org == "b").unwrap();
            store.flush_blocking().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.queued_for_org("a"), 1);
        assert_eq!(store.queued_for_org("b"), 1);
        assert_eq!(store.queue_len(), 2);
        let record = store.build("b-1").unwrap().unwrap();
        store.enqueue(&record).unwrap();
        assert_eq!(store.queued_for_org("b"), 1);
    }

    #[test]
    fn inline_zips_outlive_a_reopening_until_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_inline_zip("b-1", b"PK\x03\x04one").unwrap();
            store.put_inline_zip("b-2", b"PK\x03\x04two").unwrap();
            store.flush_blocking().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.inline_zip("b-2").unwrap().unwrap(), b"PK\x03\x04two");
        assert_eq!(store.inline_zip_owners().unwrap(), ["b-1", "b-2"]);
        store.remove_inline_zip("b-1").unwrap();
        assert!(store.inline_zip("b-1").unwrap().is_none());
        assert_eq!(store.inline_zip_owners().unwrap(), ["b-2"]);
    }
}
