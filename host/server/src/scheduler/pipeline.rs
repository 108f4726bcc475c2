//! One build's steps, from staged input to pushed image.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use std::sync::{Arc, Mutex};

use crate::capabilities::git::BuildGit;
use crate::capabilities::BuildEngine;
use crate::config::ServerConfig;
use crate::context::{self, ContextError};
use crate::engine::pool::EngineSeat;
use crate::engine::RegistryAuth;
use crate::git::{Checkout, CredentialLookup, GitError, GitFetcher, RefKind};
use crate::plugins::bindings::builder::exports::kiln::plugin::build as wit_build;
use crate::plugins::bindings::source::exports::kiln::plugin::source as wit_source;
use crate::plugins::bindings::types as wit;
use crate::plugins::{Capabilities, EngineLoan, PluginRuntime, Preopens};
use crate::store::{BuildLog, BuildRecord, Failure, FailureReason};

use super::failure::hint_for;

/// The directories one build uses.
pub struct Paths {
    /// The input the API staged, or the worker wrote from the store
    /// (`staging/<id>/`), preopened read-only as `/input`.
    pub input: PathBuf,
    /// `workspaces/<id>/`.
    pub workspace: PathBuf,
    /// `workspaces/<id>/context/`, preopened as `/context`.
    pub context: PathBuf,
}

impl Paths {
    pub fn new(data_dir: &Path, build_id: &str) -> Self {
        let workspace = data_dir.join("workspaces").join(build_id);
        Paths {
            input: super::staging_dir(data_dir, build_id),
            context: workspace.join("context"),
            workspace,
        }
    }

    /// Remove everything the build left on disk.
    pub fn remove_all(&self) {
        for dir in [&self.workspace, &self.input] {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("cannot remove {}: {e}", dir.display());
                }
            }
        }
    }
}

/// A build's secret values, resolved from the organization's store.
struct ResolvedSecrets {
    build_args: HashMap<String, String>,
    mounts: HashMap<String, String>,
    registry_auth: Option<RegistryAuth>,
}

/// What every image of a build is built with.
struct BuildJob<'a> {
    plugin: &'a crate::plugins::LoadedPlugin,
    checkout: Option<&'a Checkout>,
    secrets: &'a ResolvedSecrets,
    cache_from: &'a [String],
}

/// One run of the builder: on which engine, for which platform, pushed
/// as what, logged where.
struct Run<'a> {
    engine: crate::engine::DockerEngine,
    log: &'a BuildLog,
    platform: Option<&'a str>,
    image_refs: &'a [String],
}

/// What a successful build produced.
pub struct Built {
    pub digest: String,
    pub image_refs: Vec<String>,
    pub size_bytes: u64,
    pub layer_count: u32,
    pub cached_steps: u32,
    pub total_steps: u32,
    /// The Dockerfile the builder generated, when it did (else the
    /// context's was built).
    pub generated_dockerfile: Option<String>,
}

pub struct Pipeline<'a> {
    pub runtime: &'a PluginRuntime,
    /// The engine it runs on (it may move once, when that engine is lost).
    pub engine: &'a EngineSeat,
    pub config: &'a ServerConfig,
    pub log: &'a BuildLog,
    pub record: &'a BuildRecord,
    pub paths: &'a Paths,
    pub metrics: &'a crate::metrics::Metrics,
    pub secrets: &'a crate::credentials::CredentialStores,
    pub store: &'a crate::store::Store,
    pub phases: &'a Arc<crate::capabilities::PhaseClock>,
}

/// Longest failure message a record keeps: the failing step and its last
/// output lines fit; a plugin (or an archive entry name) cannot make the
/// record carry kilobytes of noise.
const MAX_FAILURE_MESSAGE_BYTES: usize = 8 << 10;

/// A failure with its reason's hint, the message capped.
pub fn failure(
    reason: FailureReason,
    message: impl Into<String>,
    exit_code: Option<i32>,
) -> Failure {
    let mut message = message.into();
    let dropped = crate::store::truncate_at_char_boundary(&mut message, MAX_FAILURE_MESSAGE_BYTES);
    if dropped > 0 {
        message.push_str(&format!(
            "… ({dropped} more bytes; the build log has the rest)"
        ));
    }
    Failure {
        reason,
        message,
        hint: hint_for(reason, exit_code),
        exit_code,
    }
}

/// A failed try of a build, ending now, kept in its record's `attempts`.
fn attempt(
    profile: &crate::config::Profile,
    engine: String,
    failure: Failure,
    started: chrono::DateTime<chrono::Utc>,
) -> crate::store::Attempt {
    crate::store::Attempt {
        profile: profile.name.clone(),
        engine: Some(engine),
        failure,
        start_time: started,
        finish_time: chrono::Utc::now(),
    }
}

/// The staged input's file name for an archive format.
pub fn staged_file_name(format: &str) -> String {
    format!("context.{format}")
}

/// Where an archive source plugin finds its staged input (`zip` when no
/// format is known), and the `format` option telling it what it is.
/// The `git` context source's options for a repository to check out.
pub fn git_source_options(git: &crate::store::GitSource) -> Vec<wit::KeyValue> {
    let kv = |key: &str, value: &str| wit::KeyValue {
        key: key.into(),
        value: value.into(),
    };
    vec![
        kv("url", &git.url),
        kv("reference", &git.reference),
        kv("context-dir", &git.context_dir),
        kv("submodules", if git.submodules { "true" } else { "false" }),
    ]
}

pub fn staged_archive(format: Option<&str>) -> (Option<String>, Vec<wit::KeyValue>) {
    let format = format.unwrap_or("zip");
    (
        Some(format!("/input/{}", staged_file_name(format))),
        vec![wit::KeyValue {
            key: "format".into(),
            value: format.to_string(),
        }],
    )
}

/// Why [`materialize`] did not give a context.
#[derive(Debug)]
pub enum MaterializeError {
    /// The plugin crashed, hit a limit, or could not be called.
    Runtime(crate::plugins::PluginError),
    /// The plugin said no (bad archive, missing repository…).
    Plugin(wit::PluginError),
    /// The host could not apply what the plugin reported (a link that
    /// would leave the context, a mode on a path that is not there).
    Context(ContextError),
}

/// The one materialize step, shared by builds and `wizard:detect` so both
/// see the same context: the source plugin fills `preopens.context` inside
/// its sandbox, then the host applies the file modes and symlinks the
/// plugin reported (a sandboxed plugin can create neither itself), with
/// the inside-the-context checks.
pub async fn materialize(
    runtime: &PluginRuntime,
    plugin: &crate::plugins::LoadedPlugin,
    caps: Capabilities,
    preopens: &Preopens,
    spec: &wit_source::SourceSpec,
) -> Result<wit_source::ContextInfo, MaterializeError> {
    let root = preopens
        .context
        .as_deref()
        .expect("a context source is always given a context directory");
    let info = runtime
        .materialize(plugin, caps, preopens, spec)
        .await
        .map_err(MaterializeError::Runtime)?
        .map_err(MaterializeError::Plugin)?;
    let modes: Vec<(String, u32)> = info
        .file_modes
        .iter()
        .map(|m| (m.path.clone(), m.mode))
        .collect();
    let links: Vec<(String, String)> = info
        .symlinks
        .iter()
        .map(|l| (l.path.clone(), l.target.clone()))
        .collect();
    context::apply_modes(root, &modes).map_err(MaterializeError::Context)?;
    context::create_symlinks(root, &links).map_err(MaterializeError::Context)?;
    Ok(info)
}

/// The operator's base images per stack, as the wizard's detector and
/// builder take them.
pub fn wizard_base_images(config: &ServerConfig) -> Vec<wit::KeyValue> {
    config
        .wizard_base_images
        .iter()
        .map(|(stack, image)| wit::KeyValue {
            key: stack.clone(),
            value: image.clone(),
        })
        .collect()
}

/// The bytes a build's context may unpack to: the operator's limit, or
/// less when the data directory has less room above the free-disk floor,
/// so one build's context cannot fill the disk the store and the other
/// builds write to.
struct ContextBudget {
    bytes: u64,
    /// The data directory's free bytes, when they (not the limit) set it.
    free: Option<u64>,
}

impl ContextBudget {
    fn now(config: &ServerConfig) -> Self {
        let limit = config.max_context_bytes;
        let free = crate::store::free_bytes(&config.data_dir).ok();
        let room = free.map(|free| free.saturating_sub(config.min_free_disk_bytes));
        match room {
            Some(room) if room < limit => ContextBudget { bytes: room, free },
            _ => ContextBudget {
                bytes: limit,
                free: None,
            },
        }
    }

    /// `failure`, or `DISK_FULL` when the server's disk is what failed
    /// the build: its context hit the budget free space set, or a write
    /// found the disk full (the plugin only sees an I/O error then).
    fn explain(&self, config: &ServerConfig, failure: Failure) -> Failure {
        let over_budget = self.free.is_some()
            && failure.reason == FailureReason::ContextInvalid
            && failure
                .message
                .contains(&format!("more than {} bytes", self.bytes));
        let free_now = crate::store::free_bytes(&config.data_dir).ok();
        let filled =
            free_now.is_some_and(|free| free < (config.min_free_disk_bytes / 2).max(1 << 20));
        if !over_budget && !filled {
            return failure;
        }
        let message = match (over_budget, self.free) {
            (true, Some(free)) => format!(
                "the server's data directory ({}) has no room for this build's context: {} MiB were free when the build started, and the server keeps {} MiB of that for its records and other builds; the context unpacks to more than the {} bytes left",
                config.data_dir.display(),
                free >> 20,
                config.min_free_disk_bytes >> 20,
                self.bytes
            ),
            _ => format!(
                "the server's data directory ({}) filled up while this build wrote its context ({} KiB free); the context source said: {}",
                config.data_dir.display(),
                free_now.unwrap_or(0) >> 10,
                failure.message
            ),
        };
        self::failure(FailureReason::DiskFull, message, None)
    }
}

fn from_context(error: ContextError) -> Failure {
    let reason = match &error {
        ContextError::Invalid(_) => FailureReason::ContextInvalid,
        ContextError::DockerfileNotFound { .. } => FailureReason::DockerfileNotFound,
        ContextError::Io(_) => FailureReason::Internal,
        ContextError::DirNotFound { .. } => FailureReason::ContextDirNotFound,
    };
    failure(reason, error.to_string(), None)
}

fn from_git(error: GitError) -> Failure {
    let reason = match &error {
        GitError::RepositoryNotFound { .. } => FailureReason::GitRepositoryNotFound,
        GitError::AuthenticationRequired { .. } | GitError::ClearTextCredentials { .. } => {
            FailureReason::GitAuthRequired
        }
        GitError::AuthenticationFailed { .. } => FailureReason::GitAuthFailed,
        GitError::UnknownReference { .. } | GitError::AmbiguousReference { .. } => {
            FailureReason::GitReferenceNotFound
        }
        GitError::HostNotPermitted { .. } | GitError::AddressNotPermitted(_) => {
            FailureReason::GitHostNotPermitted
        }
        GitError::ContextDirMissing { .. } | GitError::ContextDirNotDirectory { .. } => {
            FailureReason::ContextDirNotFound
        }
        GitError::UnsafeTree(_) | GitError::TooLarge(_) | GitError::InvalidUrl { .. } => {
            FailureReason::ContextInvalid
        }
        GitError::Submodule { .. } | GitError::Fetch { .. } | GitError::Cancelled { .. } => {
            FailureReason::GitFetchFailed
        }
        GitError::Internal(_) => FailureReason::Internal,
    };
    failure(reason, error.to_string(), None)
}

fn from_runtime(error: crate::plugins::PluginError) -> Failure {
    failure(FailureReason::PluginError, error.to_string(), None)
}

fn from_plugin(plugin_id: &str, error: wit::PluginError) -> Failure {
    match error {
        wit::PluginError::ContextInvalid(m) => failure(FailureReason::ContextInvalid, m, None),
        wit::PluginError::InvalidInput(m) => failure(
            FailureReason::PluginError,
            format!("plugin {plugin_id} refused the request: {m}"),
            None,
        ),
        wit::PluginError::Denied(m) => failure(
            FailureReason::PluginError,
            format!("plugin {plugin_id} was denied: {m}"),
            None,
        ),
        wit::PluginError::Internal(m) => failure(
            FailureReason::PluginError,
            format!("plugin {plugin_id} failed: {m}"),
            None,
        ),
        wit::PluginError::Engine(f) => {
            let reason = match f.reason {
                wit::FailureReason::DockerfileNotFound => FailureReason::DockerfileNotFound,
                wit::FailureReason::DockerfileParseError => FailureReason::DockerfileParseError,
                wit::FailureReason::CopyFailed => FailureReason::CopyFailed,
                wit::FailureReason::RunFailed => FailureReason::RunFailed,
                wit::FailureReason::OutOfMemory => FailureReason::OutOfMemory,
                wit::FailureReason::PushUnauthorized => FailureReason::PushUnauthorized,
                wit::FailureReason::PushDenied => FailureReason::PushDenied,
                wit::FailureReason::EngineError => FailureReason::EngineError,
            };
            failure(reason, f.message, f.exit_code)
        }
    }
}

impl Pipeline<'_> {
    pub async fn run(self) -> Result<Built, Failure> {
        let checkout = self.materialize().await?;
        let missing_dockerfile = self.prepare()?;
        self.phases.context_ready();
        let built = self.build(checkout.as_ref(), missing_dockerfile).await;
        if let Some(kept) = checkout.and_then(|c| c.kept) {
            self.keep_context(kept).await;
        }
        built
    }

    /// The engine is done with a git build's context: move it aside for
    /// the next build of the same repository to reuse (`git::kept`).
    async fn keep_context(&self, kept: crate::git::kept::KeptExport) {
        let context = self.paths.context.clone();
        let kept = tokio::task::spawn_blocking(move || kept.keep(&context)).await;
        if let Ok(Err(e)) = kept {
            let build_id = &self.record.build_id;
            tracing::warn!(build_id, "cannot keep the context for the next build: {e}");
        }
    }

    /// An inline context waits in the store (the API keeps it there, not
    /// as a file); the source plugin reads it from `/input` like an upload.
    fn stage_inline_zip(&self) -> Result<(), Failure> {
        let internal = |message: String| failure(FailureReason::Internal, message, None);
        let build_id = &self.record.build_id;
        let zip = self.store.inline_zip(build_id).map_err(|e| {
            internal(format!(
                "cannot read the inline context of build {build_id}: {e}"
            ))
        })?;
        let Some(zip) = zip else {
            return Ok(());
        };
        std::fs::write(self.paths.input.join(staged_file_name("zip")), &zip)
            .map_err(|e| internal(format!("cannot stage the inline context: {e}")))
    }

    async fn materialize(&self) -> Result<Option<Checkout>, Failure> {
        let kind = &self.record.source.kind;
        let plugin = self.runtime.source(kind).ok_or_else(|| {
            failure(
                FailureReason::PluginError,
                format!("no plugin provides the context source `{kind}`"),
                None,
            )
        })?;
        std::fs::create_dir_all(&self.paths.context).map_err(|e| {
            failure(
                FailureReason::Internal,
                format!("cannot create the workspace: {e}"),
                None,
            )
        })?;
        self.log.system(&format!(
            "context: {kind} (plugin {} {})",
            plugin.manifest.id, plugin.manifest.version
        ));
        std::fs::create_dir_all(&self.paths.input).map_err(|e| {
            failure(
                FailureReason::Internal,
                format!("cannot create the input directory: {e}"),
                None,
            )
        })?;
        self.stage_inline_zip()?;
        let source = &self.record.source;
        let (input_path, options) = match (&source.git, &source.url, &source.format) {
            (Some(git), _, _) => (None, git_source_options(git)),
            (None, Some(url), _) => (
                None,
                vec![wit::KeyValue {
                    key: "url".into(),
                    value: url.clone(),
                }],
            ),
            (None, None, format) => staged_archive(format.as_deref()),
        };
        let budget = ContextBudget::now(self.config);
        let spec = wit_source::SourceSpec {
            kind: kind.clone(),
            input_path,
            options,
            max_unpacked_bytes: budget.bytes,
            max_entries: self.config.max_context_entries,
        };
        let git_outcome = Arc::new(Mutex::new(None));
        let mut caps = Capabilities::for_plugin(plugin).with_log(Arc::new(self.log.clone()));
        if source.git.is_some() {
            caps = caps.with_git(Arc::new(BuildGit {
                fetcher: GitFetcher::new(&self.config.data_dir, self.config.network.clone()),
                org: self.record.org.clone(),
                context_dir: self.paths.context.clone(),
                credentials: self.git_credentials().await?,
                limits: crate::git::Limits {
                    max_bytes: budget.bytes,
                    max_entries: self.config.max_context_entries,
                },
                outcome: git_outcome.clone(),
            }));
        }
        let preopens = Preopens {
            context: Some(self.paths.context.clone()),
            context_writable: true,
            input: Some(self.paths.input.clone()),
            credentials: None,
            rootfs: None,
        };
        let started = std::time::Instant::now();
        let info = materialize(self.runtime, plugin, caps, &preopens, &spec).await;
        self.metrics
            .plugin_call(&plugin.manifest.id, "materialize", started.elapsed());
        // The host's own record of the checkout decides what the build
        // record says, and classifies a failure (the plugin only relays it).
        let checkout = git_outcome.lock().unwrap().take();
        let checkout = match checkout {
            Some(Ok(checkout)) => {
                self.record_checkout(&checkout)?;
                Some(checkout)
            }
            Some(Err(error)) => return Err(budget.explain(self.config, from_git(error))),
            None => None,
        };
        let info = info.map_err(|error| {
            budget.explain(
                self.config,
                match error {
                    MaterializeError::Runtime(e) => from_runtime(e),
                    MaterializeError::Plugin(e) => from_plugin(&plugin.manifest.id, e),
                    MaterializeError::Context(e) => from_context(e),
                },
            )
        })?;
        if source.git.is_some() && checkout.is_none() {
            return Err(failure(
                FailureReason::PluginError,
                format!(
                    "plugin {} reported success without checking the repository out",
                    plugin.manifest.id
                ),
                None,
            ));
        }
        self.log.system(&format!("context: {}", info.summary));
        Ok(checkout)
    }

    /// The organization's git credentials by host (`*` as the fallback),
    /// read once before the checkout; every value used is masked in the log.
    async fn git_credentials(&self) -> Result<CredentialLookup, Failure> {
        let known = self
            .secrets
            .git_credentials(&self.record.org)
            .await
            .map_err(|e| {
                failure(
                    FailureReason::Internal,
                    format!("cannot read the organization's git credentials: {e}"),
                    None,
                )
            })?;
        let log = self.log.clone();
        Ok(crate::git::credential_lookup(known, move |password| {
            log.mask(vec![password.to_string()])
        }))
    }

    /// Put the resolved commit into the record as soon as it is known.
    fn record_checkout(&self, checkout: &Checkout) -> Result<(), Failure> {
        self.log.system(&format!(
            "git: {} {} → commit {} ({} files{}{}{})",
            checkout.kind.as_str(),
            checkout.full_ref.as_deref().unwrap_or(""),
            checkout.commit,
            checkout.files,
            match checkout.reused_files {
                0 => String::new(),
                n => format!(", {n} unchanged since the last build"),
            },
            if checkout.shallow { ", shallow" } else { "" },
            if checkout.received_pack {
                ""
            } else {
                ", nothing new to fetch"
            },
        ));
        let update = self.store.update_build(&self.record.build_id, |r| {
            if let Some(git) = r.source.git.as_mut() {
                git.commit = Some(checkout.commit.clone());
                git.reference_kind = Some(checkout.kind);
                git.full_ref = checkout.full_ref.clone();
                git.branch = match checkout.kind {
                    RefKind::Branch => checkout
                        .full_ref
                        .as_deref()
                        .map(|r| r.trim_start_matches("refs/heads/").to_string()),
                    // A project's push names the commit and says which
                    // branch it was pushed to; that stays.
                    RefKind::Commit if r.project_id.is_some() => git.branch.clone(),
                    _ => None,
                };
            }
        });
        update.map(|_| ()).map_err(|e| {
            failure(
                FailureReason::Internal,
                format!("cannot record the commit: {e}"),
                None,
            )
        })
    }

    /// After materializing: `contextDir`, `.dockerignore`, and the
    /// Dockerfile's presence.
    /// Answers why the Dockerfile is missing when the wizard takes over (no
    /// Dockerfile where the default one was expected, and a wizard is
    /// loaded); `None`: the build goes on as asked.
    fn prepare(&self) -> Result<Option<String>, Failure> {
        let root = &self.paths.context;
        let dir = &self.record.request.context_dir;
        if !dir.is_empty() {
            let set_aside = self.paths.workspace.join("outside-context-dir");
            context::narrow_to(root, dir, &set_aside).map_err(from_context)?;
            self.log.system(&format!(
                "context: the directory {dir} is the build context"
            ));
        }
        let dockerfile = &self.record.request.dockerfile;
        if let Some(report) = context::apply_dockerignore(root, dockerfile).map_err(from_context)? {
            self.log.system(&format!(
                "context: .dockerignore left out {} files ({} bytes)",
                report.removed_files, report.removed_bytes
            ));
        }
        let builder_reads_one = self
            .runtime
            .builder(&self.record.request.builder)
            .is_none_or(|plugin| plugin.manifest.kinds.dockerfile);
        if builder_reads_one {
            match context::find_dockerfile(root, dockerfile) {
                Ok(_) => {}
                Err(e @ ContextError::DockerfileNotFound { .. })
                    if dockerfile == "Dockerfile"
                        && self.runtime.dockerfile_fallback().is_some() =>
                {
                    self.log
                        .system("context: no Dockerfile; the Dockerfile wizard takes over");
                    return Ok(Some(e.to_string()));
                }
                Err(e) => return Err(from_context(e)),
            }
        }
        Ok(None)
    }

    /// Ask the wizard what the context is, put the answer in the record
    /// and the log. `missing_dockerfile`: why the build's Dockerfile was not
    /// found, when the wizard took over.
    async fn record_detection(
        &self,
        plugin: &crate::plugins::LoadedPlugin,
        missing_dockerfile: Option<&str>,
    ) -> Result<(), Failure> {
        use crate::plugins::bindings::detector::exports::kiln::plugin::detect::DetectRequest;
        let request = DetectRequest {
            path: String::new(),
            monorepo: false,
            base_images: wizard_base_images(self.config),
        };
        let projects = self
            .runtime
            .detect(
                plugin,
                Capabilities::for_plugin(plugin).with_log(Arc::new(self.log.clone())),
                &self.paths.context,
                &request,
            )
            .await
            .map_err(from_runtime)?
            .map_err(|e| from_plugin(&plugin.manifest.id, e))?;
        let Some(project) = projects.into_iter().next() else {
            let nothing = "the wizard found nothing it can build either: add a Dockerfile, or one of package.json, requirements.txt / pyproject.toml / *.py, go.mod, Cargo.toml, pom.xml / build.gradle, Gemfile, composer.json, index.html, a Procfile, or start.sh";
            let (reason, message) = match missing_dockerfile {
                Some(why) => (
                    FailureReason::DockerfileNotFound,
                    format!("{why}; {nothing}"),
                ),
                None => (
                    FailureReason::ContextInvalid,
                    nothing.replace(" either", ""),
                ),
            };
            return Err(failure(reason, message, None));
        };
        let summary = crate::store::WizardDetection {
            stack: project.stack.clone(),
            tool: project.tool.clone(),
            reasons: project.reasons.clone(),
            generated: !project.has_dockerfile,
            port: project.port,
        };
        self.log.system(&format!(
            "wizard: detected {}{} because {}",
            project.stack,
            if project.tool.is_empty() {
                String::new()
            } else {
                format!(" ({})", project.tool)
            },
            project.reasons.join("; ")
        ));
        self.store
            .update_build(&self.record.build_id, |r| r.wizard = Some(summary.clone()))
            .map(|_| ())
            .map_err(|e| {
                failure(
                    FailureReason::Internal,
                    format!("cannot record the detection: {e}"),
                    None,
                )
            })
    }

    /// The values of the build's secrets (build args, then mounts) and the
    /// organization's credentials for the registry; the log masks every
    /// one of them.
    async fn resolve_secrets(&self) -> Result<ResolvedSecrets, Failure> {
        use crate::store::secrets::SecretKind;
        let org = &self.record.org;
        let broken = |e: crate::credentials::CredentialError| {
            failure(
                FailureReason::Internal,
                format!("cannot read the organization's secrets: {e}"),
                None,
            )
        };
        let values = |names: Vec<String>| async move {
            let mut out = HashMap::new();
            for name in names {
                let value = self
                    .secrets
                    .get(org, SecretKind::Build, &name)
                    .await
                    .map_err(broken)?
                    .ok_or_else(|| {
                        failure(
                            FailureReason::ContextInvalid,
                            format!("build secret {name} was removed after the build was accepted; save it again"),
                            None,
                        )
                    })?;
                out.insert(name, String::from_utf8_lossy(&value).into_owned());
            }
            Ok::<_, Failure>(out)
        };
        let build_args = values(self.record.request.secret_build_args.clone()).await?;
        let mounts = values(self.record.request.secrets.clone()).await?;
        // The organization's credential for the registry this build pushes
        // to (its own, or the server's).
        let registry = &self.record.registry_target(&self.config.registry).host;
        let registry_auth = self
            .secrets
            .credential(org, SecretKind::Registry, registry)
            .await
            .map_err(broken)?
            .map(|c| RegistryAuth {
                server: registry.clone(),
                username: c.username,
                password: c.password,
            });
        let mut masks: Vec<String> = build_args
            .values()
            .chain(mounts.values())
            .cloned()
            .collect();
        if let Some(auth) = &registry_auth {
            masks.push(auth.password.clone());
        }
        self.log.mask(masks);
        Ok(ResolvedSecrets {
            build_args,
            mounts,
            registry_auth,
        })
    }

    async fn build(
        &self,
        checkout: Option<&Checkout>,
        missing_dockerfile: Option<String>,
    ) -> Result<Built, Failure> {
        let wizard_takes_over = missing_dockerfile.is_some();
        let ResolvedSecrets {
            build_args: secret_build_args,
            mounts: secret_mounts,
            registry_auth,
        } = self.resolve_secrets().await?;
        // A context without a Dockerfile goes to the builder that says it
        // builds those (`[kinds] dockerfile-fallback = true`: the wizard),
        // whatever its name; the detector says what the context holds.
        let asked = self.record.request.builder.as_str();
        let found = if wizard_takes_over {
            self.runtime.dockerfile_fallback()
        } else {
            self.runtime.builder(asked).map(|plugin| (asked, plugin))
        };
        let (name, plugin) = found.ok_or_else(|| {
            failure(
                FailureReason::PluginError,
                format!("no plugin provides the builder `{asked}`"),
                None,
            )
        })?;
        if plugin.manifest.kinds.dockerfile_fallback {
            if let Some(detector) = self.runtime.detector() {
                self.record_detection(detector, missing_dockerfile.as_deref())
                    .await?;
            }
        }
        self.log.system(&format!(
            "builder: {name} (plugin {} {})",
            plugin.manifest.id, plugin.manifest.version
        ));
        let secrets = ResolvedSecrets {
            build_args: secret_build_args,
            mounts: secret_mounts,
            registry_auth,
        };
        let profile = self.choose_profile();
        let cache_from = self.registry_cache()?;
        let job = BuildJob {
            plugin,
            checkout,
            secrets: &secrets,
            cache_from: &cache_from,
        };
        let built = match self.record.request.platforms.as_slice() {
            [] => {
                let platform = self.record.request.platform.as_deref();
                let refs = &self.record.image_refs;
                self.build_on(self.engine, self.log, platform, refs, &job, profile)
                    .await?
            }
            platforms => self.build_platforms(platforms, &job, profile).await?,
        };
        self.sign(&built, secrets.registry_auth.as_ref(), plugin)
            .await?;
        Ok(built)
    }

    /// One image on `seat`'s engine, for `platform`, pushed as
    /// `image_refs`: under `auto`, once more one size up after running out
    /// of memory; once more on another engine when the engine is lost
    /// before anything was pushed.
    async fn build_on(
        &self,
        seat: &EngineSeat,
        log: &BuildLog,
        platform: Option<&str>,
        image_refs: &[String],
        job: &BuildJob<'_>,
        mut profile: crate::config::Profile,
    ) -> Result<Built, Failure> {
        let mut may_retry = self.record.request.profile == crate::config::AUTO_PROFILE;
        let mut may_move = true;
        // The build's own seat names the record's engine; a platform's
        // second seat, only its entry of `platforms`.
        let main_seat = std::ptr::eq(seat, self.engine);
        loop {
            self.update_record(|r| r.profile_used = Some(profile.name.clone()))?;
            let started = chrono::Utc::now();
            let engine = seat.name();
            let run = Run {
                engine: seat.engine(),
                log,
                platform,
                image_refs,
            };
            let built = match self.build_with(&run, job, &profile).await {
                Err(failure) => Err(self.engine_lost(seat, log, failure).await),
                ok => ok,
            };
            let failure = match built {
                Err(failure) if failure.reason == FailureReason::OutOfMemory && may_retry => {
                    failure
                }
                Err(failure)
                    if failure.reason == FailureReason::EngineLost
                        && may_move
                        && !self.phases.push_began() =>
                {
                    may_move = false;
                    let Ok(moved_to) = seat.move_elsewhere().await else {
                        return Err(failure);
                    };
                    log.system(&format!(
                        "engine {engine} was lost before anything was pushed; building once more on engine {moved_to}"
                    ));
                    let attempt = attempt(&profile, engine, failure, started);
                    self.update_record(|r| {
                        r.attempts.push(attempt.clone());
                        if main_seat {
                            r.engine = Some(moved_to.clone());
                        }
                    })?;
                    continue;
                }
                done => return done,
            };
            let Some(larger) = self.config.larger_profile(&profile.name).cloned() else {
                return Err(failure);
            };
            may_retry = false;
            log.system(&format!(
                "profile auto: OUT_OF_MEMORY with {} ({} MiB); building once more with {} ({} MiB)",
                profile.name,
                profile.memory_bytes >> 20,
                larger.name,
                larger.memory_bytes >> 20
            ));
            let attempt = attempt(&profile, engine, failure, started);
            self.update_record(|r| r.attempts.push(attempt.clone()))?;
            profile = larger;
        }
    }

    /// A multi-platform build: one image per platform, each pushed under
    /// its platform's tags (`<tag>-<os>-<arch>`), then one OCI image index
    /// of them under every tag of the build. The first platform builds on
    /// the build's own engine; each other one on a second engine with a
    /// slot free now, side by side, else after the first on the same
    /// engine (or, when that engine does not build it, on the next engine
    /// that does). Its log lines start with the platform.
    async fn build_platforms(
        &self,
        platforms: &[String],
        job: &BuildJob<'_>,
        profile: crate::config::Profile,
    ) -> Result<Built, Failure> {
        // Where each platform builds: a seat of its own now, or in turn
        // on the build's seat.
        let mut beside = Vec::new();
        let mut after_first = Vec::new();
        for platform in &platforms[1..] {
            match self.engine.try_beside(platform) {
                Some(seat) => beside.push((platform.as_str(), Some(seat))),
                None if self.engine.builds(platform) => after_first.push(platform.as_str()),
                None => beside.push((platform.as_str(), None)),
            }
        }
        let plan: Vec<String> =
            std::iter::once(format!("{} on {}", platforms[0], self.engine.name()))
                .chain(beside.iter().map(|(platform, seat)| match seat {
                    Some(seat) => format!("{platform} on {}", seat.name()),
                    None => format!("{platform} on the next engine that builds it"),
                }))
                .chain(after_first.iter().map(|platform| {
                    format!(
                        "{platform} on {} after {}",
                        self.engine.name(),
                        platforms[0]
                    )
                }))
                .collect();
        self.log.system(&format!(
            "platforms: {} images, then one index: {}",
            platforms.len(),
            plan.join("; ")
        ));
        let profile = &profile;
        let waits = beside.iter().any(|(_, seat)| seat.is_none());
        let on_own_seat = async {
            let mut done = vec![
                self.build_platform(self.engine, &platforms[0], job, profile)
                    .await?,
            ];
            for platform in &after_first {
                done.push(
                    self.build_platform(self.engine, platform, job, profile)
                        .await?,
                );
            }
            // Its own platforms are built: while it waits for an engine
            // that builds another one, its slot goes back, so two builds
            // each waiting for the engine the other holds go on.
            if waits {
                self.engine.release();
            }
            Ok::<_, Failure>(done)
        };
        let on_other_seats = futures_util::future::try_join_all(beside.into_iter().map(
            |(platform, seat)| async move {
                let seat = match seat {
                    Some(seat) => seat,
                    None => self.engine.beside(platform).await.map_err(|none| {
                        failure(FailureReason::EngineError, none.to_string(), None)
                    })?,
                };
                let built = self.build_platform(&seat, platform, job, profile).await;
                if built.is_ok() {
                    seat.remember();
                }
                built
            },
        ));
        let (mut images, others) =
            futures_util::future::try_join(on_own_seat, on_other_seats).await?;
        images.extend(others);
        // In the order asked: the index lists them so.
        images.sort_by_key(|(platform, _, _)| platforms.iter().position(|p| p == platform));
        self.push_index(images, job.secrets.registry_auth.as_ref())
            .await
    }

    /// One platform's image on `seat`, pushed under its platform's tags,
    /// its log lines labelled with the platform: (platform, engine, image).
    async fn build_platform(
        &self,
        seat: &EngineSeat,
        platform: &str,
        job: &BuildJob<'_>,
        profile: &crate::config::Profile,
    ) -> Result<(String, String, Built), Failure> {
        let log = self.log.labelled(platform);
        let refs: Vec<String> = self
            .record
            .image_refs
            .iter()
            .map(|reference| {
                let (repository, tag) = crate::engine::registry::without_tag(reference);
                let tag = kiln_api::validate::platform_tag(tag, platform);
                format!("{repository}:{tag}")
            })
            .collect();
        let built = self
            .build_on(seat, &log, Some(platform), &refs, job, profile.clone())
            .await?;
        Ok((platform.to_string(), seat.name(), built))
    }

    /// Push the index of a multi-platform build's `images` under every
    /// tag; the build's result is the index (sizes, layers and steps
    /// summed over the platforms), and the record lists each image.
    async fn push_index(
        &self,
        images: Vec<(String, String, Built)>,
        auth: Option<&RegistryAuth>,
    ) -> Result<Built, Failure> {
        let Some((repository, _)) = self
            .record
            .image_refs
            .first()
            .map(|r| crate::engine::registry::without_tag(r))
        else {
            return Err(failure(
                FailureReason::Internal,
                "a multi-platform build has no image reference to push its index to",
                None,
            ));
        };
        let entries: Vec<_> = images
            .iter()
            .map(|(platform, _, built)| kiln_trust::registry::IndexEntry {
                digest: built.digest.clone(),
                platform: platform.clone(),
            })
            .collect();
        let started = std::time::Instant::now();
        let index = kiln_trust::registry::push_index(
            repository,
            &self.record.request.tags,
            &entries,
            auth.map(RegistryAuth::credentials),
        )
        .await
        .map_err(|e| {
            failure(
                FailureReason::RegistryUnreachable,
                format!("the image index of {repository} could not be pushed: {e}"),
                None,
            )
        })?;
        self.log.system(&format!(
            "index: {repository}@{} ({}) pushed as {} in {} ms",
            index.digest,
            images
                .iter()
                .map(|(platform, _, built)| format!("{platform} {}", built.digest))
                .collect::<Vec<_>>()
                .join(", "),
            self.record.request.tags.join(", "),
            started.elapsed().as_millis()
        ));
        let listed: Vec<kiln_api::PlatformImage> = images
            .iter()
            .map(|(platform, engine, built)| kiln_api::PlatformImage {
                platform: platform.clone(),
                digest: built.digest.clone(),
                size_bytes: built.size_bytes,
                layer_count: built.layer_count,
                engine: Some(engine.clone()),
            })
            .collect();
        self.update_record(|r| r.platform_images = listed.clone())?;
        let sum = |each: fn(&Built) -> u64| images.iter().map(|(_, _, b)| each(b)).sum::<u64>();
        Ok(Built {
            digest: index.digest,
            image_refs: self.record.image_refs.clone(),
            size_bytes: sum(|b| b.size_bytes),
            layer_count: sum(|b| b.layer_count.into()) as u32,
            cached_steps: sum(|b| b.cached_steps.into()) as u32,
            total_steps: sum(|b| b.total_steps.into()) as u32,
            generated_dockerfile: images
                .into_iter()
                .find_map(|(_, _, built)| built.generated_dockerfile),
        })
    }

    /// Sign the pushed image with the organization's key and attach its
    /// SLSA provenance and the attestors' statements (the SBOM), beside it
    /// in the registry as cosign does (`crate::signing`,
    /// `crate::provenance`, `crate::attest`). What cannot be made or
    /// pushed leaves the image pushed without it, said in the log (as
    /// Tekton Chains marks a run it could not sign): the build did what
    /// it was asked, and a verifier refuses the image anyway.
    async fn sign(
        &self,
        built: &Built,
        auth: Option<&RegistryAuth>,
        builder: &kiln_plugin_runtime::LoadedPlugin,
    ) -> Result<(), Failure> {
        // The project's switch, else the organization's, else the server's.
        let project = self.record.project_id.as_deref().and_then(|id| {
            self.store
                .project(id)
                .ok()
                .flatten()
                .filter(|p| p.org == self.record.org)
                .and_then(|p| p.signing)
        });
        let wanted = match (project, self.store.org(&self.record.org)) {
            (Some(set), _) => set,
            (None, Ok(Some(org))) => org.signs_images(self.config),
            (None, _) => self.config.sign_images,
        };
        if !wanted {
            return Ok(());
        }
        let Some((repository, _)) = built
            .image_refs
            .first()
            .map(|r| crate::engine::registry::without_tag(r))
        else {
            return Ok(());
        };
        let key = match crate::signing::org_key(self.secrets, &self.record.org).await {
            Ok(key) => key,
            Err(e) => return self.unsigned(&e),
        };
        let (statement, provenance_ms) = timed(async {
            let bases = self.base_images(built, auth).await;
            self.provenance(repository, &built.digest, builder, bases)
        })
        .await;
        self.log.system(&format!(
            "provenance: the statement made in {provenance_ms} ms (base images resolved)"
        ));
        let provenance = kiln_trust::cosign::SignedAttestation {
            envelope: kiln_trust::cosign::envelope(&key, &statement),
            predicate_type: crate::provenance::PREDICATE_TYPE.into(),
        };
        let credentials = auth.map(RegistryAuth::credentials);
        // The signature does not wait for the attestors (which read the
        // whole image): side by side, a build waits for the slower.
        let ((signed, signed_ms), (attested, attested_ms)) = tokio::join!(
            timed(kiln_trust::cosign::attach_signature(
                &key,
                repository,
                &built.digest,
                credentials,
            )),
            timed(async {
                let mut attestations = vec![(String::from("provenance"), provenance)];
                attestations.extend(self.attest(&key, repository, built, auth).await);
                let pushed = kiln_trust::cosign::attach_attestations(
                    repository,
                    &built.digest,
                    attestations.iter().map(|(_, attestation)| attestation),
                    credentials,
                )
                .await;
                pushed.map(|attached| (attached, attestations))
            }),
        );
        let mut attachments = Vec::new();
        match signed {
            Ok(attached) => attachments.push(("signature".to_string(), attached, signed_ms)),
            Err(e) => self.unsigned(&e.into())?,
        }
        match attested {
            Ok((attached, attestations)) => {
                for (kind, attestation) in attestations {
                    // The first (the provenance) names the attestations'
                    // manifest; each other one, its own layer in it.
                    let digest = if kind == "provenance" {
                        attached.digest.clone()
                    } else {
                        kiln_trust::registry::sha256_digest(&attestation.envelope)
                    };
                    let entry = kiln_trust::cosign::Attached {
                        reference: attached.reference.clone(),
                        digest,
                    };
                    attachments.push((kind, entry, attested_ms));
                }
            }
            Err(e) => self.unsigned(&e.into())?,
        }
        for (kind, attached, ms) in attachments {
            self.log.system(&format!(
                "{kind} of {repository}@{}: {} ({}) in {ms} ms",
                built.digest, attached.reference, attached.digest
            ));
            self.update_record(|r| {
                r.attachments.push(kiln_api::Attachment {
                    kind: kind.clone(),
                    reference: attached.reference.clone(),
                    digest: attached.digest.clone(),
                })
            })?;
        }
        Ok(())
    }

    /// Each attestor's statement about the pushed image, signed with
    /// `key`: the image's filesystem is rebuilt once from the registry and
    /// given to every attestor read-only. What fails is said in the log and
    /// left out; the image keeps its signature and provenance.
    async fn attest(
        &self,
        key: &p256::ecdsa::SigningKey,
        repository: &str,
        built: &Built,
        auth: Option<&RegistryAuth>,
    ) -> Vec<(String, kiln_trust::cosign::SignedAttestation)> {
        let attestors: Vec<_> = self.runtime.attestors().collect();
        if attestors.is_empty() {
            return Vec::new();
        }
        let image = format!("{repository}@{}", built.digest);
        let rootfs = self.paths.workspace.join("rootfs");
        let started = std::time::Instant::now();
        let rebuilt = async {
            tokio::fs::create_dir_all(&rootfs).await.map_err(|e| {
                crate::attest::RootfsError::Layer {
                    image: image.clone(),
                    layer: String::new(),
                    message: format!("cannot make {}: {e}", rootfs.display()),
                }
            })?;
            crate::attest::rootfs_from_registry(
                &image,
                self.record.request.platform.as_deref(),
                auth.map(RegistryAuth::credentials),
                &rootfs,
            )
            .await
        }
        .await;
        let mut signed = Vec::new();
        match rebuilt {
            Err(e) => self.log.system(&format!(
                "attestations: cannot rebuild the image's filesystem, so no attestor ran: {e}"
            )),
            Ok(found) => {
                let retried = match found.retried {
                    0 => String::new(),
                    n => format!("; {n} layer download(s) failed once and were tried again"),
                };
                self.log.system(&format!(
                    "attestations: the image's filesystem rebuilt from the registry ({} layers, {} MiB) in {} ms{retried}",
                    found.layers,
                    found.bytes >> 20,
                    started.elapsed().as_millis()
                ));
                for plugin in attestors {
                    if let Some(attestation) = self
                        .attest_with(plugin, key, repository, built, &rootfs)
                        .await
                    {
                        signed.push(attestation);
                    }
                }
            }
        }
        let _ = tokio::fs::remove_dir_all(&rootfs).await;
        signed
    }

    /// One attestor's statement, signed; `None` (said in the log) when it
    /// failed or answered something that is not a JSON predicate.
    async fn attest_with(
        &self,
        plugin: &kiln_plugin_runtime::LoadedPlugin,
        key: &p256::ecdsa::SigningKey,
        repository: &str,
        built: &Built,
        rootfs: &Path,
    ) -> Option<(String, kiln_trust::cosign::SignedAttestation)> {
        use crate::plugins::bindings::attest;
        let id = &plugin.manifest.id;
        let request = attest::AttestRequest {
            build_id: self.record.build_id.clone(),
            image: attest::Image {
                image_refs: built.image_refs.clone(),
                digest: built.digest.clone(),
                platform: self.record.request.platform.clone(),
            },
            rootfs: "/rootfs".into(),
            options: Vec::new(),
        };
        let caps = Capabilities::for_plugin(plugin).with_log(Arc::new(self.log.clone()));
        let started = std::time::Instant::now();
        let answer = self.runtime.attest(plugin, caps, rootfs, &request).await;
        self.metrics.plugin_call(id, "attest", started.elapsed());
        let attestation = match answer {
            Ok(Ok(attestation)) => attestation,
            Ok(Err(e)) => {
                self.log
                    .system(&format!("attestor {id} made no attestation: {e:?}"));
                return None;
            }
            Err(e) => {
                self.log
                    .system(&format!("attestor {id} made no attestation: {e}"));
                return None;
            }
        };
        let Ok(predicate) = serde_json::from_str::<serde_json::Value>(&attestation.predicate)
        else {
            self.log.system(&format!(
                "attestor {id} answered a predicate that is not JSON; it is left out"
            ));
            return None;
        };
        self.log.system(&format!(
            "attestor {id}: {} ({} ms)",
            attestation.summary,
            started.elapsed().as_millis()
        ));
        let statement = crate::provenance::about_image(
            repository,
            &built.digest,
            &attestation.predicate_type,
            predicate,
        );
        let kind = if attestation.predicate_type == kiln_trust::verify::SPDX_PREDICATE
            || attestation.predicate_type == kiln_trust::verify::CYCLONEDX_PREDICATE
        {
            "sbom".to_string()
        } else {
            id.clone()
        };
        Some((
            kind,
            kiln_trust::cosign::SignedAttestation {
                envelope: kiln_trust::cosign::envelope(key, &statement),
                predicate_type: attestation.predicate_type,
            },
        ))
    }

    fn unsigned(&self, error: &crate::signing::SigningError) -> Result<(), Failure> {
        let build_id = &self.record.build_id;
        tracing::warn!(build_id, "cannot sign or attest the image: {error}");
        self.log
            .system(&format!("the image is pushed without it: {error}"));
        Ok(())
    }

    /// The base images the built Dockerfile names, each with the digest
    /// its registry resolves it to now (side by side; the engine resolved
    /// the same tags moments ago), the way BuildKit's own provenance lists
    /// them (`pkg:docker/…`). One that cannot be resolved is listed without
    /// a digest, and the log says why.
    async fn base_images(
        &self,
        built: &Built,
        auth: Option<&RegistryAuth>,
    ) -> Vec<crate::provenance::Dependency> {
        let text = match &built.generated_dockerfile {
            Some(text) => Some(text.clone()),
            None => {
                let path = self.paths.context.join(&self.record.request.dockerfile);
                tokio::fs::read_to_string(path).await.ok()
            }
        };
        let images = text.map_or_else(Vec::new, |text| {
            crate::provenance::base_images(&text, &self.record.request.build_args)
        });
        let platform = self.record.request.platform.as_deref();
        let resolved = images.iter().map(|image| async move {
            let full = kiln_trust::registry::normalize(image);
            let host = full.split('/').next().unwrap_or_default();
            let credentials = auth
                .filter(|a| a.server == host)
                .map(RegistryAuth::credentials);
            let answer = if image.contains('$') {
                Err("a build argument in it has no value".to_string())
            } else {
                kiln_trust::registry::digest(&full, credentials)
                    .await
                    .map_err(|e| e.to_string())
            };
            (
                crate::provenance::base_image_dependency(&full, platform),
                answer,
            )
        });
        let mut dependencies = Vec::new();
        for (mut dependency, answer) in futures_util::future::join_all(resolved).await {
            match answer {
                Ok(digest) => dependency
                    .digest
                    .push(("sha256", digest.trim_start_matches("sha256:").to_string())),
                Err(e) => self.log.system(&format!(
                    "provenance: the base image {} is listed without a digest: {e}",
                    dependency.uri
                )),
            }
            dependencies.push(dependency);
        }
        dependencies
    }

    /// The provenance statement of this build: the record as it is now
    /// (the commit resolved), the context's digest, the plugins that made it.
    fn provenance(
        &self,
        repository: &str,
        digest: &str,
        builder: &kiln_plugin_runtime::LoadedPlugin,
        base_images: Vec<crate::provenance::Dependency>,
    ) -> serde_json::Value {
        use crate::provenance::{BuildFacts, Dependency};
        let build_id = &self.record.build_id;
        let record = self
            .store
            .build(build_id)
            .ok()
            .flatten()
            .unwrap_or_else(|| self.record.clone());
        let mut dependencies = Vec::new();
        let source = &record.source;
        if let Some(git) = &source.git {
            let reference = git.full_ref.as_deref().unwrap_or(&git.reference);
            dependencies.push(Dependency {
                uri: format!("git+{}@{reference}", git.url),
                name: None,
                digest: git
                    .commit
                    .iter()
                    .map(|c| ("gitCommit", c.clone()))
                    .collect(),
            });
        } else if let Some(context_id) = &source.context_id {
            let sha256 = self
                .store
                .context(&record.org, context_id)
                .ok()
                .flatten()
                .map(|c| c.sha256);
            dependencies.push(Dependency {
                uri: format!("kiln:context/{context_id}"),
                name: None,
                digest: sha256.into_iter().map(|d| ("sha256", d)).collect(),
            });
        } else if source.kind == "inline-zip" {
            use sha2::Digest as _;
            let sha256 = self
                .store
                .inline_zip(build_id)
                .ok()
                .flatten()
                .map(|zip| hex::encode(sha2::Sha256::digest(&zip)));
            dependencies.push(Dependency {
                uri: format!("kiln:inline-zip/{build_id}"),
                name: None,
                digest: sha256.into_iter().map(|d| ("sha256", d)).collect(),
            });
        } else if let Some(url) = &source.url {
            dependencies.push(Dependency {
                uri: url.clone(),
                name: None,
                digest: Vec::new(),
            });
        }
        dependencies.extend(base_images);
        let plugins = self
            .runtime
            .source(&source.kind)
            .into_iter()
            .chain([builder]);
        for plugin in plugins {
            dependencies.push(Dependency {
                uri: format!(
                    "kiln-plugin:{}@{}",
                    plugin.manifest.id, plugin.manifest.version
                ),
                name: Some(plugin.manifest.id.clone()),
                digest: vec![("sha256", plugin.sha256.clone())],
            });
        }
        let builder_id = match &self.config.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!(
                "kiln://{}",
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_else(|_| "localhost".into())
            ),
        };
        let wire = kiln_api::Build::from(&record);
        crate::provenance::statement(&BuildFacts {
            repository,
            digest,
            build: &wire,
            dependencies,
            builder_id,
            started: record.start_time,
            finished: chrono::Utc::now(),
        })
    }

    /// Change the build's record while it runs (its profile, attempts and
    /// measured peak memory).
    fn update_record(&self, change: impl FnMut(&mut BuildRecord)) -> Result<(), Failure> {
        self.store
            .update_build(&self.record.build_id, change)
            .map(|_| ())
            .map_err(|e| {
                failure(
                    FailureReason::Internal,
                    format!("cannot update the build's record: {e}"),
                    None,
                )
            })
    }

    /// The sized profile a build starts with: the one it names, or for
    /// `auto`, by the last successful build of the same name: the smallest
    /// that fits its measured peak memory with a quarter more (container
    /// runs are measured; BuildKit builds are not), else the size it ran
    /// with, else the size every build had before `auto`.
    fn choose_profile(&self) -> crate::config::Profile {
        let config = self.config;
        let fallback = || {
            config
                .profile(crate::config::AUTO_FIRST_PROFILE)
                .or(config.profiles.first())
                .cloned()
                .expect("at least one profile")
        };
        let asked = self.record.request.profile.as_str();
        if asked != crate::config::AUTO_PROFILE {
            return config.profile(asked).cloned().unwrap_or_else(fallback);
        }
        let last = self.last_success(None);
        let by_peak = last.as_ref().and_then(|last| {
            let peak = last.peak_memory_bytes?;
            let fits = config
                .profiles
                .iter()
                .filter(|p| p.memory_bytes >= peak + peak / 4)
                .min_by_key(|p| p.memory_bytes)?;
            Some((last.number, peak, fits.clone()))
        });
        let remembered = last.as_ref().and_then(|last| {
            let used = last.profile_used.as_deref()?;
            Some((last.number, config.profile(used)?.clone()))
        });
        match (by_peak, remembered) {
            (Some((number, peak, profile)), _) => {
                self.log.system(&format!(
                    "profile auto: {}, the smallest that fits the {} MiB the last successful build of {} (#{number}) used, with a quarter more",
                    profile.name,
                    peak >> 20,
                    self.record.name
                ));
                profile
            }
            (None, Some((number, profile))) => {
                self.log.system(&format!(
                    "profile auto: {}, what the last successful build of {} (#{number}) needed",
                    profile.name, self.record.name
                ));
                profile
            }
            (None, None) => {
                let profile = fallback();
                self.log.system(&format!(
                    "profile auto: {} (no earlier successful build of {} ran with a known size)",
                    profile.name, self.record.name
                ));
                profile
            }
        }
    }

    /// The organization's last successful build of this name (of `branch`,
    /// when given).
    fn last_success(&self, branch: Option<String>) -> Option<BuildRecord> {
        let filter = crate::store::ListFilter {
            name: Some(self.record.name.clone()),
            status: Some(kiln_api::BuildStatus::Succeeded),
            branch,
            ..Default::default()
        };
        self.store
            .list_builds(&self.record.org, &filter, 1)
            .ok()
            .and_then(|found| found.into_iter().next())
    }

    /// Earlier images of this build's name whose inline cache it may
    /// import, so it is warm on an engine that never built it: the last
    /// successful build of the same branch, then of the default branch (the
    /// project's, else `main`); for other sources, the last successful
    /// build of the name. Each as `repository@digest`: a tag moved since
    /// cannot bring another image's cache in. Said in the log, kept in the
    /// record.
    fn registry_cache(&self) -> Result<Vec<String>, Failure> {
        if self.record.request.no_cache {
            return Ok(Vec::new());
        }
        let branches: Vec<Option<String>> = match &self.record.source.git {
            Some(git) => {
                let default = self
                    .record
                    .project_id
                    .as_deref()
                    .and_then(|id| self.store.project(id).ok().flatten())
                    .map(|p| p.default_branch)
                    .unwrap_or_else(|| "main".into());
                let mut branches = Vec::new();
                if let Some(branch) = &git.branch {
                    branches.push(Some(branch.clone()));
                }
                if git.branch.as_deref() != Some(default.as_str()) {
                    branches.push(Some(default));
                }
                branches
            }
            None => vec![None],
        };
        let mut sources = Vec::new();
        for branch in branches {
            let Some(last) = self.last_success(branch.clone()) else {
                continue;
            };
            let (Some(digest), Some(first)) = (&last.digest, last.image_refs.first()) else {
                continue;
            };
            let source = format!("{}@{digest}", crate::engine::registry::without_tag(first).0);
            if sources.contains(&source) {
                continue;
            }
            self.log.system(&format!(
                "cache: importing {source}, the image of #{} of {}{}",
                last.number,
                self.record.name,
                branch
                    .map(|b| format!(" on branch {b}"))
                    .unwrap_or_default()
            ));
            sources.push(source);
        }
        if !sources.is_empty() {
            self.update_record(|r| r.cache_from = sources.clone())?;
        }
        Ok(sources)
    }

    /// A failed build's failure, or `ENGINE_LOST` when its engine no
    /// longer answers (whatever the builder made of the broken
    /// connection, the engine going away is why).
    async fn engine_lost(&self, seat: &EngineSeat, log: &BuildLog, failure: Failure) -> Failure {
        let Some(why) = seat.lost().await else {
            return failure;
        };
        let engine = seat.name();
        log.system(&format!(
            "engine {engine} stopped answering during the build: {why}"
        ));
        crate::scheduler::failure(
            FailureReason::EngineLost,
            format!(
                "engine {engine} was lost during the build: {why} (the build saw: {})",
                failure.message.lines().next().unwrap_or("")
            ),
            None,
        )
    }

    /// One run of the builder with `profile`'s limits.
    async fn build_with(
        &self,
        run: &Run<'_>,
        job: &BuildJob<'_>,
        profile: &crate::config::Profile,
    ) -> Result<Built, Failure> {
        let BuildJob {
            plugin,
            checkout,
            secrets,
            cache_from,
        } = *job;
        let spec = &self.record.request;
        let labels = self.standard_labels(checkout);
        let request = wit_build::BuildRequest {
            build_id: self.record.build_id.clone(),
            dockerfile: spec.dockerfile.clone(),
            image_refs: run.image_refs.to_vec(),
            build_args: spec
                .build_args
                .iter()
                .map(|(k, v)| wit::KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            target: spec.target.clone(),
            platform: run.platform.map(str::to_string),
            no_cache: spec.no_cache,
            secrets: spec.secrets.clone(),
            limits: wit::ResourceLimits {
                profile: profile.name.clone(),
                memory_bytes: profile.memory_bytes,
                nano_cpus: profile.nano_cpus,
            },
            host: self.host_facts(&labels),
        };
        let secret_ids = secrets.mounts.keys().cloned().collect();
        let classified = Arc::new(std::sync::Mutex::new(None));
        let peak_memory = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let inline_dockerfile = Arc::new(std::sync::Mutex::new(None));
        let engine = BuildEngine {
            engine: run.engine.clone(),
            context_dir: self.paths.context.clone(),
            secret_build_args: secrets.build_args.clone(),
            secret_mounts: secrets.mounts.clone(),
            registry_auth: secrets.registry_auth.clone(),
            memory_bytes: profile.memory_bytes,
            nano_cpus: profile.nano_cpus,
            labels,
            log: run.log.clone(),
            classified: classified.clone(),
            phases: self.phases.clone(),
            peak_memory: peak_memory.clone(),
            inline_dockerfile: inline_dockerfile.clone(),
            cache_from: cache_from.to_vec(),
        };
        let caps = Capabilities::for_plugin(plugin)
            .with_log(Arc::new(run.log.clone()))
            .with_engine(EngineLoan {
                engine: Arc::new(engine),
                allowed_refs: run.image_refs.to_vec(),
                secret_ids,
            });
        let preopens = Preopens {
            context: Some(self.paths.context.clone()),
            context_writable: false,
            input: None,
            credentials: None,
            rootfs: None,
        };
        let started = std::time::Instant::now();
        let output = self.runtime.build(plugin, caps, &preopens, &request).await;
        self.metrics
            .plugin_call(&plugin.manifest.id, "build", started.elapsed());
        let peak = peak_memory.load(std::sync::atomic::Ordering::Relaxed);
        if peak > 0 {
            self.update_record(|r| r.peak_memory_bytes = Some(peak))?;
        }
        let output = output.map_err(from_runtime)?.map_err(|e| {
            // An engine failure the builder passed back as it got it: the
            // host's own classification is the precise one.
            let host = classified.lock().unwrap().take();
            match (e, host) {
                (wit::PluginError::Engine(passed), Some(host))
                    if passed.message == host.message =>
                {
                    failure(host.reason, host.message, host.exit_code)
                }
                (e, _) => from_plugin(&plugin.manifest.id, e),
            }
        })?;
        let generated_dockerfile = inline_dockerfile.lock().unwrap().take();
        Ok(Built {
            digest: output.digest,
            image_refs: output.image_refs,
            size_bytes: output.size_bytes,
            layer_count: output.layer_count,
            cached_steps: output.cached_steps,
            total_steps: output.total_steps,
            generated_dockerfile,
        })
    }

    /// What the host tells every builder: the registry, whether it speaks
    /// plain HTTP, a cache repository, the configured executor image, the
    /// labels every image must carry and the operator's base images.
    fn host_facts(&self, labels: &[(String, String)]) -> wit::HostFacts {
        // The cache follows the images to the organization's registry.
        let target = self.record.registry_target(&self.config.registry);
        wit::HostFacts {
            registry_plain_http: crate::engine::registry::plain_http(&target.host),
            cache_repo: Some(format!(
                "{}/{}/cache/{}",
                target.host, target.namespace, self.record.name
            )),
            registry: target.host,
            executor_image: Some(self.config.kaniko_image.clone()),
            labels: labels
                .iter()
                .map(|(key, value)| wit::KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            base_images: wizard_base_images(self.config),
        }
    }

    /// The OCI labels every image of this build gets: where its source
    /// came from and which commit.
    fn standard_labels(&self, checkout: Option<&Checkout>) -> Vec<(String, String)> {
        let mut labels = Vec::new();
        if let (Some(git), Some(checkout)) = (&self.record.source.git, checkout) {
            labels.push(("org.opencontainers.image.source".into(), git.url.clone()));
            labels.push((
                "org.opencontainers.image.revision".into(),
                checkout.commit.clone(),
            ));
            if let Some(tag) = checkout
                .full_ref
                .as_deref()
                .and_then(|r| r.strip_prefix("refs/tags/"))
            {
                labels.push(("org.opencontainers.image.version".into(), tag.to_string()));
            }
        }
        labels
    }
}

/// `work`'s result and how long it took, in milliseconds.
async fn timed<T>(work: impl std::future::Future<Output = T>) -> (T, u128) {
    let started = std::time::Instant::now();
    let done = work.await;
    (done, started.elapsed().as_millis())
}
