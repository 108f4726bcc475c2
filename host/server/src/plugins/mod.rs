//! The plugin runtime: one wasmtime [`Engine`] for the process, one
//! [`InstancePre`] per plugin, and a fresh [`Store`] per call with a memory
//! cap and a wall-time budget.
//!
//! * [`manifest`] — `plugin.toml`, permissions and limits.
//! * [`bindings`] — host bindings generated from `wit/`.
//! * [`embedded`] — the first-party plugins compiled into this binary.
//!
//! Time is enforced with epoch interruption: a ticker thread bumps the
//! epoch every 10 ms and each store's callback yields to tokio until the
//! call's deadline, then traps. Time the plugin spends waiting inside a host
//! function (a build in the engine) extends the deadline: the budget limits
//! the plugin's own code, while the build as a whole has its own timeout.

pub mod bindings;
pub mod http;
pub mod manifest;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, InstancePre, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::capabilities::Capabilities;
use crate::config::PluginGrant;
use manifest::{Manifest, Permissions};

/// Epoch tick.
const TICK: Duration = Duration::from_millis(10);
/// Captured stdout+stderr per call.
const STDIO_CAPTURE_BYTES: usize = 64 * 1024;
/// The host's ceiling on any plugin's memory.
const MAX_MEMORY_MIB: u64 = 1024;

/// A first-party plugin compiled into the binary (see `host/server/build.rs`).
pub struct EmbeddedPlugin {
    pub dir: &'static str,
    pub manifest: &'static str,
    pub component: &'static [u8],
}

/// The first-party plugins.
pub mod embedded {
    use super::EmbeddedPlugin;
    /// Every first-party plugin, in load order.
    pub static PLUGINS: &[EmbeddedPlugin] =
        include!(concat!(env!("OUT_DIR"), "/embedded_plugins.rs"));
}

/// Why a plugin could not be loaded or called.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error("plugin at {path}: {message}")]
    Load { path: String, message: String },
    #[error("plugin {id}: {message}")]
    Invalid { id: String, message: String },
    #[error("plugin {id} is loaded twice (from {first} and {second})")]
    Duplicate {
        id: String,
        first: String,
        second: String,
    },
    #[error("plugin {id} exceeded its memory limit of {limit_mib} MiB")]
    OutOfMemory { id: String, limit_mib: u64 },
    #[error("plugin {id} exceeded its time limit of {limit_secs} s")]
    OutOfTime { id: String, limit_secs: u64 },
    #[error("plugin {id} crashed: {message}")]
    Trapped { id: String, message: String },
    #[error("plugin {id}: cannot prepare the call: {message}")]
    Setup { id: String, message: String },
}

/// Which world a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    Builder,
    ContextSource,
    CredentialStore,
    /// Exports `detect` (the Dockerfile wizard's detection).
    Detector,
}

impl World {
    /// The world's name in the contract (`wit/`).
    pub fn wit_name(self) -> &'static str {
        match self {
            World::Builder => "builder",
            World::ContextSource => "context-source",
            World::CredentialStore => "credential-store",
            World::Detector => "detector",
        }
    }
}

/// The contract version this host implements. A component is matched by
/// its exports' exact version: `@0.1.0` (and later patch releases) is ours,
/// `@0.10.0` or `@0.2.0` is not.
pub const CONTRACT_VERSION: (u64, u64) = (0, 1);

enum Pre {
    Builder(bindings::builder::BuilderPre<PluginState>),
    Detector(bindings::detector::DetectorPre<PluginState>),
    Source(bindings::source::ContextSourcePre<PluginState>),
    Store(bindings::store::CredentialStorePre<PluginState>),
}

/// A plugin ready to be called.
pub struct LoadedPlugin {
    pub manifest: Manifest,
    /// Where it came from: `embedded` or the manifest's path.
    pub origin: String,
    pub world: World,
    /// Asked ∩ granted.
    pub granted: Arc<Permissions>,
    /// The manifest's limits, capped by the operator.
    pub limits: EffectiveLimits,
    /// The component's sha256.
    pub sha256: String,
    /// Whether the compiled code came from the on-disk cache.
    pub from_cache: bool,
    /// How long compiling (or loading the cached artifact) took.
    pub load_time: Duration,
    /// The interfaces the component imports.
    pub imports: Vec<String>,
    pre: Pre,
}

/// Limits one call of a plugin runs under (served as `kiln_api::PluginLimits`).
#[derive(Debug, Clone, Copy)]
pub struct EffectiveLimits {
    pub memory_mib: u64,
    pub time_secs: u64,
}

/// A plugin that was found but refused (served as `kiln_api::PluginLoadError`).
#[derive(Debug, Clone)]
pub struct LoadError {
    /// Where it came from (its manifest's path).
    pub origin: String,
    /// Its id, when the manifest could be read.
    pub plugin_id: Option<String>,
    pub message: String,
}

/// What [`PluginRuntime::load`] loads, and under which rules.
#[derive(Debug, Clone)]
pub struct LoadOptions<'a> {
    pub plugin_dirs: &'a [PathBuf],
    pub grants: &'a BTreeMap<String, PluginGrant>,
    /// Where compiled components are cached; none: compile every time.
    pub cache_dir: Option<PathBuf>,
    pub max_memory_mib: u64,
    pub max_time_secs: u64,
    /// The executor image configured for first-party builders that run
    /// one (Kaniko): their `images` permission becomes exactly this image.
    pub executor_image: Option<String>,
}

static NO_GRANTS: BTreeMap<String, PluginGrant> = BTreeMap::new();

impl Default for LoadOptions<'_> {
    fn default() -> Self {
        LoadOptions {
            plugin_dirs: &[],
            grants: &NO_GRANTS,
            cache_dir: None,
            max_memory_mib: MAX_MEMORY_MIB,
            max_time_secs: 3600,
            executor_image: Some(crate::config::DEFAULT_KANIKO_IMAGE.to_string()),
        }
    }
}

/// Per-call memory cap that remembers whether it was hit, so the failure can
/// say so rather than show the guest's own confused allocation error.
struct MemoryCap {
    limit: usize,
    hit: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The data of one call's store.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    http_ctx: wasmtime_wasi_http::WasiHttpCtx,
    http_gate: http::HttpGate,
    memory: MemoryCap,
    deadline: Instant,
    pub caps: Capabilities,
}

impl PluginState {
    /// Give the plugin back time it spent waiting on the host.
    pub fn extend_deadline(&mut self, by: Duration) {
        self.deadline += by;
    }
}

impl wasmtime_wasi_http::WasiHttpView for PluginState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            hooks: &mut self.http_gate,
            table: &mut self.table,
            ctx: &mut self.http_ctx,
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Directories a call may see.
pub struct Preopens {
    /// Mounted at `/context`; none for calls that need no files.
    pub context: Option<PathBuf>,
    pub context_writable: bool,
    /// Mounted read-only at `/input`.
    pub input: Option<PathBuf>,
    /// Mounted read-only at `/credentials` (credential stores that read
    /// mounted files).
    pub credentials: Option<PathBuf>,
}

impl Preopens {
    /// No directories at all.
    pub fn none() -> Self {
        Preopens {
            context: None,
            context_writable: false,
            input: None,
            credentials: None,
        }
    }
}

/// Stops the epoch ticker thread when the runtime goes away.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// All loaded plugins and the machinery to call them.
pub struct PluginRuntime {
    engine: Engine,
    plugins: BTreeMap<String, LoadedPlugin>,
    /// Builder name → plugin id.
    builders: BTreeMap<String, String>,
    /// Source kind → plugin id.
    sources: BTreeMap<String, String>,
    load_errors: Vec<LoadError>,
    cache_dir: Option<PathBuf>,
    max_memory_mib: u64,
    max_time_secs: u64,
    _ticker: Ticker,
}

impl PluginRuntime {
    /// An empty runtime.
    pub fn new() -> Result<Self, PluginError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        let engine = Engine::new(&config).map_err(|e| PluginError::Load {
            path: "(engine)".into(),
            message: e.to_string(),
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("kiln-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })
                .expect("spawn the epoch ticker");
        }
        Ok(PluginRuntime {
            engine,
            plugins: BTreeMap::new(),
            builders: BTreeMap::new(),
            sources: BTreeMap::new(),
            load_errors: Vec::new(),
            cache_dir: None,
            max_memory_mib: MAX_MEMORY_MIB,
            max_time_secs: 3600,
            _ticker: Ticker { stop },
        })
    }

    /// A runtime with the first-party plugins and those in the options'
    /// plugin directories. A third-party plugin that cannot be loaded is
    /// recorded in [`load_errors`](Self::load_errors) and skipped: one bad
    /// plugin does not keep the host from serving.
    pub fn load(options: LoadOptions) -> Result<Self, PluginError> {
        let mut runtime = Self::new()?;
        runtime.cache_dir = options.cache_dir.clone();
        runtime.max_memory_mib = options.max_memory_mib;
        runtime.max_time_secs = options.max_time_secs;
        for plugin in embedded::PLUGINS {
            let mut manifest = Manifest::parse(plugin.manifest)?;
            // First-party plugins are granted what they ask, unless the
            // operator configured one: then its lists are exactly what the
            // plugin gets (`[plugins.git] git = ["github.com", "file://"]`).
            let grant = options.grants.get(&manifest.id).cloned();
            if let Some(grant) = &grant {
                manifest.permissions = grant.rights(&manifest.permissions);
            }
            if let Some(image) = &options.executor_image {
                if !manifest.permissions.images.is_empty() {
                    manifest.permissions.images = [image.clone()].into();
                }
            }
            let granted = manifest.permissions.clone();
            runtime.add(
                manifest,
                plugin.component,
                "embedded".into(),
                granted,
                grant,
            )?;
        }
        for dir in options.plugin_dirs {
            runtime.load_dir(dir, options.grants);
        }
        Ok(runtime)
    }

    /// An empty runtime with the first-party plugins only (tests, tools).
    pub fn with_plugins(plugin_dirs: &[PathBuf]) -> Result<Self, PluginError> {
        Self::load(LoadOptions {
            plugin_dirs,
            ..LoadOptions::default()
        })
    }

    /// Plugins that were found but refused, and why.
    pub fn load_errors(&self) -> &[LoadError] {
        &self.load_errors
    }

    /// Load every plugin in `dir` (one sub-directory per plugin, each with a
    /// `plugin.toml`), granting each what the operator's `grants` say —
    /// nothing beyond logging when they say nothing.
    pub fn load_dir(&mut self, dir: &Path, grants: &BTreeMap<String, PluginGrant>) {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                self.load_errors.push(LoadError {
                    origin: dir.display().to_string(),
                    plugin_id: None,
                    message: format!("cannot read the plugin directory: {e}"),
                });
                return;
            }
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("plugin.toml").is_file())
            .collect();
        dirs.sort();
        for plugin_dir in dirs {
            if let Err(error) = self.load_one(&plugin_dir, grants) {
                tracing::warn!(plugin = %error.origin, "plugin refused: {}", error.message);
                self.load_errors.push(error);
            }
        }
    }

    /// Load the plugin in `plugin_dir` (its `plugin.toml` and the component
    /// it names); returns its id.
    pub fn load_one(
        &mut self,
        plugin_dir: &Path,
        grants: &BTreeMap<String, PluginGrant>,
    ) -> Result<String, LoadError> {
        let manifest_path = plugin_dir.join("plugin.toml");
        let origin = manifest_path.display().to_string();
        let mut plugin_id = None;
        let result = (|| {
            let text =
                std::fs::read_to_string(&manifest_path).map_err(|e| format!("cannot read: {e}"))?;
            let manifest = Manifest::parse(&text).map_err(|e| e.to_string())?;
            plugin_id = Some(manifest.id.clone());
            let component_rel = manifest
                .component
                .clone()
                .ok_or("the manifest names no `component` file")?;
            let component_path = plugin_dir.join(&component_rel);
            let bytes = std::fs::read(&component_path).map_err(|e| {
                format!(
                    "cannot read component {}: {e} (is it built?)",
                    component_path.display()
                )
            })?;
            let grant = grants.get(&manifest.id).cloned();
            let granted = grant
                .as_ref()
                .map(|g| g.rights(&manifest.permissions))
                .unwrap_or_default();
            let id = manifest.id.clone();
            self.add(manifest, &bytes, origin.clone(), granted, grant)
                .map_err(|e| e.to_string())?;
            Ok(id)
        })();
        result.map_err(|message: String| LoadError {
            origin,
            plugin_id,
            message,
        })
    }

    /// The plugin with this id.
    pub fn plugin(&self, id: &str) -> Option<&LoadedPlugin> {
        self.plugins.get(id)
    }

    /// Compile (or load from the cache), check and register one plugin.
    pub fn add(
        &mut self,
        manifest: Manifest,
        component_bytes: &[u8],
        origin: String,
        granted: Permissions,
        grant: Option<PluginGrant>,
    ) -> Result<(), PluginError> {
        let id = manifest.id.clone();
        let invalid = |message: String| PluginError::Invalid {
            id: id.clone(),
            message,
        };
        let sha256 = hex::encode(Sha256::digest(component_bytes));
        if let Some(expected) = &manifest.sha256 {
            if !sha256.eq_ignore_ascii_case(expected) {
                return Err(invalid(format!(
                    "the component's sha256 is {sha256}, the manifest says {expected}; rebuild it or fix the manifest"
                )));
            }
        }
        if let Some(existing) = self.plugins.get(&id) {
            return Err(PluginError::Duplicate {
                id,
                first: existing.origin.clone(),
                second: origin,
            });
        }
        for name in &manifest.kinds.builder {
            if let Some(owner) = self.builders.get(name) {
                return Err(invalid(format!(
                    "the builder name `{name}` is already provided by plugin {owner}"
                )));
            }
        }
        for kind in &manifest.kinds.context_source {
            if let Some(owner) = self.sources.get(kind) {
                return Err(invalid(format!(
                    "the context source `{kind}` is already provided by plugin {owner}"
                )));
            }
        }
        let loading = Instant::now();
        let (component, from_cache) = self
            .compile(component_bytes, &sha256)
            .map_err(|e| invalid(format!("not a valid wasm component: {e}")))?;
        let load_time = loading.elapsed();
        let world = detect_world(&self.engine, &component).map_err(invalid)?;
        let kinds_ok = match world {
            World::Builder => !manifest.kinds.builder.is_empty(),
            World::Detector => manifest.kinds.detector,
            World::ContextSource => !manifest.kinds.context_source.is_empty(),
            World::CredentialStore => manifest.kinds.credential_store,
        };
        if !kinds_ok {
            return Err(invalid(format!(
                "the component implements the {world:?} world, which its manifest's [kinds] does not declare"
            )));
        }
        let granted = manifest.permissions.intersect(&granted);
        // Before linking: every host interface it imports must be granted.
        let imports: Vec<String> = component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        for import in imports.iter().map(String::as_str) {
            let Some((permission, true)) = granted.needed_for(import).map(|(p, ok)| (p, !ok))
            else {
                continue;
            };
            let asked = manifest
                .permissions
                .needed_for(import)
                .is_some_and(|(_, ok)| ok);
            return Err(invalid(format!(
                "it imports {import}, which needs the `{permission}` permission; {}",
                if asked {
                    format!("its manifest asks for it but the operator has not granted it (config file: [plugins.{id}])")
                } else {
                    "its manifest does not ask for it".to_string()
                }
            )));
        }
        let mut linker: Linker<PluginState> = Linker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| invalid(format!("cannot link WASI: {e}")))?;
        // Linked for every plugin; only granted ones may import it (checked
        // above), and each request is checked again by the gate.
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| invalid(format!("cannot link wasi:http: {e}")))?;
        bindings::builder::Builder::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| invalid(format!("cannot link host interfaces: {e}")))?;
        bindings::source::kiln::plugin::git::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| invalid(format!("cannot link the git interface: {e}")))?;
        let instance_pre: InstancePre<PluginState> = linker
            .instantiate_pre(&component)
            .map_err(|e| invalid(format!("imports something this host does not provide: {e}")))?;
        let limits = EffectiveLimits {
            memory_mib: [
                Some(manifest.limits.memory_mib),
                grant.as_ref().and_then(|g| g.memory_mib),
                Some(self.max_memory_mib),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(manifest.limits.memory_mib),
            time_secs: [
                Some(manifest.limits.time_secs),
                grant.as_ref().and_then(|g| g.time_secs),
                Some(self.max_time_secs),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(manifest.limits.time_secs),
        };
        let pre = match world {
            World::Builder => Pre::Builder(
                bindings::builder::BuilderPre::new(instance_pre)
                    .map_err(|e| invalid(format!("does not match the builder world: {e}")))?,
            ),
            World::Detector => Pre::Detector(
                bindings::detector::DetectorPre::new(instance_pre)
                    .map_err(|e| invalid(format!("does not match the detector world: {e}")))?,
            ),
            World::ContextSource => Pre::Source(
                bindings::source::ContextSourcePre::new(instance_pre).map_err(|e| {
                    invalid(format!("does not match the context-source world: {e}"))
                })?,
            ),
            World::CredentialStore => Pre::Store(
                bindings::store::CredentialStorePre::new(instance_pre).map_err(|e| {
                    invalid(format!("does not match the credential-store world: {e}"))
                })?,
            ),
        };
        let granted = Arc::new(granted);
        for name in &manifest.kinds.builder {
            self.builders.insert(name.clone(), id.clone());
        }
        for kind in &manifest.kinds.context_source {
            self.sources.insert(kind.clone(), id.clone());
        }
        self.plugins.insert(
            id,
            LoadedPlugin {
                manifest,
                origin,
                world,
                granted,
                limits,
                sha256,
                from_cache,
                load_time,
                imports,
                pre,
            },
        );
        Ok(())
    }

    /// Every loaded plugin.
    pub fn plugins(&self) -> impl Iterator<Item = &LoadedPlugin> {
        self.plugins.values()
    }

    /// The plugin answering to a builder name.
    pub fn builder(&self, name: &str) -> Option<&LoadedPlugin> {
        self.plugins.get(self.builders.get(name)?)
    }

    /// The plugin materializing a source kind.
    pub fn source(&self, kind: &str) -> Option<&LoadedPlugin> {
        self.plugins.get(self.sources.get(kind)?)
    }

    /// Builder names this host answers to.
    pub fn builder_names(&self) -> Vec<String> {
        self.builders.keys().cloned().collect()
    }

    fn new_store(
        &self,
        plugin: &LoadedPlugin,
        caps: Capabilities,
        preopens: &Preopens,
        stdio: &MemoryOutputPipe,
    ) -> Result<Store<PluginState>, PluginError> {
        let id = &plugin.manifest.id;
        let setup = |message: String| PluginError::Setup {
            id: id.clone(),
            message,
        };
        // Nothing is inherited: no environment, no arguments, no network
        // (the builder's defaults already refuse every socket address; this
        // says so), stdio captured for the build log.
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdio.clone())
            .stderr(stdio.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            // Plugins' file operations are small and many (an archive's
            // entries); doing them on the calling thread instead of a
            // blocking-pool hop per call is what makes unpacking fast.
            .allow_blocking_current_thread(true);
        for name in &plugin.granted.env {
            if let Ok(value) = std::env::var(name) {
                wasi.env(name, value);
            }
        }
        if let Some(context) = &preopens.context {
            let perms = if preopens.context_writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            wasi.preopened_dir(context, "/context", perms)
                .map_err(|e| setup(format!("cannot open the context directory: {e}")))?;
        }
        if let Some(input) = &preopens.input {
            wasi.preopened_dir(input, "/input", FsPerms::ReadOnly)
                .map_err(|e| setup(format!("cannot open the input directory: {e}")))?;
        }
        if let Some(credentials) = &preopens.credentials {
            wasi.preopened_dir(credentials, "/credentials", FsPerms::ReadOnly)
                .map_err(|e| setup(format!("cannot open the credentials directory: {e}")))?;
        }
        let limits = &plugin.limits;
        let memory_mib = limits.memory_mib;
        let http_gate = http::HttpGate {
            plugin_id: id.clone(),
            granted: plugin.granted.clone(),
        };
        let state = PluginState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            http_ctx: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_gate,
            memory: MemoryCap {
                limit: (memory_mib << 20) as usize,
                hit: false,
            },
            deadline: Instant::now() + Duration::from_secs(limits.time_secs),
            caps,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Ok(store)
    }

    /// Turn a trap into a failure that says what happened.
    fn explain(
        plugin: &LoadedPlugin,
        store: &Store<PluginState>,
        error: wasmtime::Error,
        stdio: &MemoryOutputPipe,
    ) -> PluginError {
        let id = plugin.manifest.id.clone();
        if store.data().memory.hit {
            return PluginError::OutOfMemory {
                id,
                limit_mib: plugin.limits.memory_mib,
            };
        }
        if matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            return PluginError::OutOfTime {
                id,
                limit_secs: plugin.limits.time_secs,
            };
        }
        let captured = String::from_utf8_lossy(&stdio.contents())
            .trim()
            .to_string();
        let mut message = error.to_string();
        if let Some(trap) = error.downcast_ref::<Trap>() {
            message = format!("{trap}");
        }
        if !captured.is_empty() {
            let tail: Vec<&str> = captured.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            message = format!("{message}; it printed: {}", tail.join(" / "));
        }
        PluginError::Trapped { id, message }
    }

    fn forward_stdio(
        caps_log: Option<&crate::store::BuildLog>,
        id: &str,
        stdio: &MemoryOutputPipe,
    ) {
        let captured = stdio.contents();
        for line in String::from_utf8_lossy(&captured).lines() {
            match caps_log {
                Some(log) => log.write("plugin", &format!("[{id}] {line}")),
                // Calls outside a build (detect, credential stores): the
                // operator's log, at debug level, since a credential store's
                // output is nobody else's business.
                None => tracing::debug!(plugin = %id, "{line}"),
            }
        }
    }

    /// The wasmtime engine every plugin runs on (for tools and benchmarks).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The one way every call into a plugin goes: a fresh store with the
    /// plugin's limits and preopens, the call itself (`body`), the plugin's
    /// stdout/stderr forwarded, and a trap turned into a failure that says
    /// what happened.
    async fn call<T>(
        &self,
        plugin: &LoadedPlugin,
        caps: Capabilities,
        preopens: &Preopens,
        body: impl AsyncFnOnce(&mut Store<PluginState>) -> wasmtime::Result<T>,
    ) -> Result<T, PluginError> {
        let stdio = MemoryOutputPipe::new(STDIO_CAPTURE_BYTES);
        let log = caps.log.clone();
        let mut store = self.new_store(plugin, caps, preopens, &stdio)?;
        let outcome = body(&mut store).await;
        Self::forward_stdio(log.as_ref(), &plugin.manifest.id, &stdio);
        outcome.map_err(|e| Self::explain(plugin, &store, e, &stdio))
    }

    /// Capabilities for a call outside a build: logging only.
    fn bare_caps(plugin: &LoadedPlugin) -> Capabilities {
        Capabilities::new(&plugin.manifest.id, plugin.granted.clone(), None)
    }

    /// Call the plugin's `describe`: a fresh store, an instance from its
    /// `InstancePre`, one call. What every build pays before its real call.
    pub async fn describe(&self, plugin: &LoadedPlugin) -> Result<String, PluginError> {
        let info = self
            .call(
                plugin,
                Self::bare_caps(plugin),
                &Preopens::none(),
                async |store| {
                    Ok(match &plugin.pre {
                        Pre::Builder(pre) => {
                            let instance = pre.instantiate_async(&mut *store).await?;
                            instance.kiln_plugin_build().call_describe(store).await?
                        }
                        Pre::Source(pre) => {
                            let instance = pre.instantiate_async(&mut *store).await?;
                            instance.kiln_plugin_source().call_describe(store).await?
                        }
                        Pre::Store(pre) => {
                            let instance = pre.instantiate_async(&mut *store).await?;
                            instance
                                .kiln_plugin_credentials()
                                .call_describe(store)
                                .await?
                        }
                        // The detect interface has no `describe`: the manifest says it.
                        Pre::Detector(_) => bindings::types::PluginInfo {
                            description: plugin.manifest.description.clone(),
                        },
                    })
                },
            )
            .await?;
        Ok(info.description)
    }

    /// Call a context source's `materialize`.
    pub async fn materialize(
        &self,
        plugin: &LoadedPlugin,
        caps: Capabilities,
        preopens: &Preopens,
        spec: &bindings::source::exports::kiln::plugin::source::SourceSpec,
    ) -> Result<
        Result<
            bindings::source::exports::kiln::plugin::source::ContextInfo,
            bindings::types::PluginError,
        >,
        PluginError,
    > {
        let Pre::Source(pre) = &plugin.pre else {
            return Err(wrong_world(plugin, World::ContextSource));
        };
        self.call(plugin, caps, preopens, async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance
                .kiln_plugin_source()
                .call_materialize(store, spec)
                .await
        })
        .await
    }

    /// Call a builder's `build`.
    pub async fn build(
        &self,
        plugin: &LoadedPlugin,
        caps: Capabilities,
        preopens: &Preopens,
        request: &bindings::builder::exports::kiln::plugin::build::BuildRequest,
    ) -> Result<
        Result<
            bindings::builder::exports::kiln::plugin::build::BuildOutput,
            bindings::types::PluginError,
        >,
        PluginError,
    > {
        let Pre::Builder(pre) = &plugin.pre else {
            return Err(wrong_world(plugin, World::Builder));
        };
        self.call(plugin, caps, preopens, async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance
                .kiln_plugin_build()
                .call_build(store, request)
                .await
        })
        .await
    }

    /// Call a detector's `detect` with `context_dir` preopened read-only.
    pub async fn detect(
        &self,
        plugin: &LoadedPlugin,
        context_dir: &Path,
        request: &bindings::detector::exports::kiln::plugin::detect::DetectRequest,
    ) -> Result<
        Result<
            Vec<bindings::detector::exports::kiln::plugin::detect::Project>,
            bindings::types::PluginError,
        >,
        PluginError,
    > {
        let Pre::Detector(pre) = &plugin.pre else {
            return Err(wrong_world(plugin, World::Detector));
        };
        let preopens = Preopens {
            context: Some(context_dir.to_path_buf()),
            ..Preopens::none()
        };
        self.call(plugin, Self::bare_caps(plugin), &preopens, async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance
                .kiln_plugin_detect()
                .call_detect(store, request)
                .await
        })
        .await
    }

    /// The first detector loaded, if any.
    pub fn detector(&self) -> Option<&LoadedPlugin> {
        self.plugins.values().find(|p| p.world == World::Detector)
    }

    /// Call a credential store, with `credentials_dir` (if any) mounted
    /// read-only at `/credentials`.
    pub async fn credentials(
        &self,
        plugin: &LoadedPlugin,
        credentials_dir: Option<&Path>,
        call: CredentialCall<'_>,
    ) -> Result<Result<CredentialAnswer, bindings::types::PluginError>, PluginError> {
        let Pre::Store(pre) = &plugin.pre else {
            return Err(wrong_world(plugin, World::CredentialStore));
        };
        let preopens = Preopens {
            credentials: credentials_dir.map(Path::to_path_buf),
            ..Preopens::none()
        };
        self.call(plugin, Self::bare_caps(plugin), &preopens, async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            let api = instance.kiln_plugin_credentials();
            Ok(match call {
                CredentialCall::Get { org, key } => api
                    .call_get(store, org, key)
                    .await?
                    .map(CredentialAnswer::Value),
                CredentialCall::Put { org, key, value } => api
                    .call_put(store, org, key, value)
                    .await?
                    .map(|()| CredentialAnswer::Done),
                CredentialCall::Delete { org, key } => api
                    .call_delete(store, org, key)
                    .await?
                    .map(CredentialAnswer::Deleted),
                CredentialCall::ListKeys { org } => api
                    .call_list_keys(store, org)
                    .await?
                    .map(CredentialAnswer::Keys),
            })
        })
        .await
    }

    /// Compile a component, or load the artifact compiled earlier for the
    /// same bytes and the same engine configuration.
    fn compile(&self, bytes: &[u8], sha256: &str) -> wasmtime::Result<(Component, bool)> {
        let Some(dir) = &self.cache_dir else {
            return Ok((Component::new(&self.engine, bytes)?, false));
        };
        let compatibility = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            self.engine
                .precompile_compatibility_hash()
                .hash(&mut hasher);
            hasher.finish()
        };
        let path = dir.join(format!("{sha256}-{compatibility:016x}.cwasm"));
        if path.is_file() {
            // SAFETY: the cache directory lives under the host's data
            // directory and only this host writes to it (below), naming each
            // artifact by the hash of the source it was compiled from and of
            // the engine configuration that compiled it. No one else's
            // precompiled code is ever loaded.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(component) => return Ok((component, true)),
                Err(e) => tracing::warn!("recompiling {}: {e}", path.display()),
            }
        }
        let component = Component::new(&self.engine, bytes)?;
        if let Ok(artifact) = component.serialize() {
            let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
            let written = std::fs::create_dir_all(dir)
                .and_then(|_| std::fs::write(&tmp, artifact))
                .and_then(|_| std::fs::rename(&tmp, &path));
            if let Err(e) = written {
                tracing::warn!("cannot cache {}: {e}", path.display());
            }
        }
        Ok((component, false))
    }
}

/// A call for one world made on a plugin of another: says which is which.
fn wrong_world(plugin: &LoadedPlugin, needed: World) -> PluginError {
    PluginError::Invalid {
        id: plugin.manifest.id.clone(),
        message: format!(
            "implements the {} world; this call needs a {} plugin",
            plugin.world.wit_name(),
            needed.wit_name()
        ),
    }
}

/// One call of a credential store's `credentials` interface.
pub enum CredentialCall<'a> {
    Get {
        org: &'a str,
        key: &'a str,
    },
    Put {
        org: &'a str,
        key: &'a str,
        value: &'a [u8],
    },
    Delete {
        org: &'a str,
        key: &'a str,
    },
    ListKeys {
        org: &'a str,
    },
}

/// What a credential store answered.
pub enum CredentialAnswer {
    Value(Option<Vec<u8>>),
    Done,
    Deleted(bool),
    Keys(Vec<String>),
}

/// The interface a world is recognized by, for each world.
const WORLD_EXPORTS: [(&str, World); 4] = [
    ("build", World::Builder),
    ("source", World::ContextSource),
    ("credentials", World::CredentialStore),
    ("detect", World::Detector),
];

/// Which `kiln:plugin` world the component exports, matched on the
/// contract's exact version: `0.1.x` is this host's, and `0.10.0` is not
/// `0.1` (a prefix test would say it is).
fn detect_world(engine: &Engine, component: &Component) -> Result<World, String> {
    let ty = component.component_type();
    let mut found = None;
    let mut other_versions = Vec::new();
    for (name, _) in ty.exports(engine) {
        let Some((interface, version)) = name
            .strip_prefix("kiln:plugin/")
            .and_then(|rest| rest.split_once('@'))
        else {
            continue;
        };
        let Some(world) = WORLD_EXPORTS
            .iter()
            .find(|(export, _)| *export == interface)
            .map(|(_, world)| *world)
        else {
            continue;
        };
        if contract_version_matches(version) {
            // A builder also exporting `detect` is still a builder.
            if found.is_none() || world != World::Detector {
                found = Some(world);
            }
        } else {
            other_versions.push(name.to_string());
        }
    }
    let (major, minor) = CONTRACT_VERSION;
    match found {
        Some(world) => Ok(world),
        None if !other_versions.is_empty() => Err(format!(
            "it exports {}, a contract version this host does not implement; this host implements kiln:plugin@{major}.{minor}.x: rebuild the plugin with a kiln-sdk for contract {major}.{minor}",
            other_versions.join(", ")
        )),
        None => Err(format!(
            "the component exports no kiln:plugin@{major}.{minor} world (build, source, credentials or detect); is it a Kiln plugin built with kiln-sdk?"
        )),
    }
}

/// Whether a `major.minor.patch[-pre]` version is this host's contract.
fn contract_version_matches(version: &str) -> bool {
    let core = version.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    let number = |part: &str| {
        // Semver: digits, and no leading zero.
        (!part.is_empty()
            && part.bytes().all(|b| b.is_ascii_digit())
            && (part == "0" || !part.starts_with('0')))
        .then(|| part.parse::<u64>().ok())
        .flatten()
    };
    parts.len() == 3
        && number(parts[2]).is_some()
        && (number(parts[0]), number(parts[1]))
            == (Some(CONTRACT_VERSION.0), Some(CONTRACT_VERSION.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_versions_match_exactly_not_by_prefix() {
        for ours in ["0.1.0", "0.1.7", "0.1.0-rc.1"] {
            assert!(contract_version_matches(ours), "{ours}");
        }
        for theirs in [
            "0.10.0", "0.11.0", "0.2.0", "1.1.0", "0.1", "0.01.0", "0.1.x", "",
        ] {
            assert!(!contract_version_matches(theirs), "{theirs}");
        }
    }
}
