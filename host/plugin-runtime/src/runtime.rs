//! Loading: one wasmtime [`Engine`] for the process, plugins compiled (or
//! read from the compile cache), matched to a world, checked against their
//! manifest and grant, and linked into one [`InstancePre`] each.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Config, Engine};

use crate::bindings;
use crate::grant::PluginGrant;
use crate::manifest::{self, Manifest, Permissions};
use crate::sandbox::{PluginState, Ticker};
use crate::world::{detect_world, World};

/// Epoch tick.
pub(crate) const TICK: Duration = Duration::from_millis(10);
/// The runtime's ceiling on any plugin's memory.
const MAX_MEMORY_MIB: u64 = 1024;

/// A plugin compiled into the embedding binary (the server's first-party
/// plugins): its manifest and component, loaded without a plugin directory.
pub struct EmbeddedPlugin {
    /// Its directory name in the source tree, e.g. `inline-zip`.
    pub dir: &'static str,
    /// The text of its `plugin.toml`.
    pub manifest: &'static str,
    /// The component's bytes.
    pub component: &'static [u8],
}

impl std::fmt::Debug for EmbeddedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedPlugin")
            .field("dir", &self.dir)
            .field("component_bytes", &self.component.len())
            .finish_non_exhaustive()
    }
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

pub(crate) enum Pre {
    Builder(bindings::builder::BuilderPre<PluginState>),
    Detector(bindings::detector::DetectorPre<PluginState>),
    Source(bindings::source::ContextSourcePre<PluginState>),
    Store(bindings::store::CredentialStorePre<PluginState>),
    Notifier(bindings::notifier::NotifierPre<PluginState>),
    Attestor(bindings::attestor::AttestorPre<PluginState>),
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
    pub(crate) pre: Pre,
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
    /// Plugins compiled into the binary, granted what they ask unless the
    /// operator's `grants` name them.
    pub embedded: &'a [EmbeddedPlugin],
    /// The executor image the operator configured for embedded builders
    /// that run one: their `images` permission becomes exactly this image.
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
            embedded: &[],
            executor_image: None,
        }
    }
}

/// All loaded plugins and the machinery to call them.
pub struct PluginRuntime {
    pub(crate) engine: Engine,
    pub(crate) plugins: BTreeMap<String, LoadedPlugin>,
    /// Builder name → plugin id.
    pub(crate) builders: BTreeMap<String, String>,
    /// Source kind → plugin id.
    pub(crate) sources: BTreeMap<String, String>,
    pub(crate) load_errors: Vec<LoadError>,
    pub(crate) cache_dir: Option<PathBuf>,
    pub(crate) max_memory_mib: u64,
    pub(crate) max_time_secs: u64,
    pub(crate) _ticker: Ticker,
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

    /// A runtime with the options' embedded plugins and those in its
    /// plugin directories. A third-party plugin that cannot be loaded is
    /// recorded in [`load_errors`](Self::load_errors) and skipped: one bad
    /// plugin does not keep the host from serving.
    pub fn load(options: LoadOptions) -> Result<Self, PluginError> {
        let mut runtime = Self::new()?;
        runtime.cache_dir = options.cache_dir.clone();
        runtime.max_memory_mib = options.max_memory_mib;
        runtime.max_time_secs = options.max_time_secs;
        for plugin in options.embedded {
            let mut manifest = Manifest::parse(plugin.manifest)?;
            // Embedded plugins are granted what they ask, unless the
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
        let origin = plugin_dir.join("plugin.toml").display().to_string();
        self.load_one_from(plugin_dir, grants, origin)
    }

    /// [`PluginRuntime::load_one`], saying the plugin came from `origin`
    /// (a registry reference, for a plugin pulled into `plugin_dir`).
    pub fn load_one_from(
        &mut self,
        plugin_dir: &Path,
        grants: &BTreeMap<String, PluginGrant>,
        origin: String,
    ) -> Result<String, LoadError> {
        let mut plugin_id = None;
        let result = (|| {
            let manifest = Manifest::read_dir(plugin_dir).map_err(|e| e.to_string())?;
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

    /// Which world the component `bytes` implements (compiled as a load
    /// would, and cached the same way): for a component that came
    /// without a manifest.
    pub fn component_world(&self, bytes: &[u8]) -> Result<World, String> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let (component, _) = self
            .compile(bytes, &sha256)
            .map_err(|e| format!("not a valid wasm component: {e}"))?;
        detect_world(&self.engine, &component)
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
            World::Notifier => manifest.kinds.notifier,
            World::Attestor => manifest.kinds.attestor,
        };
        if !kinds_ok {
            return Err(invalid(format!(
                "the component implements the {world:?} world, which its manifest's [kinds] does not declare"
            )));
        }
        let granted = manifest.permissions.intersect(&granted);
        // A plugin whose hosts are the operator's choice (`http = ["*"]`)
        // links `wasi:http` before any host is granted: the gate then
        // refuses each request, naming the config that grants one.
        let http_by_grant = manifest.permissions.http.contains("*");
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
            if permission == "http" && http_by_grant {
                continue;
            }
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
            World::Notifier => Pre::Notifier(
                bindings::notifier::NotifierPre::new(instance_pre)
                    .map_err(|e| invalid(format!("does not match the notifier world: {e}")))?,
            ),
            World::Attestor => Pre::Attestor(
                bindings::attestor::AttestorPre::new(instance_pre)
                    .map_err(|e| invalid(format!("does not match the attestor world: {e}")))?,
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

    /// The builder that takes over a build whose context has no Dockerfile
    /// (its manifest says `[kinds] dockerfile-fallback = true`: the wizard):
    /// its builder name and plugin. The first by name if several say so.
    pub fn dockerfile_fallback(&self) -> Option<(&str, &LoadedPlugin)> {
        self.builders
            .iter()
            .map(|(name, id)| (name.as_str(), &self.plugins[id]))
            .find(|(_, plugin)| plugin.manifest.kinds.dockerfile_fallback)
    }

    /// Builder names this host answers to.
    pub fn builder_names(&self) -> Vec<String> {
        self.builders.keys().cloned().collect()
    }

    /// The wasmtime engine every plugin runs on (for tools and benchmarks).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The attestors loaded, by id: each says something about every
    /// pushed image.
    pub fn attestors(&self) -> impl Iterator<Item = &LoadedPlugin> {
        self.plugins.values().filter(|p| p.world == World::Attestor)
    }

    /// The first detector loaded, if any.
    pub fn detector(&self) -> Option<&LoadedPlugin> {
        self.plugins.values().find(|p| p.world == World::Detector)
    }

    /// Where the artifact compiled from the component with this sha256 by
    /// this engine configuration is cached, when there is a cache.
    fn cache_path(&self, sha256: &str) -> Option<PathBuf> {
        let compatibility = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            self.engine
                .precompile_compatibility_hash()
                .hash(&mut hasher);
            hasher.finish()
        };
        let dir = self.cache_dir.as_ref()?;
        Some(dir.join(format!("{sha256}-{compatibility:016x}.cwasm")))
    }

    /// Files in the compile cache no loaded plugin uses: artifacts of
    /// plugins since changed or removed, or of another engine
    /// configuration, and temporary files of interrupted writes.
    pub fn stale_cache_files(&self) -> Vec<PathBuf> {
        let Some(dir) = &self.cache_dir else {
            return Vec::new();
        };
        let in_use: std::collections::HashSet<PathBuf> = self
            .plugins
            .values()
            .filter_map(|plugin| self.cache_path(&plugin.sha256))
            .collect();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.is_file() && !in_use.contains(path))
            .collect()
    }

    /// Compile a component, or load the artifact compiled earlier for the
    /// same bytes and the same engine configuration.
    fn compile(&self, bytes: &[u8], sha256: &str) -> wasmtime::Result<(Component, bool)> {
        let (Some(dir), Some(path)) = (&self.cache_dir, self.cache_path(sha256)) else {
            return Ok((Component::new(&self.engine, bytes)?, false));
        };
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
