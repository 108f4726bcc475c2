//! The queue's workers. Each build runs the same pipeline:
//!
//! 1. stage: the API kept the source's input (an upload linked under
//!    `staging/<id>/`, an inline zip in the store, written there now);
//! 2. **context source** plugin fills a fresh `workspaces/<id>/context/`
//!    (a git checkout starts from the context the repository's last build
//!    kept, see `git::kept`, and writes only what changed);
//! 3. the host applies file modes and finds the Dockerfile;
//! 4. **builder** plugin builds and pushes through the host's engine;
//! 5. a git build's context is kept for the next one; the record gets its
//!    images, digest and metrics — or a classified failure.
//!
//! The queue lives in sled, so PENDING builds survive a restart; RUNNING
//! builds a dead host left behind are closed as `INTERRUPTED`. A build's
//! timeout or cancellation drops its pipeline future, which stops the
//! plugin (wasmtime) and the engine work (the daemon ends a build whose
//! connection closes).

mod failure;
mod pipeline;

pub use failure::hint_for;
pub use pipeline::{
    failure, git_source_options, materialize, staged_archive, staged_file_name, wizard_base_images,
    MaterializeError,
};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::ServerConfig;
use crate::credentials::CredentialStores;
use crate::engine::pool::{EnginePool, EngineSeat, Needs, NoEngine};
use crate::metrics::Metrics;
use crate::plugins::PluginRuntime;
use crate::store::{BuildLog, BuildStatus, Failure, FailureReason, LogHub, Store, StoreError};

/// Shared by the API (to wake workers and cancel) and the workers.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    hub: LogHub,
    runtime: Arc<PluginRuntime>,
    engines: Arc<EnginePool>,
    config: ServerConfig,
    metrics: Arc<Metrics>,
    secrets: CredentialStores,
    /// Where build events go (completion webhooks).
    webhooks: crate::webhooks::Webhooks,
    wake: Notify,
    running: Mutex<HashMap<String, CancellationToken>>,
    /// Why a running build was cancelled, when something other than a
    /// user cancelled it (a newer push superseded it).
    cancel_reasons: Mutex<HashMap<String, Failure>>,
    /// Turns between organizations: running builds per organization, and
    /// the organization whose build started last.
    turns: Mutex<Turns>,
    shutdown: CancellationToken,
    /// CreateBuild calls being answered now; workers give way to them
    /// (`give_way_to_creates`).
    creates_in_flight: AtomicUsize,
    /// Told when the last create in flight has been answered.
    creates_answered: Notify,
    /// When a create was last answered: a burst's creates arrive over
    /// its first milliseconds, and between two of them none may be in
    /// flight (`give_way_to_creates` waits for a quiet spell).
    last_create_answered: Mutex<Option<tokio::time::Instant>>,
}

#[derive(Default)]
struct Turns {
    running: HashMap<String, usize>,
    last_org: Option<String>,
}

/// The longest a worker waits for creates to be answered before it starts
/// its build anyway: under a steady stream of creates there is always one
/// in flight, and builds must still start.
const GIVE_WAY_AT_MOST: Duration = Duration::from_millis(250);

/// How long no create must have been answered or in flight before a
/// worker starts a build. Measured: a burst whose first create was answered
/// before the second arrived started a build 1.6 ms in, and its 200
/// answers took 67 ms instead of 27. Not longer: a lone build waits this
/// long too, and at 20 ms that was most of why a warm rebuild through the
/// API took longer than `docker build` + `docker push` by hand (its queue
/// phase 23.7 ms; 7.5 ms at 5).
const CREATES_QUIET_FOR: Duration = Duration::from_millis(5);

/// What a worker about to start a build does next, giving way to creates
/// ([`Scheduler::give_way_to_creates`]).
#[derive(Debug, PartialEq, Eq)]
enum GiveWay {
    Start,
    /// Until the creates in flight are answered (or the deadline).
    WaitForAnswers,
    /// Creates were answered a moment ago; more of a burst may come.
    LookAgainAt(tokio::time::Instant),
}

/// The give-way rule: start once no create has been in flight or answered
/// for [`CREATES_QUIET_FOR`], or at `deadline` whatever is happening.
fn give_way(
    now: tokio::time::Instant,
    deadline: tokio::time::Instant,
    creates_in_flight: usize,
    last_create_answered: Option<tokio::time::Instant>,
) -> GiveWay {
    if now >= deadline {
        return GiveWay::Start;
    }
    if creates_in_flight > 0 {
        return GiveWay::WaitForAnswers;
    }
    match last_create_answered.map(|answered| answered + CREATES_QUIET_FOR) {
        Some(quiet_from) if quiet_from > now => GiveWay::LookAgainAt(quiet_from.min(deadline)),
        _ => GiveWay::Start,
    }
}

/// Held while a create is answered ([`Scheduler::answering_create`]).
pub struct AnsweringCreate(Arc<Inner>);

impl Drop for AnsweringCreate {
    fn drop(&mut self) {
        *self.0.last_create_answered.lock().unwrap() = Some(tokio::time::Instant::now());
        if self.0.creates_in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.creates_answered.notify_waiters();
        }
    }
}

/// How a build's pipeline ended, before it is written to the record.
enum Outcome {
    Succeeded(pipeline::Built),
    Failed(Failure),
    Cancelled,
}

/// What the scheduler drives builds with.
pub struct Parts {
    pub store: Store,
    pub hub: LogHub,
    pub runtime: Arc<PluginRuntime>,
    /// The engines builds run on.
    pub engines: Arc<EnginePool>,
    pub config: ServerConfig,
    pub metrics: Arc<Metrics>,
    pub secrets: CredentialStores,
    /// Where build events go (completion webhooks).
    pub webhooks: crate::webhooks::Webhooks,
}

impl Scheduler {
    /// Recover what a previous run left, then start the workers.
    pub fn start(parts: Parts) -> Result<Self, StoreError> {
        let Parts {
            store,
            hub,
            runtime,
            engines,
            config,
            metrics,
            secrets,
            webhooks,
        } = parts;
        let scheduler = Scheduler {
            inner: Arc::new(Inner {
                store,
                hub,
                runtime,
                engines,
                config,
                metrics,
                secrets,
                webhooks,
                wake: Notify::new(),
                running: Mutex::new(HashMap::new()),
                cancel_reasons: Mutex::new(HashMap::new()),
                turns: Mutex::default(),
                shutdown: CancellationToken::new(),
                creates_in_flight: Default::default(),
                creates_answered: Notify::new(),
                last_create_answered: Mutex::new(None),
            }),
        };
        scheduler.recover()?;
        // One worker per engine slot: a worker holds its build while it
        // waits for a slot on an engine that can build it.
        for worker in 0..scheduler.inner.engines.total_slots().max(1) {
            let this = scheduler.clone();
            tokio::spawn(async move { this.worker(worker).await });
        }
        Ok(scheduler)
    }

    /// Close builds a dead host left RUNNING; requeue PENDING ones the queue lost.
    fn recover(&self) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let mut interrupted = Vec::new();
        let mut pending = std::collections::HashSet::new();
        for record in store.all_builds() {
            let record = record?;
            match record.status {
                BuildStatus::Running => interrupted.push(record.build_id),
                BuildStatus::Pending => {
                    if !store.is_queued(&record)? {
                        store.enqueue(&record)?;
                    }
                    pending.insert(record.build_id);
                }
                _ => {}
            }
        }
        self.remove_leftovers(&pending);
        for build_id in interrupted {
            let log = BuildLog::open(store, &self.inner.hub, &build_id)?;
            log.system("the host restarted while this build ran; the build was stopped");
            log.sync_blocking()?;
            let failure = pipeline::failure(
                FailureReason::Interrupted,
                "interrupted by host restart",
                None,
            );
            let closed = store.update_build(&build_id, |r| {
                r.status = BuildStatus::Failed;
                r.failure = Some(failure.clone());
                r.finish_time = Some(Utc::now());
            })?;
            // Flushed below, with the record.
            if let Err(e) = self.inner.webhooks.emit(&closed, "build.failed") {
                tracing::error!(build_id, "cannot queue build.failed deliveries: {e}");
            }
            self.inner.hub.finish(&build_id);
            self.inner.metrics.build_closed_at_start();
            tracing::warn!(build_id, "closed a build interrupted by a host restart");
        }
        store.flush_blocking()?;
        Ok(())
    }

    /// Remove what builds a dead host left on disk: every `staging/<id>`,
    /// `workspaces/<id>` and kept inline zip but the inputs of builds still
    /// pending. Runs before the API serves, so nothing is being staged.
    fn remove_leftovers(&self, pending: &std::collections::HashSet<String>) {
        let data_dir = &self.inner.config.data_dir;
        let mut removed = 0;
        for (area, keep) in [("staging", Some(pending)), ("workspaces", None)] {
            let Ok(entries) = std::fs::read_dir(data_dir.join(area)) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if keep.is_some_and(|keep| keep.contains(&name)) {
                    continue;
                }
                match std::fs::remove_dir_all(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) => tracing::warn!("cannot remove {}: {e}", entry.path().display()),
                }
            }
        }
        crate::git::GitFetcher::new(data_dir, self.inner.config.network.clone())
            .remove_interrupted_keeps();
        match self.inner.store.inline_zip_owners() {
            Ok(owners) => {
                for build_id in owners.iter().filter(|id| !pending.contains(*id)) {
                    match self.inner.store.remove_inline_zip(build_id) {
                        Ok(()) => removed += 1,
                        Err(e) => tracing::warn!(build_id, "cannot forget an inline context: {e}"),
                    }
                }
            }
            Err(e) => tracing::warn!("cannot list kept inline contexts: {e}"),
        }
        if removed > 0 {
            tracing::info!(removed, "removed what builds of an earlier run left behind");
        }
    }

    /// Forget a build's kept input: its staged files and its inline zip.
    async fn forget_input(&self, build_id: &str) {
        let paths = pipeline::Paths::new(&self.inner.config.data_dir, build_id);
        let _ = tokio::task::spawn_blocking(move || paths.remove_all()).await;
        if let Err(e) = self.inner.store.remove_inline_zip(build_id) {
            tracing::warn!(build_id, "cannot forget the build's inline context: {e}");
        }
    }

    /// A create is being answered until the guard drops: workers about
    /// to start a build wait for it (see `give_way_to_creates`).
    pub fn answering_create(&self) -> AnsweringCreate {
        self.inner.creates_in_flight.fetch_add(1, Ordering::SeqCst);
        AnsweringCreate(self.inner.clone())
    }

    /// Wait, before starting a build, until no create has been answered
    /// or in flight for [`CREATES_QUIET_FOR`], for at most
    /// [`GIVE_WAY_AT_MOST`]. A burst of 200 creates is answered in tens of
    /// milliseconds when it has the CPU to itself; a build starting
    /// meanwhile (its context, the engine's build, the registry) takes
    /// the same cores and every answer in the burst waits for it. A build
    /// starting that much later costs nothing anyone sees.
    async fn give_way_to_creates(&self) {
        let deadline = tokio::time::Instant::now() + GIVE_WAY_AT_MOST;
        loop {
            let answered = self.inner.creates_answered.notified();
            tokio::pin!(answered);
            answered.as_mut().enable();
            let last_answered = *self.inner.last_create_answered.lock().unwrap();
            match give_way(
                tokio::time::Instant::now(),
                deadline,
                self.inner.creates_in_flight.load(Ordering::SeqCst),
                last_answered,
            ) {
                GiveWay::Start => return,
                GiveWay::WaitForAnswers => {
                    let _ = tokio::time::timeout_at(deadline, answered).await;
                }
                // Another create may come meanwhile: look again then.
                GiveWay::LookAgainAt(then) => tokio::time::sleep_until(then).await,
            }
        }
    }

    /// Tell a worker there is work.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Stop a running build; returns whether one was running. `why`, when
    /// given (a newer push superseded it), is recorded as the failure on
    /// its CANCELLED record.
    pub fn cancel_running(&self, build_id: &str, why: Option<Failure>) -> bool {
        let running = self.inner.running.lock().unwrap();
        let Some(token) = running.get(build_id) else {
            return false;
        };
        if let Some(why) = why {
            self.inner
                .cancel_reasons
                .lock()
                .unwrap()
                .insert(build_id.to_string(), why);
        }
        token.cancel();
        true
    }

    /// How many builds are running now.
    pub fn running_count(&self) -> usize {
        self.inner.running.lock().unwrap().len()
    }

    /// Stop taking new builds and cancel the running ones' futures.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    async fn worker(self, worker: usize) {
        loop {
            // Registered before the queue is read, so a build queued in
            // between still wakes this worker.
            let mut notified = Box::pin(self.inner.wake.notified());
            notified.as_mut().enable();
            if self.inner.shutdown.is_cancelled() {
                return;
            }
            match self.next_build() {
                Ok(Some((org, build_id))) => {
                    // A busy worker must not stay registered: a wake-up
                    // meant for an idle one (a build created now) would
                    // land here and that build would wait for this one.
                    drop(notified);
                    // More may be waiting: let another idle worker look too.
                    self.inner.wake.notify_one();
                    self.give_way_to_creates().await;
                    if let Err(e) = self.run(&build_id).await {
                        tracing::error!(worker, build_id, "build bookkeeping failed: {e}");
                    }
                    self.finished_turn(&org);
                }
                Ok(None) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = self.inner.shutdown.cancelled() => return,
                    }
                }
                Err(e) => {
                    tracing::error!(worker, "cannot read the queue: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// The next build to run: organizations take turns (round-robin, so
    /// one organization's 200 queued builds do not starve another's one),
    /// and one at its running limit waits while others build.
    fn next_build(&self) -> Result<Option<(String, String)>, StoreError> {
        let limit = self.inner.config.max_running_builds_per_org;
        let mut turns = self.inner.turns.lock().unwrap();
        let next = self
            .inner
            .store
            .pop_queued_fair(turns.last_org.as_deref(), |org| {
                limit > 0 && turns.running.get(org).copied().unwrap_or(0) >= limit
            })?;
        if let Some((org, _)) = &next {
            *turns.running.entry(org.clone()).or_default() += 1;
            turns.last_org = Some(org.clone());
        }
        Ok(next)
    }

    /// A build of `org` ended: its slot may go to that organization's next.
    fn finished_turn(&self, org: &str) {
        let mut turns = self.inner.turns.lock().unwrap();
        if let Some(count) = turns.running.get_mut(org) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                turns.running.remove(org);
            }
        }
        drop(turns);
        // A build held back by its organization's limit may start now.
        self.inner.wake.notify_one();
    }

    /// A seat on an engine that can build `build_id`, waiting while every
    /// one is busy or drained; `Err(NoEngine)` inside when every one that
    /// could is unhealthy. `NoSuchBuild` when the record is gone or the
    /// server stops meanwhile.
    async fn seat_for(&self, build_id: &str) -> Result<Result<EngineSeat, NoEngine>, StoreError> {
        let inner = &self.inner;
        let record = match inner.store.build(build_id) {
            Ok(Some(record)) => record,
            Ok(None) | Err(StoreError::NoSuchBuild(_)) => {
                return Err(StoreError::NoSuchBuild(build_id.to_string()))
            }
            Err(e) => return Err(e),
        };
        let needs = Needs {
            build_id: build_id.to_string(),
            // A multi-platform build's first platform; the others find
            // their seats as it runs (`EngineSeat::try_beside`).
            platform: record
                .request
                .platform
                .clone()
                .or_else(|| record.request.platforms.first().cloned()),
            profile: Some(record.request.profile.clone()).filter(|p| !p.is_empty()),
            builder: record.request.builder.clone(),
            secrets: !record.request.secrets.is_empty(),
            affinity_key: affinity_key(&record),
        };
        let acquired = tokio::select! {
            acquired = inner.engines.acquire(&needs, None) => acquired,
            _ = inner.shutdown.cancelled() => {
                return Err(StoreError::NoSuchBuild(build_id.to_string()))
            }
        };
        Ok(acquired.map(|lease| EngineSeat::new(inner.engines.clone(), needs, lease)))
    }

    /// Run a build's pipeline under its time limit, until it ends or is
    /// cancelled.
    async fn run_pipeline(
        &self,
        job: pipeline::Pipeline<'_>,
        timeout: Duration,
        token: &CancellationToken,
    ) -> Outcome {
        tokio::select! {
            result = tokio::time::timeout(timeout, job.run()) => match result {
                Ok(Ok(built)) => Outcome::Succeeded(built),
                Ok(Err(failure)) => Outcome::Failed(failure),
                Err(_) => Outcome::Failed(pipeline::failure(
                    FailureReason::Timeout,
                    format!("the build exceeded its time limit of {} s", timeout.as_secs()),
                    None,
                )),
            },
            _ = token.cancelled() => Outcome::Cancelled,
        }
    }

    async fn run(&self, build_id: &str) -> Result<(), StoreError> {
        let inner = &self.inner;
        let seat = match self.seat_for(build_id).await {
            Ok(seat) => seat,
            // Gone meanwhile, or the server stops: the queue's recovery
            // finds a pending build again at the next start.
            Err(StoreError::NoSuchBuild(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let engine_name = seat.as_ref().ok().map(EngineSeat::name);
        // Register the cancel token before the record says RUNNING, so a
        // cancel that sees RUNNING always finds the token.
        let token = inner.shutdown.child_token();
        inner
            .running
            .lock()
            .unwrap()
            .insert(build_id.to_string(), token.clone());
        let started = inner.store.update_build(build_id, |r| {
            if r.status == BuildStatus::Pending {
                r.status = BuildStatus::Running;
                r.start_time = Some(Utc::now());
                r.engine = engine_name.clone();
            }
        });
        let record = match started {
            Ok(record) if record.status == BuildStatus::Running => record,
            other => {
                // Cancelled while queued, or gone: what was kept for it goes.
                inner.running.lock().unwrap().remove(build_id);
                self.forget_input(build_id).await;
                return match other {
                    Err(StoreError::NoSuchBuild(_)) => Ok(()),
                    Err(e) => Err(e),
                    Ok(_) => Ok(()),
                };
            }
        };
        // RUNNING is durable before the build shows anything (its log is
        // files, whose commits do not flush the records): a host killed
        // from here on closes it INTERRUPTED at restart instead of running
        // it again from the start. The build.started deliveries, queued
        // first, are made durable by the same flush.
        if let Err(e) = inner.webhooks.emit(&record, "build.started") {
            tracing::error!(build_id, "cannot queue build.started deliveries: {e}");
        }
        inner.store.flush().await?;
        let log = BuildLog::open(&inner.store, &inner.hub, build_id)?;
        log.system(&format!(
            "build {} #{} of {} started (builder {}{})",
            record.build_id,
            record.number,
            record.name,
            record.request.builder,
            match &engine_name {
                Some(engine) => format!(", engine {engine}"),
                None => String::new(),
            }
        ));
        let started = Instant::now();
        let timeout = match record.request.timeout_secs {
            0 => inner.config.default_build_timeout,
            secs => Duration::from_secs(secs),
        };
        let paths = pipeline::Paths::new(&inner.config.data_dir, build_id);
        let phases = Arc::new(crate::capabilities::PhaseClock::default());
        let outcome = match &seat {
            Ok(seat) => {
                let job = pipeline::Pipeline {
                    runtime: &inner.runtime,
                    engine: seat,
                    config: &inner.config,
                    log: &log,
                    record: &record,
                    paths: &paths,
                    metrics: &inner.metrics,
                    secrets: &inner.secrets,
                    store: &inner.store,
                    phases: &phases,
                };
                self.run_pipeline(job, timeout, &token).await
            }
            // Every engine that could build it is unhealthy: it fails now,
            // saying which and why, rather than waiting on engines that
            // may not come back.
            Err(none) => Outcome::Failed(pipeline::failure(
                FailureReason::EngineError,
                none.to_string(),
                None,
            )),
        };
        if let (Outcome::Succeeded(_), Ok(seat)) = (&outcome, &seat) {
            seat.remember();
        }
        drop(seat);
        let ended = Instant::now();
        let duration_ms = ended.duration_since(started).as_millis() as u64;
        let queued_ms = record.start_time.map_or(0, |start| {
            (start - record.create_time).num_milliseconds().max(0) as u64
        });
        let phases = phases.phases(queued_ms, started, ended);
        // A build whose log lost lines did not do what its record would
        // say: it fails, saying why, and nothing else is affected. The
        // lines so far are synced first, so a failing fsync counts too
        // (the file remembers it).
        let _ = log.sync().await;
        let outcome = match (outcome, log.lost_lines()) {
            (Outcome::Succeeded(_), Some((message, disk_full))) => {
                let reason = match disk_full {
                    true => FailureReason::DiskFull,
                    false => FailureReason::Internal,
                };
                Outcome::Failed(pipeline::failure(reason, message, None))
            }
            (outcome, _) => outcome,
        };
        // Its files go before the record says the build is over: a client
        // that starts another build then finds the space free again.
        self.forget_input(build_id).await;
        let cancel_reason = inner.cancel_reasons.lock().unwrap().remove(build_id);
        match &outcome {
            Outcome::Succeeded(built) => log.system(&format!(
                "build succeeded in {:.1}s: {} {}",
                duration_ms as f64 / 1000.0,
                built.image_refs.join(", "),
                built.digest
            )),
            Outcome::Failed(failure) => log.system(&format!(
                "build failed ({}): {}",
                failure.reason,
                failure.message.lines().next().unwrap_or("")
            )),
            Outcome::Cancelled => match &cancel_reason {
                Some(why) => log.system(&format!(
                    "build cancelled ({}): {}",
                    why.reason, why.message
                )),
                None => log.system("build cancelled"),
            },
        }
        // The log is durable before the record says the build is over:
        // readers take a finished record to mean the whole log is there.
        // If it cannot be, the record still ends (a build left RUNNING
        // would hold its slot until a restart); only the line above may be
        // lost, every earlier failure having failed the build.
        if let Err(e) = log.sync().await {
            tracing::error!(build_id, "the build's last log line may be lost: {e}");
        }
        // The counters move before the record says the build is over: a
        // client that sees it finished and then scrapes /metrics finds it
        // counted and no longer running. (A cancel arriving in between finds
        // no token; there is nothing left to stop.)
        let final_status = match &outcome {
            Outcome::Succeeded(_) => BuildStatus::Succeeded,
            Outcome::Failed(_) => BuildStatus::Failed,
            Outcome::Cancelled => BuildStatus::Cancelled,
        };
        inner
            .metrics
            .build_finished(final_status, started.elapsed());
        inner.running.lock().unwrap().remove(build_id);
        let finished = inner.store.update_build(build_id, |r| {
            r.finish_time = Some(Utc::now());
            let mut metrics = crate::store::Metrics {
                duration_ms,
                phases: Some(phases),
                ..Default::default()
            };
            match &outcome {
                Outcome::Succeeded(built) => {
                    r.status = BuildStatus::Succeeded;
                    r.image_refs = built.image_refs.clone();
                    r.digest = Some(built.digest.clone());
                    metrics.image_size_bytes = Some(built.size_bytes);
                    metrics.layer_count = Some(built.layer_count);
                    metrics.cached_steps = built.cached_steps;
                    metrics.total_steps = built.total_steps;
                    metrics.cache_used = built.cached_steps > 0;
                }
                Outcome::Failed(failure) => {
                    r.status = BuildStatus::Failed;
                    let mut failure = failure.clone();
                    failure.message = log.redact(&failure.message);
                    r.failure = Some(failure);
                }
                Outcome::Cancelled => {
                    r.status = BuildStatus::Cancelled;
                    r.failure = cancel_reason.clone();
                }
            }
            r.metrics = Some(metrics);
        })?;
        let event = match final_status {
            BuildStatus::Succeeded => "build.succeeded",
            BuildStatus::Cancelled => "build.cancelled",
            _ => "build.failed",
        };
        // Queued before the flush that makes the record final: the event
        // is as durable as the build's end.
        if let Err(e) = inner.webhooks.emit(&finished, event) {
            tracing::error!(build_id, "cannot queue {event} deliveries: {e}");
        }
        inner.store.flush().await?;
        inner.hub.finish(build_id);
        crate::memory::note_activity();
        Ok(())
    }
}

/// Builds with the same key share a warm cache on the engine that built
/// the last of them: a git build's repository and directory (whatever the
/// image is called), else the organization's image name.
fn affinity_key(record: &crate::store::BuildRecord) -> String {
    match &record.source.git {
        Some(git) => format!("{}\n{}\n{}", record.org, git.url, git.context_dir),
        None => format!("{}\n{}", record.org, record.name),
    }
}

/// Where a build's files live under the data directory.
pub fn staging_dir(data_dir: &std::path::Path, build_id: &str) -> PathBuf {
    data_dir.join("staging").join(build_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12: a worker starts its build only once creates have been
    /// quiet for a moment (a burst's creates arrive over milliseconds, with
    /// gaps when none is in flight), and at the deadline in any case.
    #[test]
    fn issue_12_workers_give_way_until_creates_are_quiet_but_not_past_the_deadline() {
        let now = tokio::time::Instant::now();
        let deadline = now + GIVE_WAY_AT_MOST;
        let ms = Duration::from_millis;
        // No create since the server started, or none for a while: go.
        assert_eq!(give_way(now, deadline, 0, None), GiveWay::Start);
        assert_eq!(
            give_way(now, deadline, 0, Some(now - CREATES_QUIET_FOR)),
            GiveWay::Start
        );
        // Creates being answered: wait for them.
        assert_eq!(
            give_way(now, deadline, 3, Some(now)),
            GiveWay::WaitForAnswers
        );
        // One answered 2 ms ago, none in flight: a gap in a burst, perhaps.
        let answered = now - ms(2);
        assert_eq!(
            give_way(now, deadline, 0, Some(answered)),
            GiveWay::LookAgainAt(answered + CREATES_QUIET_FOR)
        );
        // Never past the deadline, however busy.
        assert_eq!(
            give_way(deadline - ms(1), deadline, 0, Some(deadline - ms(2))),
            GiveWay::LookAgainAt(deadline)
        );
        assert_eq!(
            give_way(deadline, deadline, 7, Some(deadline)),
            GiveWay::Start
        );
    }
}
