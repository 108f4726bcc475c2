//! What a plugin reaches through the host interfaces it imports, and the
//! traits the embedder implements to provide it.
//!
//! The runtime owns the checks; the embedder owns the effects. Every host
//! function's first statement checks the calling plugin's effective
//! permission (and the call's scope: the build's own image references, the
//! secrets its request names, the git hosts granted); only then does it call
//! the embedder's [`Engine`] or [`Git`], which never sees a request the
//! plugin was not allowed to make. A plugin never receives a credential or a
//! host path, only results.
//!
//! | interface | what a plugin can do with it | permission | provided by |
//! |---|---|---|---|
//! | `log` | append lines to the call's log (capped per call) | always | [`LogSink`] |
//! | `engine` | `buildkit-build` the build's context into the build's own references (secret mounts by id: `secrets = ["build"]`) | `engine = ["buildkit-build"]` | [`Engine`] |
//! | `engine` | `container-start` an image (context read-only, registry config, output directory), read its output, wait for it | `engine = ["container-run"]` and the image in `images` | [`Engine`], [`RunningContainer`] |
//! | `engine` | `registry-manifest` of one of the build's own references | `engine = ["registry-manifest"]` | [`Engine`] |
//! | `git` | check a repository out into the build's context | `git = ["host", "*.glob", "file://"]` | [`Git`] |

mod engine;
mod git;

use std::collections::BTreeSet;
use std::sync::Arc;

pub use git::{host_permitted, GitPermit, FILE_PERMISSION};

use crate::bindings::{engine as wit_engine, log, types};
use crate::manifest::Permissions;
use crate::runtime::LoadedPlugin;
use crate::sandbox::PluginState;

/// Most bytes of log one plugin call may write.
pub const LOG_BUDGET_BYTES: usize = 4 << 20;

/// Most bytes a plugin may hand the engine in one request (a generated
/// Dockerfile, build args, labels, tags together).
pub const ENGINE_REQUEST_BYTES: usize = 1 << 20;

/// How a line reached the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    /// Printed to stdout or stderr rather than logged.
    Printed,
    /// A line of the build's own output (`log.output`: a build tool's
    /// progress as the builder renders it), not the plugin's commentary.
    Output,
}

/// Where a call's log lines go (a build's log; a test's recorder).
///
/// Lines arrive one at a time (a multi-line message is split), within the
/// call's [`LOG_BUDGET_BYTES`]; the runtime reports a cut once, itself.
pub trait LogSink: Send + Sync {
    fn write(&self, plugin_id: &str, level: LogLevel, line: &str);
}

/// A failure the engine reports, in the contract's terms.
pub type EngineFailure = types::EngineFailure;

/// Why a host function did not do what was asked, in the contract's terms.
pub type HostError = types::HostError;

/// The container engine and registry as one build may use them. The
/// runtime calls these only after the plugin's permission and the build's
/// scope ([`EngineLoan`]) allowed the request; the implementation adds what
/// the plugin never sees (credentials, secret values, the context's host
/// path) and streams the engine's output into the build's log.
#[async_trait::async_trait]
pub trait Engine: Send + Sync {
    /// Build the build's context with BuildKit and push every tag; the tags
    /// are the build's own and each named secret is one of its own.
    async fn buildkit_build(
        &self,
        request: wit_engine::BuildkitRequest,
    ) -> Result<wit_engine::ImageResult, HostError>;

    /// Start a container of a granted image; its mount points are absolute
    /// paths without `:`, `,` or `..`. Dropping what it returns stops and
    /// removes the container.
    async fn container_start(
        &self,
        request: wit_engine::ContainerRunRequest,
    ) -> Result<Box<dyn RunningContainer>, HostError>;

    /// What the registry holds for one of the build's own references.
    async fn registry_manifest(
        &self,
        reference: &str,
    ) -> Result<wit_engine::PushedImage, HostError>;
}

/// A container an [`Engine`] started for a plugin.
#[async_trait::async_trait]
pub trait RunningContainer: Send + Sync {
    /// The next lines it printed, waiting until there is at least one;
    /// `None` once it has exited and every line was read.
    async fn read_output(&mut self) -> Option<Vec<String>>;

    /// Wait for the exit (output not read yet is dropped); the container is
    /// removed. Called at most once.
    async fn wait(&mut self) -> Result<wit_engine::ContainerExit, HostError>;
}

/// A container in a plugin's resource table: the contract's `container`.
pub struct ContainerHandle {
    pub(crate) running: Box<dyn RunningContainer>,
    pub(crate) waited: bool,
}

/// The engine lent to one call, with the scope the runtime checks requests
/// against.
#[derive(Clone)]
pub struct EngineLoan {
    pub engine: Arc<dyn Engine>,
    /// The only references this build may tag, push and read.
    pub allowed_refs: Vec<String>,
    /// The ids of the secrets this build's request names: the only ones a
    /// plugin may mount.
    pub secret_ids: BTreeSet<String>,
}

/// Git checkouts into one build's context, as the host performs them.
#[async_trait::async_trait]
pub trait Git: Send + Sync {
    /// Check `request.url` out into the build's context. The implementation
    /// parses the URL and asks `permit` whether its host (or `file://`) is
    /// granted before it touches the network or the disk.
    async fn checkout(
        &self,
        request: crate::bindings::git::CheckoutRequest,
        permit: GitPermit,
    ) -> Result<crate::bindings::git::CheckoutResult, crate::bindings::git::GitError>;
}

/// What the host lends one plugin call: where its log goes, and (for
/// builders and git context sources) the engine or git, scoped to one build.
pub struct Capabilities {
    pub(crate) plugin_id: String,
    pub(crate) granted: Arc<Permissions>,
    pub(crate) log: Option<Arc<dyn LogSink>>,
    pub(crate) engine: Option<EngineLoan>,
    pub(crate) git: Option<Arc<dyn Git>>,
    /// Values the plugin may name in its HTTP requests but never read.
    pub(crate) http_secrets: Arc<std::collections::BTreeMap<String, String>>,
    log_bytes_left: usize,
    log_cut_reported: bool,
}

impl Capabilities {
    /// Nothing lent: the plugin's log lines go to the operator's log at
    /// debug level.
    pub fn new(plugin_id: &str, granted: Arc<Permissions>) -> Self {
        Capabilities {
            plugin_id: plugin_id.to_string(),
            granted,
            log: None,
            engine: None,
            git: None,
            http_secrets: Arc::default(),
            log_bytes_left: LOG_BUDGET_BYTES,
            log_cut_reported: false,
        }
    }

    /// Nothing lent, for this loaded plugin under its effective grant.
    pub fn for_plugin(plugin: &LoadedPlugin) -> Self {
        Self::new(&plugin.manifest.id, plugin.granted.clone())
    }

    /// Send the call's log lines (and what it prints) here.
    pub fn with_log(mut self, sink: Arc<dyn LogSink>) -> Self {
        self.log = Some(sink);
        self
    }

    /// Secrets the plugin may put in its HTTP requests by name, as
    /// `@@secret:NAME@@` in a URL's path or query or a header's value: the
    /// host's gate writes the value in after the request leaves the
    /// sandbox, so the plugin never holds it (a notifier's chat-hook token).
    pub fn with_http_secrets(
        mut self,
        secrets: std::collections::BTreeMap<String, String>,
    ) -> Self {
        self.http_secrets = Arc::new(secrets);
        self
    }

    /// Lend git checkouts for this call (context sources).
    pub fn with_git(mut self, git: Arc<dyn Git>) -> Self {
        self.git = Some(git);
        self
    }

    /// Lend the engine for this call (builders).
    pub fn with_engine(mut self, loan: EngineLoan) -> Self {
        self.engine = Some(loan);
        self
    }

    fn denied(&self, what: &str) -> HostError {
        HostError::Denied(format!(
            "plugin {} is not granted {what}; its manifest must ask for it and the operator must grant it",
            self.plugin_id
        ))
    }
}

impl types::Host for PluginState {}

impl log::Host for PluginState {
    async fn write(&mut self, level: log::Level, line: String) -> wasmtime::Result<()> {
        // Permission: every plugin may log, within its budget.
        let level = match level {
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        self.caps.log_line(level, &line);
        Ok(())
    }

    async fn output(&mut self, line: String) -> wasmtime::Result<()> {
        // Permission: every plugin may log, within its budget.
        self.caps.log_line(LogLevel::Output, &line);
        Ok(())
    }
}

impl Capabilities {
    /// One logged line (or several, split), within the call's budget.
    fn log_line(&mut self, level: LogLevel, line: &str) {
        let Some(sink) = self.log.clone() else {
            tracing::debug!(plugin = %self.plugin_id, ?level, "{line}");
            return;
        };
        if line.len() > self.log_bytes_left {
            if !self.log_cut_reported {
                self.log_cut_reported = true;
                sink.write(
                    &self.plugin_id,
                    LogLevel::Info,
                    &format!(
                        "log output cut: a plugin call may write at most {} MiB",
                        LOG_BUDGET_BYTES >> 20
                    ),
                );
            }
            return;
        }
        self.log_bytes_left -= line.len();
        for part in line.lines() {
            sink.write(&self.plugin_id, level, part);
        }
    }
}
