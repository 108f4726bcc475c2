//! `kiln-plugin-test`: test a Kiln plugin from an ordinary `cargo test`, in
//! the real plugin runtime (`kiln-plugin-runtime`: the same wasmtime
//! configuration, sandbox, limits and permission checks as `kiln serve`)
//! with fake host capabilities that record what the plugin asked for. No
//! Docker Engine, registry, git server or Kiln server is needed.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kiln_plugin_test::HarnessError> {
//! use kiln_plugin_test::{BuildCall, EngineCall, PluginHarness};
//!
//! // Builds the crate's component (cargo build --release --target
//! // wasm32-wasip2) and loads it with what its manifest asks for granted.
//! let harness = PluginHarness::build_and_load(env!("CARGO_MANIFEST_DIR"))?;
//! let context = tempfile::tempdir()?;
//! std::fs::write(context.path().join("Dockerfile"), "FROM scratch\n")?;
//! let built = harness.build(BuildCall::default(), context.path()).await?;
//! let output = built.result.expect("the build succeeds");
//! assert_eq!(output.image_refs, BuildCall::default().image_refs);
//! // What the builder asked the engine for:
//! let EngineCall::BuildkitBuild(request) = &built.engine[0] else { panic!() };
//! assert_eq!(request.dockerfile, "Dockerfile");
//! # Ok(()) }
//! ```
//!
//! What lives where:
//!
//! * this file — [`PluginHarness`]: load a plugin (a directory, a crate to
//!   build, or bytes), then one method per export: [`materialize`],
//!   [`build`], [`detect`], the credential store's [`get`], [`put`],
//!   [`delete`] and [`list_keys`], a notifier's [`notify`], an attestor's
//!   [`attest`]. Each returns the plugin's own answer
//!   (`result`) with what was recorded during the call; a trap or a limit
//!   hit is a [`HarnessError`].
//! * [`fakes`] — [`FakeEngine`] and [`FakeGit`], the configurable answers,
//!   and the recordings ([`EngineCall`], [`LogLine`]).
//!
//! [`attest`]: PluginHarness::attest
//! [`materialize`]: PluginHarness::materialize
//! [`build`]: PluginHarness::build
//! [`detect`]: PluginHarness::detect
//! [`get`]: PluginHarness::get
//! [`put`]: PluginHarness::put
//! [`delete`]: PluginHarness::delete
//! [`list_keys`]: PluginHarness::list_keys
//! [`notify`]: PluginHarness::notify

pub mod fakes;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kiln_plugin_runtime::bindings::builder::exports::kiln::plugin::build::{
    BuildOutput, BuildRequest,
};
use kiln_plugin_runtime::bindings::detector::exports::kiln::plugin::detect::{
    DetectRequest, Project,
};
use kiln_plugin_runtime::bindings::git::CheckoutRequest;
use kiln_plugin_runtime::bindings::source::exports::kiln::plugin::source::{
    ContextInfo, SourceSpec,
};
use kiln_plugin_runtime::bindings::types::{HostFacts, KeyValue, ResourceLimits};
use kiln_plugin_runtime::{
    Capabilities, CredentialAnswer, CredentialCall, EngineLoan, LoadedPlugin, Manifest,
    PluginGrant, PluginRuntime, Preopens,
};

pub use fakes::{EngineCall, FakeEngine, FakeGit, LogLine, FAKE_COMMIT, FAKE_DIGEST};
pub use kiln_plugin_runtime::bindings::attest::Attestation;
pub use kiln_plugin_runtime::bindings::notify::{BuildEvent, Delivered, NotifyError};
pub use kiln_plugin_runtime::bindings::types::{FailureReason, PluginError};
pub use kiln_plugin_runtime::{LogLevel, PluginError as RuntimeError};

use fakes::{RecordingGit, RecordingLog};

/// Why a harness call failed (as opposed to the plugin answering with an
/// error, which is the call's `result`).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("the plugin did not load: {0}")]
    Load(String),
    #[error("building the plugin's component failed: {0}")]
    Build(String),
    #[error("the plugin crashed or hit a limit: {0}")]
    Runtime(#[from] kiln_plugin_runtime::PluginError),
    #[error("this call needs a {needed} plugin; {id} is a {world}")]
    WrongWorld {
        id: String,
        world: &'static str,
        needed: &'static str,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A plugin loaded in a real runtime, with fake host capabilities.
pub struct PluginHarness {
    runtime: PluginRuntime,
    id: String,
    engine: FakeEngine,
    git: FakeGit,
    credentials_dir: Option<PathBuf>,
}

/// What one `materialize` call did.
pub struct Materialized {
    pub result: Result<ContextInfo, PluginError>,
    /// The context directory the plugin filled; removed on drop.
    pub context: tempfile::TempDir,
    /// Every git checkout it asked for.
    pub checkouts: Vec<CheckoutRequest>,
    pub log: Vec<LogLine>,
}

/// What one `build` call did.
pub struct Built {
    pub result: Result<BuildOutput, PluginError>,
    /// Every engine and registry request, in order.
    pub engine: Vec<EngineCall>,
    pub log: Vec<LogLine>,
}

/// What one call without host capabilities (detect, credentials) did.
pub struct Answered<T> {
    pub result: Result<T, PluginError>,
    pub log: Vec<LogLine>,
}

/// What one `notify` call did. A notifier reaches its receiver for real
/// (over `wasi:http`, to the hosts its grant lists): point it at a server
/// the test runs.
pub struct Notified {
    pub result: Result<Delivered, NotifyError>,
    pub log: Vec<LogLine>,
}

/// An attestor's `attest` request, with defaults a test overrides as
/// needed: `registry.test/acme/app:latest` at [`FAKE_DIGEST`].
#[derive(Debug, Clone)]
pub struct AttestCall {
    pub image_refs: Vec<String>,
    pub digest: String,
    pub platform: Option<String>,
    /// The operator's options for the attestor.
    pub options: Vec<(String, String)>,
}

impl Default for AttestCall {
    fn default() -> Self {
        AttestCall {
            image_refs: vec!["registry.test/acme/app:latest".into()],
            digest: FAKE_DIGEST.into(),
            platform: None,
            options: Vec::new(),
        }
    }
}

/// A notifier's `notify` request, with defaults a test overrides as needed:
/// a `build.succeeded` of `acme/app` #3.
#[derive(Debug, Clone)]
pub struct NotifyCall {
    pub event: BuildEvent,
    /// The subscription's options.
    pub options: Vec<(String, String)>,
    pub attempt: u32,
}

impl Default for NotifyCall {
    fn default() -> Self {
        NotifyCall {
            event: BuildEvent {
                delivery_id: "msg_0000000000000000000001".into(),
                event_type: "build.succeeded".into(),
                timestamp: "2026-01-01T00:00:00.000Z".into(),
                org: "acme".into(),
                build_id: "00000000-0000-4000-8000-000000000003".into(),
                number: 3,
                name: "app".into(),
                project_id: None,
                status: "SUCCEEDED".into(),
                image_refs: vec!["registry.test/acme/app:latest".into()],
                digest: Some(FAKE_DIGEST.into()),
                failure_reason: None,
                failure_message: None,
                duration_ms: Some(1500),
                git_url: None,
                git_reference: None,
                git_commit: None,
                build_url: None,
                json: format!(
                    r#"{{"type":"build.succeeded","timestamp":"2026-01-01T00:00:00.000Z","data":{{"buildId":"00000000-0000-4000-8000-000000000003","org":"acme","number":3,"name":"app","status":"BUILD_STATUS_SUCCEEDED","imageRefs":["registry.test/acme/app:latest"],"digest":"{FAKE_DIGEST}","source":{{"kind":"inline-zip"}}}}}}"#
                ),
            },
            options: Vec::new(),
            attempt: 1,
        }
    }
}

/// A builder's `build` request, with defaults a test overrides as needed.
#[derive(Debug, Clone)]
pub struct BuildCall {
    pub dockerfile: String,
    /// The references the host assigned (and the only ones a build may push).
    pub image_refs: Vec<String>,
    pub build_args: Vec<(String, String)>,
    pub target: Option<String>,
    pub platform: Option<String>,
    pub no_cache: bool,
    /// Build secrets by id (the engine may mount exactly these).
    pub secrets: Vec<String>,
    /// The executor image the operator configured (`host.executor-image`).
    pub executor_image: Option<String>,
    /// Labels every image must carry (`host.labels`).
    pub labels: Vec<(String, String)>,
    /// Base image per stack (`host.base-images`).
    pub base_images: Vec<(String, String)>,
}

impl Default for BuildCall {
    fn default() -> Self {
        BuildCall {
            dockerfile: "Dockerfile".into(),
            image_refs: vec!["registry.test/acme/app:latest".into()],
            build_args: Vec::new(),
            target: None,
            platform: None,
            no_cache: false,
            secrets: Vec::new(),
            executor_image: None,
            labels: Vec::new(),
            base_images: Vec::new(),
        }
    }
}

fn key_values(pairs: &[(String, String)]) -> Vec<KeyValue> {
    pairs
        .iter()
        .map(|(key, value)| KeyValue {
            key: key.clone(),
            value: value.clone(),
        })
        .collect()
}

impl PluginHarness {
    /// Load the plugin in `dir` (its `plugin.toml` and the component it
    /// names), granting what its manifest asks for.
    pub fn load(dir: &Path) -> Result<Self, HarnessError> {
        Self::load_with_grant(dir, PluginGrant::asked())
    }

    /// Load the plugin in `dir` under an explicit operator grant.
    pub fn load_with_grant(dir: &Path, grant: PluginGrant) -> Result<Self, HarnessError> {
        let id = Manifest::read_dir(dir)
            .map_err(|e| HarnessError::Load(e.to_string()))?
            .id;
        // Only this plugin: the harness tests it alone, under its own id.
        let mut runtime = PluginRuntime::new()?;
        let grants = [(id.clone(), grant)].into_iter().collect();
        let id = runtime
            .load_one(dir, &grants)
            .map_err(|e| HarnessError::Load(e.message))?;
        Ok(Self::with_runtime(runtime, id))
    }

    /// Load a plugin from its manifest text and component bytes.
    pub fn from_bytes(
        manifest: &str,
        component: &[u8],
        grant: PluginGrant,
    ) -> Result<Self, HarnessError> {
        let manifest = Manifest::parse(manifest).map_err(|e| HarnessError::Load(e.to_string()))?;
        let id = manifest.id.clone();
        let granted = grant.rights(&manifest.permissions);
        let mut runtime = PluginRuntime::new()?;
        runtime
            .add(manifest, component, "bytes".into(), granted, Some(grant))
            .map_err(|e| HarnessError::Load(e.to_string()))?;
        Ok(Self::with_runtime(runtime, id))
    }

    /// Build the plugin crate in `crate_dir` for `wasm32-wasip2` (release,
    /// into its own `target/`, where its `plugin.toml` points) and load it.
    pub fn build_and_load(crate_dir: impl AsRef<Path>) -> Result<Self, HarnessError> {
        let crate_dir = crate_dir.as_ref();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let output = std::process::Command::new(cargo)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(crate_dir.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(crate_dir.join("target"))
            .output()?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
            return Err(HarnessError::Build(format!(
                "cargo build --target wasm32-wasip2 in {}: {}{}",
                crate_dir.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                if stderr.contains("wasm32-wasip2")
                    && stderr.contains("target may not be installed")
                {
                    "\n(run: rustup target add wasm32-wasip2)"
                } else {
                    ""
                }
            )));
        }
        Self::load(crate_dir)
    }

    fn with_runtime(runtime: PluginRuntime, id: String) -> Self {
        PluginHarness {
            runtime,
            id,
            engine: FakeEngine::default(),
            git: FakeGit::default(),
            credentials_dir: None,
        }
    }

    /// Answer engine requests this way (builders).
    pub fn with_engine(mut self, engine: FakeEngine) -> Self {
        self.engine = engine;
        self
    }

    /// Answer git checkouts this way (context sources).
    pub fn with_git(mut self, git: FakeGit) -> Self {
        self.git = git;
        self
    }

    /// Mount this directory read-only at `/credentials` (credential stores).
    pub fn with_credentials_dir(mut self, dir: &Path) -> Self {
        self.credentials_dir = Some(dir.to_path_buf());
        self
    }

    /// The loaded plugin: its manifest, world, effective grant and limits.
    pub fn plugin(&self) -> &LoadedPlugin {
        self.runtime.plugin(&self.id).expect("loaded")
    }

    fn expect_world(
        &self,
        needed: kiln_plugin_runtime::World,
    ) -> Result<&LoadedPlugin, HarnessError> {
        let plugin = self.plugin();
        if plugin.world == needed {
            Ok(plugin)
        } else {
            Err(HarnessError::WrongWorld {
                id: self.id.clone(),
                world: plugin.world.wit_name(),
                needed: needed.wit_name(),
            })
        }
    }

    /// Instantiate the plugin in a fresh sandbox without calling it:
    /// whether the component links and starts.
    pub async fn instantiate(&self) -> Result<(), HarnessError> {
        Ok(self.runtime.instantiate(self.plugin()).await?)
    }

    /// Call a context source's `materialize` with these options and, when
    /// given, this file staged as its input (`/input/<file name>`), into a
    /// fresh temporary context. Git checkouts go to the [`FakeGit`].
    pub async fn materialize(
        &self,
        options: &[(&str, &str)],
        input: Option<&Path>,
    ) -> Result<Materialized, HarnessError> {
        let plugin = self.expect_world(kiln_plugin_runtime::World::ContextSource)?;
        let context = tempfile::tempdir()?;
        let staging = tempfile::tempdir()?;
        let input_path = match input {
            Some(file) => {
                let name = file.file_name().unwrap_or_default().to_owned();
                std::fs::copy(file, staging.path().join(&name))?;
                Some(format!("/input/{}", name.to_string_lossy()))
            }
            None => None,
        };
        let spec = SourceSpec {
            kind: plugin
                .manifest
                .kinds
                .context_source
                .first()
                .cloned()
                .unwrap_or_default(),
            input_path,
            options: options
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            max_unpacked_bytes: 1 << 30,
            max_entries: 100_000,
        };
        let preopens = Preopens {
            context: Some(context.path().to_path_buf()),
            context_writable: true,
            input: Some(staging.path().to_path_buf()),
            credentials: None,
            rootfs: None,
        };
        let log = Arc::new(RecordingLog::default());
        let git = Arc::new(RecordingGit {
            answers: self.git.clone(),
            context: context.path().to_path_buf(),
            calls: Mutex::new(Vec::new()),
        });
        let caps = Capabilities::for_plugin(plugin)
            .with_log(log.clone())
            .with_git(git.clone());
        let result = self
            .runtime
            .materialize(plugin, caps, &preopens, &spec)
            .await?;
        Ok(Materialized {
            result,
            context,
            checkouts: git.take(),
            log: log.take(),
        })
    }

    /// Call a builder's `build` with `context` mounted read-only at
    /// `/context`; engine requests go to the [`FakeEngine`].
    pub async fn build(&self, call: BuildCall, context: &Path) -> Result<Built, HarnessError> {
        let plugin = self.expect_world(kiln_plugin_runtime::World::Builder)?;
        let request = BuildRequest {
            build_id: "test-build".into(),
            dockerfile: call.dockerfile,
            image_refs: call.image_refs.clone(),
            build_args: key_values(&call.build_args),
            target: call.target,
            platform: call.platform,
            no_cache: call.no_cache,
            secrets: call.secrets.clone(),
            limits: ResourceLimits {
                profile: "medium".into(),
                memory_bytes: 4 << 30,
                nano_cpus: 2_000_000_000,
            },
            host: HostFacts {
                registry: "registry.test".into(),
                registry_plain_http: false,
                cache_repo: None,
                executor_image: call.executor_image,
                labels: key_values(&call.labels),
                base_images: key_values(&call.base_images),
            },
        };
        let preopens = Preopens {
            context: Some(context.to_path_buf()),
            ..Preopens::none()
        };
        let log = Arc::new(RecordingLog::default());
        let engine = fakes::recording_engine(&self.engine);
        let caps = Capabilities::for_plugin(plugin)
            .with_log(log.clone())
            .with_engine(EngineLoan {
                engine: engine.clone(),
                allowed_refs: call.image_refs,
                secret_ids: call.secrets.into_iter().collect(),
            });
        let result = self
            .runtime
            .build(plugin, caps, &preopens, &request)
            .await?;
        Ok(Built {
            result,
            engine: engine.take(),
            log: log.take(),
        })
    }

    /// Call a detector's `detect` on `context` (read-only) for the
    /// directory `path` inside it.
    pub async fn detect(
        &self,
        context: &Path,
        path: &str,
        base_images: &[(&str, &str)],
    ) -> Result<Answered<Vec<Project>>, HarnessError> {
        let plugin = self.plugin();
        let request = DetectRequest {
            path: path.to_string(),
            monorepo: true,
            base_images: base_images
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
        };
        let log = Arc::new(RecordingLog::default());
        let caps = Capabilities::for_plugin(plugin).with_log(log.clone());
        let result = self.runtime.detect(plugin, caps, context, &request).await?;
        Ok(Answered {
            result,
            log: log.take(),
        })
    }

    /// Call a notifier's `notify`: one delivery attempt of `call.event`.
    pub async fn notify(&self, call: NotifyCall) -> Result<Notified, HarnessError> {
        let plugin = self.expect_world(kiln_plugin_runtime::World::Notifier)?;
        let request = kiln_plugin_runtime::bindings::notify::NotifyRequest {
            event: call.event,
            options: key_values(&call.options),
            attempt: call.attempt,
        };
        let log = Arc::new(RecordingLog::default());
        let caps = Capabilities::for_plugin(plugin).with_log(log.clone());
        let result = self.runtime.notify(plugin, caps, &request).await?;
        Ok(Notified {
            result,
            log: log.take(),
        })
    }

    /// Call an attestor's `attest` on an image whose filesystem is the
    /// directory `rootfs` (mounted read-only at `/rootfs`, as the host
    /// mounts the pushed image's).
    pub async fn attest(
        &self,
        rootfs: &Path,
        call: AttestCall,
    ) -> Result<Answered<Attestation>, HarnessError> {
        let plugin = self.expect_world(kiln_plugin_runtime::World::Attestor)?;
        let request = kiln_plugin_runtime::bindings::attest::AttestRequest {
            build_id: "00000000-0000-4000-8000-000000000003".into(),
            image: kiln_plugin_runtime::bindings::attest::Image {
                image_refs: call.image_refs,
                digest: call.digest,
                platform: call.platform,
            },
            rootfs: "/rootfs".into(),
            options: key_values(&call.options),
        };
        let log = Arc::new(RecordingLog::default());
        let caps = Capabilities::for_plugin(plugin).with_log(log.clone());
        let result = self.runtime.attest(plugin, caps, rootfs, &request).await?;
        Ok(Answered {
            result,
            log: log.take(),
        })
    }

    async fn credential_call(
        &self,
        call: CredentialCall<'_>,
    ) -> Result<Answered<CredentialAnswer>, HarnessError> {
        let plugin = self.expect_world(kiln_plugin_runtime::World::CredentialStore)?;
        let log = Arc::new(RecordingLog::default());
        let caps = Capabilities::for_plugin(plugin).with_log(log.clone());
        let result = self
            .runtime
            .credentials(plugin, caps, self.credentials_dir.as_deref(), call)
            .await?;
        Ok(Answered {
            result,
            log: log.take(),
        })
    }

    /// A credential store's `get`.
    pub async fn get(
        &self,
        org: &str,
        key: &str,
    ) -> Result<Answered<Option<Vec<u8>>>, HarnessError> {
        let answered = self
            .credential_call(CredentialCall::Get { org, key })
            .await?;
        Ok(answered.map(|answer| match answer {
            CredentialAnswer::Value(value) => value,
            _ => None,
        }))
    }

    /// A credential store's `put`.
    pub async fn put(
        &self,
        org: &str,
        key: &str,
        value: &[u8],
    ) -> Result<Answered<()>, HarnessError> {
        let answered = self
            .credential_call(CredentialCall::Put { org, key, value })
            .await?;
        Ok(answered.map(|_| ()))
    }

    /// A credential store's `delete`.
    pub async fn delete(&self, org: &str, key: &str) -> Result<Answered<bool>, HarnessError> {
        let answered = self
            .credential_call(CredentialCall::Delete { org, key })
            .await?;
        Ok(answered.map(|answer| matches!(answer, CredentialAnswer::Deleted(true))))
    }

    /// A credential store's `list-keys`.
    pub async fn list_keys(&self, org: &str) -> Result<Answered<Vec<String>>, HarnessError> {
        let answered = self
            .credential_call(CredentialCall::ListKeys { org })
            .await?;
        Ok(answered.map(|answer| match answer {
            CredentialAnswer::Keys(keys) => keys,
            _ => Vec::new(),
        }))
    }
}

impl<T> Answered<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Answered<U> {
        Answered {
            result: self.result.map(f),
            log: self.log,
        }
    }
}
