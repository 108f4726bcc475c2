//! The engines builds run on (`[[engines]]`): which one takes a build,
//! their health, and draining.
//!
//! A build goes to an engine that can build it (its platform, profile and
//! builder; build secrets only where the daemon is on a local socket), is
//! healthy, is not drained and has a free slot. Among those the one that
//! last built the same image (organization and name, or repository and
//! directory) wins, because its BuildKit cache is warm; else the least
//! loaded. Fairness between organizations is the scheduler's (it decides
//! which build asks next); the pool decides where it runs.
//!
//! Each engine is pinged and inspected every `engine_health_interval`; a
//! build that fails on an engine that then does not answer is the
//! scheduler's `ENGINE_LOST` (see [`EnginePool::confirm_lost`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{DockerEngine, EngineError};
use crate::config::EngineConfig;

/// The pool. Cheap to share (`Arc`).
pub struct EnginePool {
    engines: Vec<Arc<PooledEngine>>,
    /// Affinity key → the engine that last built it.
    last_built: Mutex<HashMap<String, String>>,
    /// A slot came free or an engine came back: waiting builds look again.
    changed: Notify,
}

/// One engine, its limits and what its checks found.
pub struct PooledEngine {
    pub config: EngineConfig,
    /// The only engine, with no platforms listed: it is asked whatever a
    /// build asks (as Kiln did before pools), and the daemon says what it
    /// cannot build.
    any_platform: bool,
    engine: DockerEngine,
    state: Mutex<EngineState>,
}

#[derive(Default)]
struct EngineState {
    health: Option<Result<(), String>>,
    last_checked: Option<DateTime<Utc>>,
    draining: bool,
    running: Vec<String>,
    builds_started: u64,
    facts: super::EngineFacts,
    cache_bytes: Option<u64>,
    /// When the cache size was last read (it is slow to read on an engine
    /// with thousands of cache records: once a minute is enough).
    cache_checked: Option<std::time::Instant>,
}

/// What a build asks of the engine it runs on.
#[derive(Debug, Clone, Default)]
pub struct Needs {
    pub build_id: String,
    /// `os/arch[/variant]`; none: the engine's own.
    pub platform: Option<String>,
    /// The sized profile (none or `auto`: any engine).
    pub profile: Option<String>,
    pub builder: String,
    /// It mounts build secrets (served only over a local socket).
    pub secrets: bool,
    /// Builds with the same key share a warm cache on the engine that
    /// built the last of them.
    pub affinity_key: String,
}

/// Why no engine took a build.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NoEngine {
    /// None of the pool's engines can build it at all (a configuration
    /// the request was not checked against, e.g. after a restart).
    #[error("no engine of this server can build it: {0}")]
    Unable(String),
    /// Those that could are all unhealthy.
    #[error("no engine that can build it is healthy: {0}")]
    Unhealthy(String),
}

/// A slot on an engine, held while a build runs there; dropping it frees
/// the slot.
pub struct EngineLease {
    pool: Arc<EnginePool>,
    engine: Arc<PooledEngine>,
    build_id: String,
}

impl EngineLease {
    pub fn name(&self) -> &str {
        &self.engine.config.name
    }

    pub fn engine(&self) -> &DockerEngine {
        &self.engine.engine
    }
}

impl Drop for EngineLease {
    fn drop(&mut self) {
        let mut state = self.engine.state.lock().unwrap();
        if let Some(at) = state.running.iter().position(|id| *id == self.build_id) {
            state.running.remove(at);
        }
        drop(state);
        self.pool.changed.notify_waiters();
    }
}

/// The engine a running build has: its lease, which may move once to
/// another engine when the first is lost (see the scheduler's
/// `ENGINE_LOST`), or be given back early ([`EngineSeat::release`]).
pub struct EngineSeat {
    pool: Arc<EnginePool>,
    needs: Needs,
    seated: Mutex<Seated>,
}

/// A seat's lease and its engine, which the seat still names after the
/// lease is released.
struct Seated {
    lease: Option<EngineLease>,
    engine: Arc<PooledEngine>,
}

impl EngineSeat {
    pub fn new(pool: Arc<EnginePool>, needs: Needs, lease: EngineLease) -> Self {
        EngineSeat {
            pool,
            needs,
            seated: Mutex::new(Seated {
                engine: lease.engine.clone(),
                lease: Some(lease),
            }),
        }
    }

    /// The engine the build runs on now (or ran on, once released).
    pub fn engine(&self) -> DockerEngine {
        self.seated.lock().unwrap().engine.engine.clone()
    }

    pub fn name(&self) -> String {
        self.seated.lock().unwrap().engine.config.name.clone()
    }

    /// Give the slot back before the build ends: a multi-platform build
    /// whose own platforms are built, waiting for another engine, must not
    /// hold a slot another build may be waiting for in turn.
    pub fn release(&self) {
        let lease = self.seated.lock().unwrap().lease.take();
        drop(lease);
    }

    /// The engine did not answer after the build failed on it: is it
    /// gone? `Some(why)` when it is.
    pub async fn lost(&self) -> Option<String> {
        let name = self.name();
        self.pool.confirm_lost(&name).await
    }

    /// Whether this seat's engine is configured to build for `platform`.
    pub fn builds(&self, platform: &str) -> bool {
        let needs = self.needs_for(platform);
        self.seated.lock().unwrap().engine.can_build(&needs)
    }

    /// A second seat for the same build, for `platform` (one image of a
    /// multi-platform build), on an engine with a slot free now; `None`
    /// when every engine that could take it is busy. It never waits, so
    /// builds holding one seat cannot wait on each other.
    pub fn try_beside(&self, platform: &str) -> Option<EngineSeat> {
        let needs = self.needs_for(platform);
        let lease = self.pool.try_acquire(&needs, None).ok().flatten()?;
        Some(EngineSeat::new(self.pool.clone(), needs, lease))
    }

    /// A second seat for `platform`, waiting for a slot (for a platform
    /// this seat's engine does not build).
    pub async fn beside(&self, platform: &str) -> Result<EngineSeat, NoEngine> {
        let needs = self.needs_for(platform);
        let lease = self.pool.acquire(&needs, None).await?;
        Ok(EngineSeat::new(self.pool.clone(), needs, lease))
    }

    /// This build's needs for one platform: its warm engine is per
    /// platform too.
    fn needs_for(&self, platform: &str) -> Needs {
        let mut needs = self.needs.clone();
        if needs.platform.as_deref() != Some(platform) {
            needs.affinity_key = format!("{}\n{platform}", needs.affinity_key);
            needs.platform = Some(platform.to_string());
        }
        needs
    }

    /// The image was built here: the next build of it goes here when it
    /// can (its cache is warm).
    pub fn remember(&self) {
        self.pool.remember(&self.needs.affinity_key, &self.name());
    }

    /// Move to another engine that can build it (waiting for a slot);
    /// returns its name.
    pub async fn move_elsewhere(&self) -> Result<String, NoEngine> {
        let lost = self.name();
        let lease = self.pool.acquire(&self.needs, Some(&lost)).await?;
        let name = lease.name().to_string();
        // The lost engine's slot is freed as its lease drops here.
        *self.seated.lock().unwrap() = Seated {
            engine: lease.engine.clone(),
            lease: Some(lease),
        };
        Ok(name)
    }
}

impl EnginePool {
    /// The pool of `configs` (checked already); connects lazily.
    pub fn new(configs: &[EngineConfig]) -> Result<Self, EngineError> {
        let alone = configs.len() == 1;
        let engines = configs
            .iter()
            .map(|config| {
                let tls = config.tls.clone().map(Arc::new);
                Ok(Arc::new(PooledEngine {
                    engine: DockerEngine::connect_with(&config.host, tls)?,
                    any_platform: alone && config.platforms.is_empty(),
                    config: config.clone(),
                    state: Mutex::default(),
                }))
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        Ok(EnginePool {
            engines,
            last_built: Mutex::default(),
            changed: Notify::new(),
        })
    }

    /// The engines by name, in configuration order.
    pub fn named_engines(&self) -> Vec<(String, DockerEngine)> {
        self.engines
            .iter()
            .map(|e| (e.config.name.clone(), e.engine.clone()))
            .collect()
    }

    /// Builds the pool runs at once when every engine is up.
    pub fn total_slots(&self) -> usize {
        self.engines
            .iter()
            .map(|e| e.config.max_concurrent_builds)
            .sum()
    }

    /// Whether any engine of the pool is configured to build for
    /// `platform` with `profile` and `builder` (create time: a build
    /// nobody could ever take is refused up front). The error names what
    /// the pool builds.
    pub fn check_buildable(
        &self,
        platform: Option<&str>,
        profile: Option<&str>,
        builder: &str,
    ) -> Result<(), String> {
        let needs = Needs {
            platform: platform.map(str::to_string),
            profile: profile.map(str::to_string),
            builder: builder.to_string(),
            ..Default::default()
        };
        if self.engines.iter().any(|e| e.can_build(&needs)) {
            return Ok(());
        }
        let mut offered = Vec::new();
        for engine in &self.engines {
            offered.push(format!("{} ({})", engine.config.name, engine.offer()));
        }
        let asked = [
            platform.map(|p| format!("platform {p}")),
            profile.map(|p| format!("profile {p}")),
            Some(format!("builder {builder}")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
        Err(format!(
            "no engine of this server builds {asked}; the engines: {}",
            offered.join("; ")
        ))
    }

    /// A slot for `needs` on the best engine, waiting while every one
    /// that could take it is busy or drained. `avoid` names an engine not
    /// to use (the one a retried build was lost on).
    pub async fn acquire(
        self: &Arc<Self>,
        needs: &Needs,
        avoid: Option<&str>,
    ) -> Result<EngineLease, NoEngine> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(lease) = self.try_acquire(needs, avoid)? {
                return Ok(lease);
            }
            changed.await;
        }
    }

    fn try_acquire(
        self: &Arc<Self>,
        needs: &Needs,
        avoid: Option<&str>,
    ) -> Result<Option<EngineLease>, NoEngine> {
        let able: Vec<&Arc<PooledEngine>> = self
            .engines
            .iter()
            .filter(|e| Some(e.config.name.as_str()) != avoid && e.can_build(needs))
            .collect();
        if able.is_empty() {
            let why = match avoid {
                Some(avoided) => format!("the only engine that could is {avoided}"),
                None => {
                    self.check_buildable(
                        needs.platform.as_deref(),
                        needs.profile.as_deref(),
                        &needs.builder,
                    )
                    .err()
                    .unwrap_or_else(|| "build secrets need an engine on a local unix socket".into())
                }
            };
            return Err(NoEngine::Unable(why));
        }
        let unhealthy: Vec<String> = able
            .iter()
            .filter_map(|e| {
                let state = e.state.lock().unwrap();
                match &state.health {
                    Some(Err(error)) => Some(format!("{}: {error}", e.config.name)),
                    _ => None,
                }
            })
            .collect();
        if unhealthy.len() == able.len() {
            return Err(NoEngine::Unhealthy(unhealthy.join("; ")));
        }
        let preferred = self
            .last_built
            .lock()
            .unwrap()
            .get(&needs.affinity_key)
            .cloned();
        let mut best: Option<(&Arc<PooledEngine>, Rank)> = None;
        for engine in able {
            let state = engine.state.lock().unwrap();
            let usable = !state.draining
                && !matches!(state.health, Some(Err(_)))
                && state.running.len() < engine.config.max_concurrent_builds;
            if !usable {
                continue;
            }
            // Warm cache first, then the lowest share of its slots in use
            // (in thousandths), then the fewest builds given so far (so
            // an idle pool takes turns).
            let warm = preferred.as_deref() == Some(engine.config.name.as_str());
            let load =
                (state.running.len() as u64 * 1000) / engine.config.max_concurrent_builds as u64;
            let rank = (!warm, load, state.builds_started as usize);
            if best.as_ref().is_none_or(|(_, r)| rank < *r) {
                best = Some((engine, rank));
            }
        }
        let Some((engine, _)) = best else {
            return Ok(None);
        };
        let mut state = engine.state.lock().unwrap();
        // Checked again under the lock: another build may have taken the
        // last slot between the scan and here.
        if state.draining || state.running.len() >= engine.config.max_concurrent_builds {
            return Ok(None);
        }
        state.running.push(needs.build_id.clone());
        state.builds_started += 1;
        Ok(Some(EngineLease {
            pool: self.clone(),
            engine: engine.clone(),
            build_id: needs.build_id.clone(),
        }))
    }

    /// `key` was just built on `engine`: its next build goes there when
    /// it can.
    pub fn remember(&self, key: &str, engine: &str) {
        let mut last = self.last_built.lock().unwrap();
        // Bounded: a key unused for long loses nothing but warmth.
        if last.len() >= MAX_AFFINITY_KEYS && !last.contains_key(key) {
            last.clear();
        }
        last.insert(key.to_string(), engine.to_string());
    }

    /// A build on `name` failed in a way an engine going away would
    /// explain: check it now. `Some(why)` when it does not answer (it is
    /// then marked unhealthy, and gets no new builds until it does).
    pub async fn confirm_lost(&self, name: &str) -> Option<String> {
        let engine = self.engines.iter().find(|e| e.config.name == name)?;
        engine.check(false).await;
        let state = engine.state.lock().unwrap();
        match &state.health {
            Some(Err(error)) => Some(error.clone()),
            _ => None,
        }
    }

    /// Check every engine once, now; `with_cache` also reads their build
    /// cache sizes when a minute has passed since the last time.
    pub async fn check_all(&self, with_cache: bool) {
        let checks = self.engines.iter().map(|e| e.check(with_cache));
        futures_util::future::join_all(checks).await;
        self.changed.notify_waiters();
    }

    /// Check every engine every `interval` until `stop`.
    pub fn start_health_checks(self: &Arc<Self>, interval: Duration, stop: CancellationToken) {
        let pool = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(pool) = pool.upgrade() else { return };
                pool.check_all(true).await;
                drop(pool);
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stop.cancelled() => return,
                }
            }
        });
    }

    /// Drain (`true`) or resume an engine; its view after, or `None` when
    /// no engine has that name.
    pub fn set_draining(&self, name: &str, draining: bool) -> Option<kiln_api::Engine> {
        let engine = self.engines.iter().find(|e| e.config.name == name)?;
        engine.state.lock().unwrap().draining = draining;
        self.changed.notify_waiters();
        Some(engine.view())
    }

    /// Every engine, as `GET /v1/engines` shows it.
    pub fn views(&self) -> Vec<kiln_api::Engine> {
        self.engines.iter().map(|e| e.view()).collect()
    }
}

/// How an engine ranks for a build, lowest first: not warm, its share of
/// slots in use (thousandths), builds given so far.
type Rank = (bool, u64, usize);

/// Affinity keys remembered before the map starts over.
const MAX_AFFINITY_KEYS: usize = 100_000;

impl PooledEngine {
    /// Whether this engine is configured to build `needs` (health, drain
    /// and load aside).
    fn can_build(&self, needs: &Needs) -> bool {
        let config = &self.config;
        let platform_ok = match &needs.platform {
            None => true,
            Some(_) if self.any_platform => true,
            Some(asked) => {
                let native = self.state.lock().unwrap().facts.platform.clone();
                match (config.platforms.is_empty(), native) {
                    (false, _) => config.platforms.iter().any(|p| platform_matches(p, asked)),
                    (true, Some(native)) => platform_matches(&native, asked),
                    // Not inspected yet: it may.
                    (true, None) => true,
                }
            }
        };
        let profile_ok = match needs.profile.as_deref() {
            None | Some(crate::config::AUTO_PROFILE) => true,
            Some(asked) => {
                let asked = kiln_api::validate::canonical_profile(asked);
                config.profiles.is_empty()
                    || config
                        .profiles
                        .iter()
                        .any(|p| kiln_api::validate::canonical_profile(p) == asked)
            }
        };
        let builder_ok = config.builders.is_empty() || config.builders.contains(&needs.builder);
        let secrets_ok = !needs.secrets || self.engine.is_local_socket();
        platform_ok && profile_ok && builder_ok && secrets_ok
    }

    /// What it offers, for an error message.
    fn offer(&self) -> String {
        let platforms = self.platforms().join(", ");
        let mut offer = vec![if platforms.is_empty() {
            "its own platform".to_string()
        } else {
            platforms
        }];
        if !self.config.profiles.is_empty() {
            offer.push(format!("profiles {}", self.config.profiles.join(", ")));
        }
        if !self.config.builders.is_empty() {
            offer.push(format!("builders {}", self.config.builders.join(", ")));
        }
        offer.join("; ")
    }

    fn platforms(&self) -> Vec<String> {
        if !self.config.platforms.is_empty() {
            return self.config.platforms.clone();
        }
        let state = self.state.lock().unwrap();
        state.facts.platform.clone().into_iter().collect()
    }

    /// Ping and inspect the daemon; record what was found.
    async fn check(&self, with_cache: bool) {
        let read_cache = with_cache && {
            let state = self.state.lock().unwrap();
            state
                .cache_checked
                .is_none_or(|at| at.elapsed() >= CACHE_SIZE_INTERVAL)
        };
        let checked = async {
            self.engine.ping().await?;
            let facts = self.engine.facts().await?;
            // Best effort: an engine that answers pings but not `system/df`
            // is still healthy.
            let cache = match read_cache {
                true => self.engine.build_cache_usage().await.ok(),
                false => None,
            };
            Ok::<_, EngineError>((facts, cache))
        };
        let result = tokio::time::timeout(CHECK_TIMEOUT, checked).await;
        let mut state = self.state.lock().unwrap();
        state.last_checked = Some(Utc::now());
        match result {
            Ok(Ok((facts, cache))) => {
                if matches!(state.health, Some(Err(_))) {
                    tracing::info!(engine = self.config.name, "the engine answers again");
                }
                state.health = Some(Ok(()));
                state.facts = facts;
                if let Some(cache) = cache {
                    state.cache_bytes = Some(cache.bytes);
                    state.cache_checked = Some(std::time::Instant::now());
                }
            }
            Ok(Err(e)) => self.mark_unhealthy(&mut state, super::causes(&e)),
            Err(_) => self.mark_unhealthy(
                &mut state,
                format!(
                    "the Docker Engine at {} did not answer within {} s",
                    self.config.host,
                    CHECK_TIMEOUT.as_secs()
                ),
            ),
        }
    }

    fn mark_unhealthy(&self, state: &mut EngineState, error: String) {
        if !matches!(&state.health, Some(Err(known)) if *known == error) {
            tracing::warn!(
                engine = self.config.name,
                "the engine is unhealthy: {error}"
            );
        }
        state.health = Some(Err(error));
    }

    fn view(&self) -> kiln_api::Engine {
        let platforms = self.platforms();
        let state = self.state.lock().unwrap();
        let (health, health_error) = match &state.health {
            None => (kiln_api::EngineHealth::Unknown, None),
            Some(Ok(())) => (kiln_api::EngineHealth::Healthy, None),
            Some(Err(e)) => (kiln_api::EngineHealth::Unhealthy, Some(e.clone())),
        };
        kiln_api::Engine {
            name: self.config.name.clone(),
            host: self.engine.host().to_string(),
            tls: self.config.tls.is_some(),
            health,
            health_error,
            last_checked: state.last_checked,
            draining: state.draining,
            platforms,
            profiles: self.config.profiles.clone(),
            builders: self.config.builders.clone(),
            max_concurrent_builds: self.config.max_concurrent_builds as u32,
            running_builds: state.running.clone(),
            builds_started: state.builds_started,
            version: state.facts.version.clone(),
            cpus: state.facts.cpus,
            memory_bytes: state.facts.memory_bytes,
            cache_bytes: state.cache_bytes,
        }
    }
}

/// How often an engine's build cache size is read.
const CACHE_SIZE_INTERVAL: Duration = Duration::from_secs(60);

/// A check that takes longer than this finds the engine unhealthy.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether an engine that builds `offered` builds `asked`: the same, or
/// `offered` names no variant and `asked` is one of its variants
/// (`linux/arm64` builds `linux/arm64/v8`).
fn platform_matches(offered: &str, asked: &str) -> bool {
    offered == asked
        || (offered.matches('/').count() == 1
            && asked
                .strip_prefix(offered)
                .is_some_and(|rest| rest.starts_with('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(name: &str, platforms: &[&str], slots: usize) -> EngineConfig {
        EngineConfig {
            name: name.into(),
            // Nothing listens on port 1: connecting is refused.
            host: "tcp://127.0.0.1:1".into(),
            tls: None,
            platforms: platforms.iter().map(|p| p.to_string()).collect(),
            profiles: Vec::new(),
            builders: Vec::new(),
            max_concurrent_builds: slots,
        }
    }

    fn needs(build: &str, key: &str) -> Needs {
        Needs {
            build_id: build.into(),
            builder: "buildkit".into(),
            affinity_key: key.into(),
            ..Default::default()
        }
    }

    #[test]
    fn platforms_match_with_or_without_a_variant() {
        assert!(platform_matches("linux/arm64", "linux/arm64"));
        assert!(platform_matches("linux/arm64", "linux/arm64/v8"));
        assert!(!platform_matches("linux/arm", "linux/arm64"));
        assert!(!platform_matches("linux/arm64/v8", "linux/arm64"));
    }

    #[tokio::test]
    async fn builds_spread_and_return_to_the_warm_engine() {
        let pool = Arc::new(
            EnginePool::new(&[
                engine("a", &["linux/amd64"], 2),
                engine("b", &["linux/amd64"], 2),
            ])
            .unwrap(),
        );
        let first = pool.acquire(&needs("1", "x"), None).await.unwrap();
        let second = pool.acquire(&needs("2", "y"), None).await.unwrap();
        assert_ne!(
            first.name(),
            second.name(),
            "the idle engine takes the second build"
        );
        pool.remember("x", first.name());
        let warm = first.name().to_string();
        drop(first);
        drop(second);
        let again = pool.acquire(&needs("3", "x"), None).await.unwrap();
        assert_eq!(again.name(), warm, "a rebuild goes where its cache is");
        let elsewhere = pool.acquire(&needs("4", "x"), Some(&warm)).await.unwrap();
        assert_ne!(elsewhere.name(), warm);
    }

    #[tokio::test]
    async fn a_drained_engine_takes_nothing_and_a_full_pool_waits() {
        let pool = Arc::new(EnginePool::new(&[engine("a", &[], 1), engine("b", &[], 1)]).unwrap());
        pool.set_draining("a", true).unwrap();
        let held = pool.acquire(&needs("1", "x"), None).await.unwrap();
        assert_eq!(held.name(), "b");
        let waiting = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.acquire(&needs("2", "x"), None)
                    .await
                    .map(|l| l.name().to_string())
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "no free slot: the build waits");
        pool.set_draining("a", false).unwrap();
        assert_eq!(waiting.await.unwrap().unwrap(), "a");
        assert_eq!(pool.views()[1].running_builds, vec!["1".to_string()]);
    }

    /// Two multi-platform builds, each holding the only engine of one
    /// platform and waiting for the other's: the first to release its seat
    /// (its own platform built) lets the other go on.
    #[tokio::test]
    async fn a_released_seat_ends_two_multi_platform_builds_waiting_on_each_other() {
        let pool = Arc::new(
            EnginePool::new(&[
                engine("x86", &["linux/amd64"], 1),
                engine("arm", &["linux/arm64"], 1),
            ])
            .unwrap(),
        );
        let seat = |build: &str, platform: &str| {
            let pool = pool.clone();
            let needs = Needs {
                platform: Some(platform.into()),
                ..needs(build, build)
            };
            async move {
                let lease = pool.acquire(&needs, None).await.unwrap();
                EngineSeat::new(pool, needs, lease)
            }
        };
        let one = Arc::new(seat("1", "linux/amd64").await);
        let two = seat("2", "linux/arm64").await;
        assert!(!one.builds("linux/arm64"), "x86 builds no arm64");
        assert!(one.try_beside("linux/arm64").is_none(), "arm is busy");
        let waiting = {
            let one = one.clone();
            tokio::spawn(async move { one.beside("linux/arm64").await })
        };
        assert!(two.try_beside("linux/amd64").is_none(), "x86 is busy");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "each waits for the other's engine");
        two.release();
        let arm = waiting.await.unwrap().unwrap();
        assert_eq!(arm.name(), "arm");
        assert_eq!(two.name(), "arm", "a released seat still names its engine");
        assert_eq!(pool.views()[1].running_builds, vec!["1".to_string()]);
    }

    #[tokio::test]
    async fn what_no_engine_builds_is_refused_naming_what_the_pool_builds() {
        let mut arm = engine("arm", &["linux/arm64"], 1);
        arm.profiles = vec!["large".into()];
        let pool = EnginePool::new(&[engine("x86", &["linux/amd64"], 1), arm]).unwrap();
        assert!(pool
            .check_buildable(Some("linux/arm64"), None, "buildkit")
            .is_ok());
        let error = pool
            .check_buildable(Some("linux/s390x"), None, "buildkit")
            .unwrap_err();
        assert!(error.contains("platform linux/s390x"), "{error}");
        assert!(error.contains("x86 (linux/amd64)"), "{error}");
        assert!(
            error.contains("arm (linux/arm64; profiles large)"),
            "{error}"
        );
        assert!(pool
            .check_buildable(Some("linux/arm64"), Some("small"), "buildkit")
            .is_err());
    }

    #[tokio::test]
    async fn engines_that_do_not_answer_are_unhealthy_and_take_nothing() {
        let pool = Arc::new(EnginePool::new(&[engine("gone", &[], 1)]).unwrap());
        pool.check_all(false).await;
        let view = &pool.views()[0];
        assert_eq!(view.health, kiln_api::EngineHealth::Unhealthy);
        assert!(
            view.health_error
                .as_deref()
                .unwrap_or("")
                .contains("tcp://127.0.0.1:1"),
            "{view:?}"
        );
        match pool.acquire(&needs("1", "x"), None).await {
            Err(NoEngine::Unhealthy(why)) => assert!(why.starts_with("gone: "), "{why}"),
            Err(other) => panic!("{other}"),
            Ok(lease) => panic!("leased {}", lease.name()),
        }
    }
}
