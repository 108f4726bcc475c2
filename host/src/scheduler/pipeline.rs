//! One build's steps, from staged input to pushed image.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::capabilities::{Capabilities, EngineScope};
use crate::config::ServerConfig;
use crate::context::{self, ContextError};
use crate::engine::{DockerEngine, RegistryAuth};
use crate::plugins::bindings::builder::exports::kiln::plugin::build as wit_build;
use crate::plugins::bindings::source::exports::kiln::plugin::source as wit_source;
use crate::plugins::bindings::types as wit;
use crate::plugins::{PluginRuntime, Preopens};
use crate::store::{BuildLog, BuildRecord, Failure, FailureReason};

use super::failure::hint_for;

/// The directories one build uses.
pub struct Paths {
    /// What the API staged (`staging/<id>/`), preopened read-only as `/input`.
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

/// What a successful build produced.
pub struct Built {
    pub digest: String,
    pub image_refs: Vec<String>,
    pub size_bytes: u64,
    pub layer_count: u32,
    pub cached_steps: u32,
    pub total_steps: u32,
}

pub struct Pipeline<'a> {
    pub runtime: &'a PluginRuntime,
    pub engine: &'a DockerEngine,
    pub config: &'a ServerConfig,
    pub log: &'a BuildLog,
    pub record: &'a BuildRecord,
    pub paths: &'a Paths,
    pub metrics: &'a crate::metrics::Metrics,
    pub secrets: &'a crate::store::secrets::SecretStore,
}

fn failure(reason: FailureReason, message: impl Into<String>, exit_code: Option<i32>) -> Failure {
    Failure {
        reason,
        message: message.into(),
        hint: hint_for(reason, exit_code),
        exit_code,
    }
}

/// The staged input's file name for an archive format.
pub fn staged_file_name(format: &str) -> String {
    format!("context.{format}")
}

fn from_context(error: ContextError) -> Failure {
    let reason = match &error {
        ContextError::Invalid(_) => FailureReason::ContextInvalid,
        ContextError::DockerfileNotFound { .. } => FailureReason::DockerfileNotFound,
        ContextError::Io(_) => FailureReason::Internal,
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
                wit::FailureReason::ContextInvalid => FailureReason::ContextInvalid,
                wit::FailureReason::Denied => FailureReason::PluginError,
                wit::FailureReason::EngineError => FailureReason::EngineError,
            };
            failure(reason, f.message, f.exit_code)
        }
    }
}

impl Pipeline<'_> {
    pub async fn run(self) -> Result<Built, Failure> {
        let info = self.materialize().await?;
        self.prepare(&info)?;
        self.build().await
    }

    async fn materialize(&self) -> Result<wit_source::ContextInfo, Failure> {
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
        let source = &self.record.source;
        let (input_path, options) = match (&source.url, &source.format) {
            (Some(url), _) => (
                None,
                vec![wit::KeyValue {
                    key: "url".into(),
                    value: url.clone(),
                }],
            ),
            (None, format) => {
                let format = format.clone().unwrap_or_else(|| "zip".into());
                (
                    Some(format!("/input/{}", staged_file_name(&format))),
                    vec![wit::KeyValue {
                        key: "format".into(),
                        value: format,
                    }],
                )
            }
        };
        let spec = wit_source::SourceSpec {
            kind: kind.clone(),
            input_path,
            options,
            max_unpacked_bytes: self.config.max_context_bytes,
            max_entries: self.config.max_context_entries,
        };
        let caps = Capabilities::new(
            &plugin.manifest.id,
            plugin.granted.clone(),
            Some(self.log.clone()),
        );
        let preopens = Preopens {
            context: Some(self.paths.context.clone()),
            context_writable: true,
            input: Some(self.paths.input.clone()),
        };
        let started = std::time::Instant::now();
        let info = self
            .runtime
            .materialize(plugin, caps, &preopens, &spec)
            .await;
        self.metrics
            .plugin_call(&plugin.manifest.id, "materialize", started.elapsed());
        let info = info
            .map_err(from_runtime)?
            .map_err(|e| from_plugin(&plugin.manifest.id, e))?;
        self.log.system(&format!("context: {}", info.summary));
        Ok(info)
    }

    /// The host's half of materialization: modes, links, `.dockerignore`,
    /// and the Dockerfile's presence.
    fn prepare(&self, info: &wit_source::ContextInfo) -> Result<(), Failure> {
        let root = &self.paths.context;
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
        context::apply_modes(root, &modes).map_err(from_context)?;
        context::create_symlinks(root, &links).map_err(from_context)?;
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
            context::find_dockerfile(root, dockerfile).map_err(from_context)?;
        }
        Ok(())
    }

    /// The values of the build's secret build args and the organization's
    /// credentials for the registry; the log masks every one of them.
    fn resolve_secrets(&self) -> Result<(HashMap<String, String>, Option<RegistryAuth>), Failure> {
        use crate::store::secrets::SecretKind;
        let org = &self.record.org;
        let broken = |e: crate::store::secrets::SecretError| {
            failure(
                FailureReason::Internal,
                format!("cannot read the organization's secrets: {e}"),
                None,
            )
        };
        let mut args = HashMap::new();
        for name in &self.record.request.secret_build_args {
            let value = self
                .secrets
                .get(org, SecretKind::Build, name)
                .map_err(broken)?
                .ok_or_else(|| {
                    failure(
                        FailureReason::ContextInvalid,
                        format!("build secret {name} was removed after the build was accepted; save it again"),
                        None,
                    )
                })?;
            args.insert(name.clone(), String::from_utf8_lossy(&value).into_owned());
        }
        let registry = &self.config.registry;
        let auth = self
            .secrets
            .credential(org, SecretKind::Registry, registry)
            .map_err(broken)?
            .map(|c| RegistryAuth {
                server: registry.clone(),
                username: c.username,
                password: c.password,
            });
        let mut masks: Vec<String> = args.values().cloned().collect();
        if let Some(auth) = &auth {
            masks.push(auth.password.clone());
        }
        self.log.mask(masks);
        Ok((args, auth))
    }

    async fn build(&self) -> Result<Built, Failure> {
        let (secret_build_args, registry_auth) = self.resolve_secrets()?;
        let name = &self.record.request.builder;
        let plugin = self.runtime.builder(name).ok_or_else(|| {
            failure(
                FailureReason::PluginError,
                format!("no plugin provides the builder `{name}`"),
                None,
            )
        })?;
        self.log.system(&format!(
            "builder: {name} (plugin {} {})",
            plugin.manifest.id, plugin.manifest.version
        ));
        let spec = &self.record.request;
        let profile = crate::config::profile(&spec.profile)
            .or_else(|| crate::config::profile(&self.config.default_profile))
            .unwrap_or(crate::config::PROFILES[1]);
        let request = wit_build::BuildRequest {
            build_id: self.record.build_id.clone(),
            dockerfile: spec.dockerfile.clone(),
            image_refs: self.record.image_refs.clone(),
            build_args: spec
                .build_args
                .iter()
                .map(|(k, v)| wit::KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            target: spec.target.clone(),
            platform: spec.platform.clone(),
            no_cache: spec.no_cache,
            secrets: Vec::new(),
            limits: wit::ResourceLimits {
                profile: profile.name.to_string(),
                memory_bytes: profile.memory_bytes,
                nano_cpus: profile.nano_cpus,
            },
            options: Vec::new(),
        };
        let caps = Capabilities::new(
            &plugin.manifest.id,
            plugin.granted.clone(),
            Some(self.log.clone()),
        )
        .with_engine(EngineScope {
            engine: self.engine.clone(),
            context_dir: self.paths.context.clone(),
            allowed_refs: self.record.image_refs.clone(),
            secret_build_args,
            registry_auth,
            memory_bytes: profile.memory_bytes,
            nano_cpus: profile.nano_cpus,
        });
        let preopens = Preopens {
            context: Some(self.paths.context.clone()),
            context_writable: false,
            input: None,
        };
        let started = std::time::Instant::now();
        let output = self.runtime.build(plugin, caps, &preopens, &request).await;
        self.metrics
            .plugin_call(&plugin.manifest.id, "build", started.elapsed());
        let output = output
            .map_err(from_runtime)?
            .map_err(|e| from_plugin(&plugin.manifest.id, e))?;
        Ok(Built {
            digest: output.digest,
            image_refs: output.image_refs,
            size_bytes: output.size_bytes,
            layer_count: output.layer_count,
            cached_steps: output.cached_steps,
            total_steps: output.total_steps,
        })
    }
}
