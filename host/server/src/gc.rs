//! Garbage collection by the operator's `[retention]` rules
//! ([`RetentionPolicy`]): what a server that runs for months would
//! otherwise keep forever.
//!
//! | kind | what goes | rule |
//! |---|---|---|
//! | `record` | a finished build's record and log | finished more than `record_days` ago, or more than `records_per_name` newer finished builds of its organization and name |
//! | `log` | a kept build's log lines (one line says why) | finished more than `log_days` ago |
//! | `context` | an uploaded context and its bytes | no kept build refers to it, uploaded more than `unreferenced_context_hours` ago |
//! | `idempotencyAnswer` | an answer kept for an `Idempotency-Key` | older than the 24 hours keys are honoured |
//! | `pushDelivery` | a project's push delivery, kept so a redelivery builds nothing | older than 7 days |
//! | `webhookDelivery` | a completion webhook's delivery that succeeded or was given up | older than 7 days |
//! | `dashboardSession` | a dashboard sign-in session | expired (12 hours after sign-in) |
//! | `leftover` | `staging/<id>`, `workspaces/<id>` and partial uploads no live build owns | untouched for an hour |
//! | `gitMirror` | a git mirror | no fetch for `git_mirror_idle_days` |
//! | `pluginCache` | compiled plugin artifacts | no loaded plugin uses them |
//! | `engineBuildCache` | the Docker Engine's build cache, least recently used first (BuildKit's order) | over `engine_build_cache_mib` |
//!
//! Pending and running builds, and what they use, are never touched. One
//! collection runs at a time, in the background every
//! `interval_minutes` and on `POST /v1/gc` (`kiln admin gc [--dry-run]`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, TimeDelta, Utc};
use kiln_api::{GcItem, GcReport, GcTotal};
use tokio_util::sync::CancellationToken;

use crate::config::{RetentionPolicy, ServerConfig};
use crate::engine::DockerEngine;
use crate::git::GitFetcher;
use crate::metrics::Metrics;
use crate::plugins::PluginRuntime;
use crate::store::{Store, StoreError, DELIVERY_KEEP, IDEMPOTENT_ANSWER_KEEP};

/// Every kind a report totals, in the order they are collected.
pub const KINDS: [&str; 11] = [
    "record",
    "log",
    "context",
    "idempotencyAnswer",
    "pushDelivery",
    "webhookDelivery",
    "dashboardSession",
    "leftover",
    "gitMirror",
    "pluginCache",
    "engineBuildCache",
];

/// How long a directory or file nobody owns must sit untouched before it
/// counts as a leftover: long enough for a build being created (staged
/// before its record is stored) or an upload being renamed into place.
const LEFTOVER_AGE: Duration = Duration::from_secs(60 * 60);

/// Runs collections; shared by the background loop and the API.
pub struct Collector {
    store: Store,
    data_dir: PathBuf,
    policy: RetentionPolicy,
    runtime: Arc<PluginRuntime>,
    git: GitFetcher,
    /// The engines whose build caches are kept under budget, by name.
    engines: Vec<(String, DockerEngine)>,
    metrics: Arc<Metrics>,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Collector {
    pub fn new(
        store: Store,
        config: &ServerConfig,
        runtime: Arc<PluginRuntime>,
        metrics: Arc<Metrics>,
        engines: Vec<(String, DockerEngine)>,
    ) -> Self {
        Collector {
            store,
            data_dir: config.data_dir.clone(),
            policy: config.retention.clone(),
            runtime,
            git: GitFetcher::new(&config.data_dir, config.network.clone()),
            engines,
            metrics,
            one_at_a_time: tokio::sync::Mutex::new(()),
        }
    }

    /// Collect every `interval_minutes` (the first a minute after start,
    /// so start-up is not slowed) until `stop`; nothing with an interval of 0.
    pub fn start_background(self: &Arc<Self>, stop: CancellationToken) {
        if self.policy.interval_minutes == 0 {
            return;
        }
        let this = self.clone();
        let every = Duration::from_secs(this.policy.interval_minutes.saturating_mul(60));
        tokio::spawn(async move {
            let mut next = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {}
                    _ = stop.cancelled() => return,
                }
                let report = this.run(false).await;
                tracing::info!(
                    removed = report.totals.iter().map(|t| t.count).sum::<u64>(),
                    freed_bytes = report.totals.iter().map(|t| t.bytes).sum::<u64>(),
                    errors = report.errors.len(),
                    "garbage collection ran"
                );
                next = tokio::time::Instant::now() + every;
            }
        });
    }

    /// One collection; `dry_run` removes nothing and reports what would go.
    pub async fn run(self: &Arc<Self>, dry_run: bool) -> GcReport {
        let _one = self.one_at_a_time.lock().await;
        let this = self.clone();
        let mut sweep = tokio::task::spawn_blocking(move || this.sweep(dry_run, Utc::now()))
            .await
            .unwrap_or_else(|e| {
                let mut sweep = Sweep::new(dry_run, &self.data_dir);
                sweep.error(format!("garbage collection stopped: {e}"));
                sweep
            });
        self.engine_build_cache(&mut sweep).await;
        let report = sweep.finish();
        if !dry_run {
            self.metrics.gc_ran(&report);
        }
        report
    }

    /// The collection of everything on this host's disk, blocking; `now`
    /// is when it runs (the engine's build cache is [`Collector::run`]'s).
    pub fn collect(&self, dry_run: bool, now: DateTime<Utc>) -> GcReport {
        self.sweep(dry_run, now).finish()
    }

    fn sweep(&self, dry_run: bool, now: DateTime<Utc>) -> Sweep {
        let mut sweep = Sweep::new(dry_run, &self.data_dir);
        let mut live = Live::default();
        // What is live is known only when every record was read: without
        // it nothing that live builds might use is removed.
        match self.builds(&mut sweep, &mut live, now) {
            Ok(()) => {
                if let Err(e) = self.contexts(&mut sweep, &live, now) {
                    sweep.error(format!("uploaded contexts: {e}"));
                }
                self.leftovers(&mut sweep, &live, now);
            }
            Err(e) => sweep.error(format!("builds: {e}")),
        }
        match self
            .store
            .prune_idempotent_answers(now - IDEMPOTENT_ANSWER_KEEP, dry_run)
        {
            Ok(count) => sweep.count("idempotencyAnswer", count),
            Err(e) => sweep.error(format!("idempotency answers: {e}")),
        }
        match self.store.prune_deliveries(now - DELIVERY_KEEP, dry_run) {
            Ok(count) => sweep.count("pushDelivery", count),
            Err(e) => sweep.error(format!("push deliveries: {e}")),
        }
        match self.store.prune_outbound(now - DELIVERY_KEEP, dry_run) {
            Ok(count) => sweep.count("webhookDelivery", count),
            Err(e) => sweep.error(format!("webhook deliveries: {e}")),
        }
        match self.store.prune_sessions(dry_run) {
            Ok(count) => sweep.count("dashboardSession", count as u64),
            Err(e) => sweep.error(format!("dashboard sessions: {e}")),
        }
        self.git_mirrors(&mut sweep, now);
        for path in self.runtime.stale_cache_files() {
            sweep.remove_path("pluginCache", &path, "no loaded plugin uses it");
        }
        if !dry_run {
            if let Err(e) = self.store.flush_blocking() {
                sweep.error(format!("cannot flush the store: {e}"));
            }
        }
        sweep
    }

    /// Prune the engine's build cache to its budget (or, dry, say how much
    /// is over it). Runs beside builds: BuildKit keeps what they use.
    async fn engine_build_cache(&self, sweep: &mut Sweep) {
        let budget_mib = self.policy.engine_build_cache_mib;
        if budget_mib == 0 {
            return;
        }
        let budget = budget_mib.saturating_mul(1 << 20);
        for (name, engine) in &self.engines {
            let freed = if sweep.dry_run {
                engine
                    .build_cache_usage()
                    .await
                    .map(|usage| usage.bytes.saturating_sub(budget))
            } else {
                engine.prune_build_cache(budget).await
            };
            // One engine's cache is "build cache", as before there were
            // pools; in a pool each says whose it is.
            let item = match self.engines.len() {
                1 => "build cache".to_string(),
                _ => format!("build cache of engine {name}"),
            };
            match freed {
                Ok(0) => {}
                Ok(bytes) => sweep.removed(
                    "engineBuildCache",
                    item,
                    bytes,
                    format!(
                        "the engine's build cache is over {budget_mib} MiB (retention.engine_build_cache_mib); the least recently used goes first"
                    ),
                ),
                Err(e) => sweep.error(e.to_string()),
            }
        }
    }

    /// Records and logs; notes what live builds and kept records use.
    fn builds(
        &self,
        sweep: &mut Sweep,
        live: &mut Live,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let policy = &self.policy;
        let mut finished: HashMap<(String, String), Vec<Finished>> = HashMap::new();
        for record in self.store.all_builds() {
            let record = record?;
            let context = record.source.context_id.clone();
            let Some(finish_time) = record.finish_time.filter(|_| record.status.is_finished())
            else {
                live.builds.insert(record.build_id);
                live.contexts.extend(context);
                continue;
            };
            finished
                .entry((record.org, record.name))
                .or_default()
                .push(Finished {
                    seq: record.seq,
                    build_id: record.build_id,
                    finish_time,
                    log_removed: record.log_removed_time.is_some(),
                    context,
                });
        }
        let record_cutoff = days_before(now, policy.record_days);
        let log_cutoff = days_before(now, policy.log_days);
        for ((org, name), mut builds) in finished {
            builds.sort_by_key(|b| std::cmp::Reverse(b.seq));
            for (newer, build) in builds.into_iter().enumerate() {
                let reason = if policy.records_per_name > 0
                    && newer as u64 >= policy.records_per_name
                {
                    Some(format!(
                        "{newer} newer finished builds of {org}/{name} (retention.records_per_name = {})",
                        policy.records_per_name
                    ))
                } else if record_cutoff.is_some_and(|cutoff| build.finish_time < cutoff) {
                    Some(format!(
                        "finished more than {} days ago (retention.record_days)",
                        policy.record_days
                    ))
                } else {
                    None
                };
                if let Some(reason) = reason {
                    let (_, log_bytes) = self.store.log_size(&build.build_id)?;
                    if !sweep.dry_run {
                        match self.store.build(&build.build_id)? {
                            Some(record) => self.store.delete_build(&record)?,
                            None => continue,
                        }
                    }
                    sweep.removed("record", build.build_id, log_bytes, reason);
                    continue;
                }
                live.contexts.extend(build.context);
                if !build.log_removed && log_cutoff.is_some_and(|cutoff| build.finish_time < cutoff)
                {
                    let (_, bytes) = self.store.log_size(&build.build_id)?;
                    if !sweep.dry_run {
                        self.store.remove_log(
                            &build.build_id,
                            &format!(
                                "this build's log was removed on {} by the server's retention (logs are kept {} days after a build finishes)",
                                now.format("%Y-%m-%d"),
                                policy.log_days
                            ),
                        )?;
                    }
                    sweep.removed(
                        "log",
                        build.build_id,
                        bytes,
                        format!(
                            "finished more than {} days ago (retention.log_days)",
                            policy.log_days
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    /// Uploaded contexts no kept build refers to, then blobs no context
    /// record names, and partial uploads.
    fn contexts(
        &self,
        sweep: &mut Sweep,
        live: &Live,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let hours = self.policy.unreferenced_context_hours;
        let mut kept_blobs = HashSet::new();
        for entry in self.store.all_contexts() {
            let (org, record) = entry?;
            let old = hours > 0
                && record.create_time < now - TimeDelta::hours(hours.min(i64::MAX as u64) as i64);
            if !old || live.contexts.contains(&record.context_id) {
                kept_blobs.insert(record.sha256);
                continue;
            }
            if !sweep.dry_run {
                self.store.delete_context(&org, &record.context_id)?;
            }
            sweep.removed(
                "context",
                format!("{org}/{}", record.context_id),
                0,
                format!("no kept build refers to it, uploaded more than {hours} hours ago (retention.unreferenced_context_hours)"),
            );
        }
        let contexts = self.data_dir.join("contexts");
        let grace = SystemTime::from(now) - LEFTOVER_AGE;
        // A blob is renamed into place just before its record is stored.
        for blob in entries_untouched_since(&contexts.join("blobs"), grace) {
            if !kept_blobs.contains(&file_name(&blob)) {
                sweep.remove_path("context", &blob, "no uploaded context names these bytes");
            }
        }
        for partial in entries_untouched_since(&contexts.join("tmp"), grace) {
            sweep.remove_path("leftover", &partial, "a partial upload");
        }
        Ok(())
    }

    /// Build directories no pending or running build owns.
    fn leftovers(&self, sweep: &mut Sweep, live: &Live, now: DateTime<Utc>) {
        let grace = SystemTime::from(now) - LEFTOVER_AGE;
        for area in ["staging", "workspaces"] {
            for dir in entries_untouched_since(&self.data_dir.join(area), grace) {
                if !live.builds.contains(&file_name(&dir)) {
                    sweep.remove_path("leftover", &dir, "no pending or running build owns it");
                }
            }
        }
    }

    fn git_mirrors(&self, sweep: &mut Sweep, now: DateTime<Utc>) {
        let days = self.policy.git_mirror_idle_days;
        let Some(cutoff) = days_before(now, days) else {
            return;
        };
        let cutoff = SystemTime::from(cutoff);
        for (mirror, used) in self.git.mirrors() {
            if used > cutoff {
                continue;
            }
            // Its kept build contexts go with it (`git::kept`).
            let bytes = dir_size(&mirror) + dir_size(&crate::git::kept::exports_of(&mirror));
            let name = sweep.name_of(&mirror);
            let reason = format!(
                "no build fetched into it for {days} days (retention.git_mirror_idle_days)"
            );
            if sweep.dry_run {
                sweep.removed("gitMirror", name, bytes, reason);
                continue;
            }
            match self.git.remove_mirror_unused_since(&mirror, cutoff) {
                Ok(true) => sweep.removed("gitMirror", name, bytes, reason),
                Ok(false) => {} // used meanwhile
                Err(e) => sweep.error(format!("cannot remove {name}: {e}")),
            }
        }
    }
}

/// What live builds and kept records use, which no rule may remove.
#[derive(Default)]
struct Live {
    /// Pending and running builds.
    builds: HashSet<String>,
    /// Uploaded contexts those and kept records refer to.
    contexts: HashSet<String>,
}

struct Finished {
    seq: u64,
    build_id: String,
    finish_time: DateTime<Utc>,
    log_removed: bool,
    context: Option<String>,
}

/// One collection's tally, becoming its report.
struct Sweep {
    dry_run: bool,
    started: Instant,
    /// Paths are named relative to it.
    data_dir: PathBuf,
    totals: BTreeMap<&'static str, (u64, u64)>,
    items: Vec<GcItem>,
    items_not_listed: u64,
    errors: Vec<String>,
}

impl Sweep {
    fn new(dry_run: bool, data_dir: &Path) -> Self {
        Sweep {
            dry_run,
            started: Instant::now(),
            data_dir: data_dir.to_path_buf(),
            totals: KINDS.iter().map(|kind| (*kind, (0, 0))).collect(),
            items: Vec::new(),
            items_not_listed: 0,
            errors: Vec::new(),
        }
    }

    fn removed(&mut self, kind: &'static str, name: String, bytes: u64, reason: impl Into<String>) {
        let total = self.totals.entry(kind).or_default();
        total.0 += 1;
        total.1 += bytes;
        if self.items.len() < GcReport::MAX_ITEMS {
            self.items.push(GcItem {
                kind: kind.to_string(),
                name,
                bytes,
                reason: reason.into(),
            });
        } else {
            self.items_not_listed += 1;
        }
    }

    /// Things counted but not listed one by one.
    fn count(&mut self, kind: &'static str, count: u64) {
        self.totals.entry(kind).or_default().0 += count;
    }

    /// Remove a file or directory (unless dry) and record it, with its
    /// bytes and its path under the data directory.
    fn remove_path(&mut self, kind: &'static str, path: &Path, reason: &str) {
        let bytes = dir_size(path);
        let name = self.name_of(path);
        if !self.dry_run {
            let removed = match path.is_dir() {
                true => std::fs::remove_dir_all(path),
                false => std::fs::remove_file(path),
            };
            if let Err(e) = removed {
                self.error(format!("cannot remove {name}: {e}"));
                return;
            }
        }
        self.removed(kind, name, bytes, reason);
    }

    /// `path` as reports show it: under the data directory.
    fn name_of(&self, path: &Path) -> String {
        path.strip_prefix(&self.data_dir)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    fn error(&mut self, message: String) {
        tracing::warn!("garbage collection: {message}");
        self.errors.push(message);
    }

    fn finish(self) -> GcReport {
        GcReport {
            dry_run: self.dry_run,
            totals: KINDS
                .iter()
                .map(|kind| {
                    let (count, bytes) = self.totals.get(kind).copied().unwrap_or_default();
                    GcTotal {
                        kind: kind.to_string(),
                        count,
                        bytes,
                    }
                })
                .collect(),
            items: self.items,
            items_not_listed: self.items_not_listed,
            errors: self.errors,
            duration_ms: self.started.elapsed().as_millis() as u64,
        }
    }
}

/// `now` minus `days`, or `None` for 0 (keep forever).
fn days_before(now: DateTime<Utc>, days: u64) -> Option<DateTime<Utc>> {
    (days > 0).then(|| now - TimeDelta::days(days.min(1 << 20) as i64))
}

/// Entries of `dir` last modified before `since`.
fn entries_untouched_since(dir: &Path, since: SystemTime) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            std::fs::symlink_metadata(path)
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified < since)
        })
        .collect()
}

/// The last component of `path`, as text.
fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// Bytes of the files under `path` (links not followed).
pub fn dir_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}
