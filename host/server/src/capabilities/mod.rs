//! The host side of the interfaces plugins import. Every host function's
//! first statement checks the calling plugin's effective permission; a
//! plugin never receives a credential or a host path, only results.
//!
//! | interface | what a plugin can do with it | permission |
//! |---|---|---|
//! | `log` | append lines to the current build's log (capped per call) | always |
//! | `engine` | `buildkit-build` the current build's context into the build's own image references (secret mounts by id: `secrets = ["build"]`) | `engine = ["buildkit-build"]` |
//! | `engine` | `container-run` an image (context read-only, registry config, output directory, profile limits, output rendered into the log) | `engine = ["container-run"]` and the image in `images` |
//! | `engine` | `registry-manifest` of one of the build's own references | `engine = ["registry-manifest"]` |
//! | `git` | check a repository out into the current build's context ([`git`]) | `git = ["host", "*.glob", "file://"]` |

pub mod git;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::engine::{BuildkitParams, DockerEngine, LineSink};
use crate::plugins::bindings::{engine, log, types};
use crate::plugins::manifest::Permissions;
use crate::plugins::PluginState;
use crate::store::{BuildLog, FailureReason};

/// Most bytes of log one plugin call may write.
pub const LOG_BUDGET_BYTES: usize = 4 << 20;

/// Most bytes a plugin may hand the engine in one request (a generated
/// Dockerfile, build args, labels, tags together).
pub const ENGINE_REQUEST_BYTES: usize = 1 << 20;

/// What the host lends one plugin call: the build's log, and (for builders)
/// the engine, scoped to this build's context and image references.
pub struct Capabilities {
    pub plugin_id: String,
    pub granted: Arc<Permissions>,
    pub log: Option<BuildLog>,
    /// Where log lines also go when a test harness collects them.
    pub collected: Option<Arc<std::sync::Mutex<Vec<String>>>>,
    pub engine: Option<EngineScope>,
    pub git: Option<git::GitScope>,
    log_bytes_left: usize,
    log_cut_reported: bool,
}

/// The engine as one build may use it.
pub struct EngineScope {
    pub engine: DockerEngine,
    /// The context directory on the host.
    pub context_dir: PathBuf,
    /// The only references this build may tag and push.
    pub allowed_refs: Vec<String>,
    /// Secret build args the host adds to the build; the plugin never sees them.
    pub secret_build_args: HashMap<String, String>,
    /// The build's secrets for `RUN --mount=type=secret` (id → value); a
    /// plugin may name them, never read them.
    pub secret_mounts: HashMap<String, String>,
    /// The organization's credentials for the registry, used by the host only.
    pub registry_auth: Option<crate::engine::RegistryAuth>,
    /// The build profile's limits, applied to container runs.
    pub memory_bytes: u64,
    pub nano_cpus: u64,
    /// Labels the host adds to every image (the OCI source and revision of
    /// a git build); a plugin's own labels cannot override them.
    pub labels: Vec<(String, String)>,
}

impl Capabilities {
    pub fn new(plugin_id: &str, granted: Arc<Permissions>, log: Option<BuildLog>) -> Self {
        Capabilities {
            plugin_id: plugin_id.to_string(),
            granted,
            log,
            collected: None,
            engine: None,
            git: None,
            log_bytes_left: LOG_BUDGET_BYTES,
            log_cut_reported: false,
        }
    }

    /// Also collect the plugin's log lines here (the plugin test kit).
    pub fn with_log_sink(mut self, lines: Arc<std::sync::Mutex<Vec<String>>>) -> Self {
        self.collected = Some(lines);
        self
    }

    /// Lend git checkouts for this call (context sources).
    pub fn with_git(mut self, scope: git::GitScope) -> Self {
        self.git = Some(scope);
        self
    }

    /// Lend the engine for this call.
    pub fn with_engine(mut self, scope: EngineScope) -> Self {
        self.engine = Some(scope);
        self
    }

    fn denied(&self, what: &str) -> types::EngineFailure {
        types::EngineFailure {
            reason: types::FailureReason::Denied,
            message: format!(
                "plugin {} is not granted {what}; its manifest must ask for it and the operator must grant it",
                self.plugin_id
            ),
            exit_code: None,
        }
    }
}

impl types::Host for PluginState {}

impl log::Host for PluginState {
    async fn write(&mut self, level: log::Level, line: String) -> wasmtime::Result<()> {
        // Permission: every plugin may log, within its budget.
        let caps = &mut self.caps;
        if let Some(collected) = &caps.collected {
            collected.lock().unwrap().push(line.clone());
        }
        let Some(build_log) = caps.log.clone() else {
            return Ok(());
        };
        if line.len() > caps.log_bytes_left {
            if !caps.log_cut_reported {
                caps.log_cut_reported = true;
                build_log.write(
                    "plugin",
                    &format!(
                        "[{}] log output cut: a plugin call may write at most {} MiB",
                        caps.plugin_id,
                        LOG_BUDGET_BYTES >> 20
                    ),
                );
            }
            return Ok(());
        }
        caps.log_bytes_left -= line.len();
        let prefix = match level {
            log::Level::Debug => "debug: ",
            log::Level::Info => "",
            log::Level::Warn => "warning: ",
            log::Level::Error => "error: ",
        };
        for part in line.lines() {
            build_log.write("plugin", &format!("[{}] {prefix}{part}", caps.plugin_id));
        }
        Ok(())
    }
}

/// A container's output, rendered (or not) on its way into the log.
struct RenderingSink {
    log: BuildLogSink,
    renderer: Option<std::sync::Mutex<crate::engine::kaniko_log::KanikoRenderer>>,
}

impl LineSink for RenderingSink {
    fn line(&self, line: &str) {
        match &self.renderer {
            Some(renderer) => {
                for rendered in renderer.lock().unwrap().line(line) {
                    self.log.line(&rendered);
                }
            }
            None => self.log.line(line),
        }
    }
}

impl RenderingSink {
    /// Close the last step; (cached steps, steps, first error).
    fn finish(&self) -> (u32, u32, Option<String>) {
        let Some(renderer) = &self.renderer else {
            return (0, 0, None);
        };
        let mut renderer = renderer.lock().unwrap();
        for rendered in renderer.finish() {
            self.log.line(&rendered);
        }
        (
            renderer.cached_steps,
            renderer.total_steps,
            renderer.error.clone(),
        )
    }
}

/// Most files and bytes per file a run's output directory gives back.
const MAX_OUTPUT_FILES: usize = 16;
const MAX_OUTPUT_FILE_BYTES: u64 = 64 << 10;

/// An empty directory a container (whatever its user) may write to.
fn output_directory() -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))?;
    Ok(dir)
}

/// The small regular files a run left, by name (links are not followed).
fn read_outputs(dir: &std::path::Path) -> Vec<types::KeyValue> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten().take(MAX_OUTPUT_FILES) {
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if !meta.is_file() || meta.len() > MAX_OUTPUT_FILE_BYTES {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(entry.path()) {
            out.push(types::KeyValue {
                key: entry.file_name().to_string_lossy().into_owned(),
                value: text,
            });
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// Engine output goes into the build log as `build` lines.
struct BuildLogSink(Option<BuildLog>);

impl LineSink for BuildLogSink {
    fn line(&self, line: &str) {
        if let Some(log) = &self.0 {
            log.write("build", line);
        }
    }
}

fn to_map(pairs: Vec<types::KeyValue>) -> HashMap<String, String> {
    pairs.into_iter().map(|kv| (kv.key, kv.value)).collect()
}

fn failure_to_wit(reason: FailureReason) -> types::FailureReason {
    use types::FailureReason as W;
    match reason {
        FailureReason::DockerfileNotFound => W::DockerfileNotFound,
        FailureReason::DockerfileParseError => W::DockerfileParseError,
        FailureReason::CopyFailed => W::CopyFailed,
        FailureReason::RunFailed => W::RunFailed,
        FailureReason::OutOfMemory => W::OutOfMemory,
        FailureReason::PushUnauthorized => W::PushUnauthorized,
        FailureReason::PushDenied => W::PushDenied,
        FailureReason::ContextInvalid => W::ContextInvalid,
        _ => W::EngineError,
    }
}

/// A docker `config.json` holding one registry's credentials, in a private
/// temporary directory that lives as long as the returned handle.
fn registry_config(
    auth: Option<&crate::engine::RegistryAuth>,
) -> std::io::Result<(tempfile::TempDir, PathBuf)> {
    use base64::Engine as _;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    let auths = match auth {
        Some(auth) => serde_json::json!({
            auth.server.clone(): {
                "auth": base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", auth.username, auth.password)),
            }
        }),
        None => serde_json::json!({}),
    };
    let path = dir.path().join("config.json");
    std::fs::write(
        &path,
        serde_json::to_vec(&serde_json::json!({ "auths": auths })).unwrap(),
    )?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    Ok((dir, path))
}

/// A container path for a bind mount: absolute, and nothing Docker's
/// `host:container:mode` syntax would misread.
fn mount_point(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains(':')
        && !path.contains(',')
        && !path.split('/').any(|p| p == "..")
}

impl engine::Host for PluginState {
    async fn container_run(
        &mut self,
        request: engine::ContainerRunRequest,
    ) -> wasmtime::Result<Result<engine::ContainerRunResult, types::EngineFailure>> {
        if !self.caps.granted.engine.contains("container-run") {
            return Ok(Err(self
                .caps
                .denied("the engine permission `container-run`")));
        }
        if !self.caps.granted.may_run(&request.image) {
            return Ok(Err(self.caps.denied(&format!(
                "running the image `{}` (the images it may run: {:?})",
                request.image, self.caps.granted.images
            ))));
        }
        let Some(scope) = self.caps.engine.as_ref() else {
            return Ok(Err(self.caps.denied("the engine outside a build")));
        };
        let mounts = [
            &request.context_mount,
            &request.registry_config_mount,
            &request.output_mount,
        ];
        if let Some(bad) = mounts.into_iter().flatten().find(|m| !mount_point(m)) {
            return Ok(Err(types::EngineFailure {
                reason: types::FailureReason::EngineError,
                message: format!("`{bad}` is not a usable mount point: give an absolute path without `:`, `,` or `..`"),
                exit_code: None,
            }));
        }
        let mut binds = Vec::new();
        if let Some(mount) = &request.context_mount {
            binds.push(format!("{}:{mount}:ro", scope.context_dir.display()));
        }
        // Held until the run ends: the config file lives in it.
        let mut _config_dir = None;
        if let Some(mount) = &request.registry_config_mount {
            match registry_config(scope.registry_auth.as_ref()) {
                Ok((dir, file)) => {
                    binds.push(format!("{}:{mount}:ro", file.display()));
                    _config_dir = Some(dir);
                }
                Err(e) => {
                    return Ok(Err(types::EngineFailure {
                        reason: types::FailureReason::EngineError,
                        message: format!("cannot write the registry config: {e}"),
                        exit_code: None,
                    }))
                }
            }
        }
        // Held until the run ends and read back then.
        let mut output_dir = None;
        if let Some(mount) = &request.output_mount {
            match output_directory() {
                Ok(dir) => {
                    binds.push(format!("{}:{mount}:rw", dir.path().display()));
                    output_dir = Some(dir);
                }
                Err(e) => {
                    return Ok(Err(types::EngineFailure {
                        reason: types::FailureReason::EngineError,
                        message: format!("cannot make the output directory: {e}"),
                        exit_code: None,
                    }))
                }
            }
        }
        let renderer = match request.output_style.as_deref() {
            None => None,
            Some("kaniko") => {
                let dockerfile = request.dockerfile.as_deref().unwrap_or("Dockerfile");
                let text = crate::context::join_inside(&scope.context_dir, dockerfile)
                    .and_then(|path| std::fs::read_to_string(path).ok())
                    .unwrap_or_default();
                Some(std::sync::Mutex::new(
                    crate::engine::kaniko_log::KanikoRenderer::new(&text),
                ))
            }
            Some(other) => {
                return Ok(Err(types::EngineFailure {
                    reason: types::FailureReason::EngineError,
                    message: format!(
                        "output style `{other}` is unknown; this host renders `kaniko`"
                    ),
                    exit_code: None,
                }))
            }
        };
        let params = crate::engine::ContainerParams {
            image: request.image,
            args: request.args,
            env: request
                .env
                .into_iter()
                .map(|kv| (kv.key, kv.value))
                .collect(),
            binds,
            host_network: request.host_network,
            memory_bytes: scope.memory_bytes,
            nano_cpus: scope.nano_cpus,
        };
        let started = Instant::now();
        let sink = Arc::new(RenderingSink {
            log: BuildLogSink(self.caps.log.clone()),
            renderer,
        });
        let result = scope.engine.run_container(params, sink.clone()).await;
        self.extend_deadline(started.elapsed());
        let (cached_steps, total_steps, error) = sink.finish();
        let outputs = output_dir
            .as_ref()
            .map(|dir| read_outputs(dir.path()))
            .unwrap_or_default();
        Ok(match result {
            Ok(exit) => Ok(engine::ContainerRunResult {
                exit_code: exit.exit_code,
                oom_killed: exit.oom_killed,
                outputs,
                cached_steps,
                total_steps,
                error,
            }),
            Err(failure) => Err(types::EngineFailure {
                reason: failure_to_wit(failure.reason),
                message: failure.message,
                exit_code: failure.exit_code,
            }),
        })
    }

    async fn registry_manifest(
        &mut self,
        reference: String,
    ) -> wasmtime::Result<Result<engine::PushedImage, types::EngineFailure>> {
        if !self.caps.granted.engine.contains("registry-manifest") {
            return Ok(Err(self
                .caps
                .denied("the engine permission `registry-manifest`")));
        }
        let Some(scope) = self.caps.engine.as_ref() else {
            return Ok(Err(self.caps.denied("the engine outside a build")));
        };
        if !scope.allowed_refs.contains(&reference) {
            return Ok(Err(self.caps.denied(&format!(
                "reading `{reference}`: a build may read only its own references ({})",
                scope.allowed_refs.join(", ")
            ))));
        }
        let auth = scope.registry_auth.clone();
        let started = Instant::now();
        let result = crate::engine::registry::manifest(&reference, auth.as_ref()).await;
        self.extend_deadline(started.elapsed());
        Ok(result
            .map(|image| engine::PushedImage {
                digest: image.digest,
                size_bytes: image.size_bytes,
                layer_count: image.layer_count,
            })
            .map_err(|failure| types::EngineFailure {
                reason: failure_to_wit(failure.reason),
                message: failure.message,
                exit_code: failure.exit_code,
            }))
    }

    async fn buildkit_build(
        &mut self,
        request: engine::BuildkitRequest,
    ) -> wasmtime::Result<Result<engine::ImageResult, types::EngineFailure>> {
        if !self.caps.granted.engine.contains("buildkit-build") {
            return Ok(Err(self
                .caps
                .denied("the engine permission `buildkit-build`")));
        }
        let Some(scope) = self.caps.engine.as_ref() else {
            return Ok(Err(self.caps.denied("the engine outside a build")));
        };
        if let Some(bad) = request
            .tags
            .iter()
            .find(|t| !scope.allowed_refs.contains(t))
        {
            return Ok(Err(self.caps.denied(&format!(
                "pushing `{bad}`: a build may only push its own references ({})",
                scope.allowed_refs.join(", ")
            ))));
        }
        let size = request.dockerfile.len()
            + request.dockerfile_inline.as_ref().map_or(0, String::len)
            + request.dockerignore_inline.as_ref().map_or(0, String::len)
            + request.tags.iter().map(String::len).sum::<usize>()
            + request
                .build_args
                .iter()
                .chain(&request.labels)
                .map(|kv| kv.key.len() + kv.value.len())
                .sum::<usize>();
        if size > ENGINE_REQUEST_BYTES {
            return Ok(Err(self.caps.denied(&format!(
                "a {size}-byte engine request: one request may carry at most {} bytes",
                ENGINE_REQUEST_BYTES
            ))));
        }
        if !request.secrets.is_empty() && !self.caps.granted.secrets.contains("build") {
            return Ok(Err(self
                .caps
                .denied("build secrets (the permission `secrets = [\"build\"]`)")));
        }
        let mut secrets = Vec::new();
        for id in &request.secrets {
            match scope.secret_mounts.get(id) {
                Some(value) => secrets.push((id.clone(), value.clone())),
                None => {
                    return Ok(Err(self.caps.denied(&format!(
                        "secret `{id}`: a build may mount only the secrets its request names ({})",
                        scope
                            .secret_mounts
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))))
                }
            }
        }
        if let Some(text) = &request.dockerignore_inline {
            // The context is this build's own copy: the host may prune it.
            if let Err(e) = crate::context::apply_dockerignore_text(
                &scope.context_dir,
                &request.dockerfile,
                text,
            ) {
                return Ok(Err(types::EngineFailure {
                    reason: types::FailureReason::ContextInvalid,
                    message: format!("the generated .dockerignore: {e}"),
                    exit_code: None,
                }));
            }
        }
        let mut build_args = to_map(request.build_args);
        build_args.extend(scope.secret_build_args.clone());
        let params = BuildkitParams {
            dockerfile: request.dockerfile,
            dockerfile_inline: request.dockerfile_inline,
            tags: request.tags,
            build_args,
            registry_auth: scope.registry_auth.clone(),
            labels: {
                let mut labels = to_map(request.labels);
                labels.extend(scope.labels.iter().cloned());
                labels
            },
            target: request.target,
            platform: request.platform,
            no_cache: request.no_cache,
            secrets,
        };
        let started = Instant::now();
        let sink = Arc::new(BuildLogSink(self.caps.log.clone()));
        let result = scope
            .engine
            .buildkit_build(&scope.context_dir, &params, sink)
            .await;
        // Time spent in the engine is not the plugin's own running time.
        self.extend_deadline(started.elapsed());
        Ok(match result {
            Ok(image) => Ok(engine::ImageResult {
                digest: image.digest,
                image_refs: image.image_refs,
                size_bytes: image.size_bytes,
                layer_count: image.layer_count,
                cached_steps: image.cached_steps,
                total_steps: image.total_steps,
            }),
            Err(failure) => Err(types::EngineFailure {
                reason: failure_to_wit(failure.reason),
                message: failure.message,
                exit_code: failure.exit_code,
            }),
        })
    }
}
