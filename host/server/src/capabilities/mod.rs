//! The server's side of the capabilities `kiln-plugin-runtime` lends plugins: the
//! build's log as a [`LogSink`], Docker Engine and the registry as an
//! [`Engine`] scoped to one build ([`BuildEngine`]), and gix checkouts as
//! [`Git`] ([`git::BuildGit`]). The runtime has checked the plugin's
//! permission and the build's scope before any of these run; here the host
//! adds what plugins never see (credentials, secret values, host paths).

pub mod git;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use kiln_plugin_runtime::bindings::{engine, types};
use kiln_plugin_runtime::{Engine, EngineFailure, HostError, LogLevel, LogSink, RunningContainer};

use crate::engine::{BuildkitParams, DockerEngine, LineSink};
use crate::store::{BuildLog, FailureReason};

impl LogSink for BuildLog {
    fn write(&self, plugin_id: &str, level: LogLevel, line: &str) {
        let prefix = match level {
            LogLevel::Debug => "debug: ",
            LogLevel::Info | LogLevel::Printed => "",
            LogLevel::Warn => "warning: ",
            LogLevel::Error => "error: ",
            // The build's own output (a builder's rendering of its tool's
            // progress) reads like the engine's.
            LogLevel::Output => return BuildLog::write(self, "build", line),
        };
        BuildLog::write(self, "plugin", &format!("[{plugin_id}] {prefix}{line}"));
    }
}

/// Docker Engine and the registry as one build may use them.
pub struct BuildEngine {
    pub engine: DockerEngine,
    /// The context directory on the host.
    pub context_dir: PathBuf,
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
    /// The build's log, where engine output goes.
    pub log: BuildLog,
    /// The last engine failure the host classified, as it classified it:
    /// the contract's reasons are coarser than the API's (no
    /// `BASE_IMAGE_NOT_FOUND`, no `REGISTRY_UNREACHABLE`), and the record
    /// should not depend on what a builder passes back.
    pub classified: Arc<std::sync::Mutex<Option<crate::engine::BuildFailure>>>,
    /// The build's phase clock: the engine marks when its push begins.
    pub phases: Arc<PhaseClock>,
    /// The most memory any of its container runs used (0: none measured).
    pub peak_memory: Arc<std::sync::atomic::AtomicU64>,
    /// The Dockerfile a builder generated and passed inline (the wizard's),
    /// for the provenance's base images.
    pub inline_dockerfile: Arc<std::sync::Mutex<Option<String>>>,
    /// Earlier images of this build's name whose inline cache BuildKit may
    /// import (the host chose them; see the pipeline's `registry_cache`).
    pub cache_from: Vec<String>,
}

impl BuildEngine {
    /// Keep the host's classification of `failure`, then hand the plugin
    /// the contract's version of it.
    fn classified_failure(&self, failure: crate::engine::BuildFailure) -> HostError {
        *self.classified.lock().unwrap() = Some(failure.clone());
        engine_failure(failure)
    }
}

/// Most lines of a container's output held for the plugin to read; more
/// (a plugin that does not read) are dropped and counted.
const OUTPUT_BACKLOG_LINES: usize = 10_000;

/// A container's output on its way to the plugin.
struct ChannelSink {
    lines: tokio::sync::mpsc::Sender<String>,
    dropped: std::sync::atomic::AtomicU64,
}

impl LineSink for ChannelSink {
    fn line(&self, line: &str) {
        if self.lines.try_send(line.to_string()).is_err() {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// A container this server started for a plugin.
struct BuildContainer {
    lines: tokio::sync::mpsc::Receiver<String>,
    /// Aborted when dropped, which stops and removes the container.
    run: crate::engine::AbortOnDrop<
        Result<crate::engine::ContainerExit, crate::engine::BuildFailure>,
    >,
    /// Held until the run ends: the registry config file lives in it.
    _config_dir: Option<tempfile::TempDir>,
    /// Read back when the run ends.
    output_dir: Option<tempfile::TempDir>,
}

/// Most lines one `read-output` hands over.
const LINES_PER_READ: usize = 1024;

#[async_trait::async_trait]
impl RunningContainer for BuildContainer {
    async fn read_output(&mut self) -> Option<Vec<String>> {
        let first = self.lines.recv().await?;
        let mut batch = vec![first];
        while batch.len() < LINES_PER_READ {
            match self.lines.try_recv() {
                Ok(line) => batch.push(line),
                Err(_) => break,
            }
        }
        Some(batch)
    }

    async fn wait(&mut self) -> Result<engine::ContainerExit, HostError> {
        // Output not read is dropped; the run never waits for a reader.
        self.lines.close();
        let exit = (&mut self.run.0)
            .await
            .map_err(|e| host_error(format!("the container run failed: {e}")))?
            .map_err(engine_failure)?;
        let outputs = self
            .output_dir
            .as_ref()
            .map(|dir| read_outputs(dir.path()))
            .unwrap_or_default();
        Ok(engine::ContainerExit {
            exit_code: exit.exit_code,
            oom_killed: exit.oom_killed,
            outputs,
        })
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

/// Engine output goes into the build log as `build` lines; the start of
/// the push onto the build's clock.
struct BuildLogSink {
    log: BuildLog,
    phases: Arc<PhaseClock>,
}

impl LineSink for BuildLogSink {
    fn line(&self, line: &str) {
        self.log.write("build", line);
    }

    fn push_started(&self) {
        self.phases.push_started();
    }
}

/// When one build crossed from phase to phase (`metrics.phases`): the
/// pipeline marks the context ready, the engine the first push.
#[derive(Debug, Default)]
pub struct PhaseClock {
    marks: std::sync::Mutex<PhaseMarks>,
}

#[derive(Debug, Default)]
struct PhaseMarks {
    context_ready: Option<std::time::Instant>,
    push_started: Option<std::time::Instant>,
}

impl PhaseClock {
    pub fn context_ready(&self) {
        self.marks.lock().unwrap().context_ready = Some(std::time::Instant::now());
    }

    /// The first push counts; later tags push within the same phase.
    pub fn push_started(&self) {
        let mut marks = self.marks.lock().unwrap();
        marks
            .push_started
            .get_or_insert_with(std::time::Instant::now);
    }

    /// Whether a push began (nothing left the engine before).
    pub fn push_began(&self) -> bool {
        self.marks.lock().unwrap().push_started.is_some()
    }

    /// The phases of a build that ran from `started` to `ended` after
    /// waiting `queued_ms`; a phase never reached is 0.
    pub fn phases(
        &self,
        queued_ms: u64,
        started: std::time::Instant,
        ended: std::time::Instant,
    ) -> crate::store::Phases {
        let marks = self.marks.lock().unwrap();
        let ms = |from: std::time::Instant, to: std::time::Instant| {
            to.saturating_duration_since(from).as_millis() as u64
        };
        let context_end = marks.context_ready.unwrap_or(ended);
        let build_end = marks.push_started.unwrap_or(ended);
        crate::store::Phases {
            queued_ms,
            context_ms: ms(started, context_end),
            build_ms: marks.context_ready.map_or(0, |ready| ms(ready, build_end)),
            push_ms: marks.push_started.map_or(0, |push| ms(push, ended)),
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
        // 0.1.0 has no reason of its own for these; the host keeps its
        // own classification (`BuildEngine::classified`) and the record
        // gets the precise one.
        FailureReason::BaseImageNotFound => W::DockerfileParseError,
        _ => W::EngineError,
    }
}

fn engine_failure(failure: crate::engine::BuildFailure) -> HostError {
    HostError::Engine(EngineFailure {
        reason: failure_to_wit(failure.reason),
        message: failure.message,
        exit_code: failure.exit_code,
    })
}

/// The host itself could not set the engine call up.
fn host_error(message: String) -> HostError {
    HostError::Engine(EngineFailure {
        reason: types::FailureReason::EngineError,
        message,
        exit_code: None,
    })
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

#[async_trait::async_trait]
impl Engine for BuildEngine {
    async fn container_start(
        &self,
        request: engine::ContainerRunRequest,
    ) -> Result<Box<dyn RunningContainer>, HostError> {
        let mut binds = Vec::new();
        if let Some(mount) = &request.context_mount {
            binds.push(format!("{}:{mount}:ro", self.context_dir.display()));
        }
        let mut config_dir = None;
        if let Some(mount) = &request.registry_config_mount {
            let (dir, file) = registry_config(self.registry_auth.as_ref())
                .map_err(|e| host_error(format!("cannot write the registry config: {e}")))?;
            binds.push(format!("{}:{mount}:ro", file.display()));
            config_dir = Some(dir);
        }
        let mut output_dir = None;
        if let Some(mount) = &request.output_mount {
            let dir = output_directory()
                .map_err(|e| host_error(format!("cannot make the output directory: {e}")))?;
            binds.push(format!("{}:{mount}:rw", dir.path().display()));
            output_dir = Some(dir);
        }
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
            memory_bytes: self.memory_bytes,
            nano_cpus: self.nano_cpus,
        };
        let (sender, lines) = tokio::sync::mpsc::channel(OUTPUT_BACKLOG_LINES);
        let sink = Arc::new(ChannelSink {
            lines: sender,
            dropped: Default::default(),
        });
        let engine = self.engine.clone();
        let log = self.log.clone();
        let peak_memory = self.peak_memory.clone();
        let run = tokio::spawn(async move {
            let result = engine.run_container(params, sink.clone()).await;
            if let Ok(exit) = &result {
                peak_memory.fetch_max(exit.peak_memory_bytes, std::sync::atomic::Ordering::Relaxed);
            }
            let dropped = sink.dropped.load(std::sync::atomic::Ordering::Relaxed);
            if dropped > 0 {
                log.system(&format!(
                    "{dropped} lines of container output were dropped: the builder did not read them"
                ));
            }
            result
        });
        Ok(Box::new(BuildContainer {
            lines,
            run: crate::engine::AbortOnDrop(run),
            _config_dir: config_dir,
            output_dir,
        }))
    }

    async fn registry_manifest(&self, reference: &str) -> Result<engine::PushedImage, HostError> {
        let image = crate::engine::registry::manifest(reference, self.registry_auth.as_ref())
            .await
            .map_err(|failure| self.classified_failure(failure))?;
        Ok(engine::PushedImage {
            digest: image.digest,
            size_bytes: image.size_bytes,
            layer_count: image.layer_count,
        })
    }

    async fn buildkit_build(
        &self,
        request: engine::BuildkitRequest,
    ) -> Result<engine::ImageResult, HostError> {
        // The runtime admitted only ids this build names.
        let secrets = request
            .secrets
            .iter()
            .filter_map(|id| Some((id.clone(), self.secret_mounts.get(id)?.clone())))
            .collect();
        if let Some(text) = &request.dockerignore_inline {
            // The context is this build's own copy: the host may prune it.
            crate::context::apply_dockerignore_text(&self.context_dir, &request.dockerfile, text)
                .map_err(|e| {
                    HostError::InvalidRequest(format!("the generated .dockerignore: {e}"))
                })?;
        }
        if let Some(text) = &request.dockerfile_inline {
            *self.inline_dockerfile.lock().unwrap() = Some(text.clone());
        }
        let mut build_args = to_map(request.build_args);
        build_args.extend(self.secret_build_args.clone());
        let mut labels = to_map(request.labels);
        labels.extend(self.labels.iter().cloned());
        let params = BuildkitParams {
            dockerfile: request.dockerfile,
            dockerfile_inline: request.dockerfile_inline,
            tags: request.tags,
            build_args,
            registry_auth: self.registry_auth.clone(),
            labels,
            target: request.target,
            platform: request.platform,
            // A build asked not to use the cache imports none either; every
            // build exports its own for the next.
            cache_from: match request.no_cache {
                true => Vec::new(),
                false => self.cache_from.clone(),
            },
            inline_cache: true,
            no_cache: request.no_cache,
            secrets,
        };
        let sink = Arc::new(BuildLogSink {
            log: self.log.clone(),
            phases: self.phases.clone(),
        });
        let image = self
            .engine
            .buildkit_build(&self.context_dir, &params, sink)
            .await
            .map_err(|failure| self.classified_failure(failure))?;
        Ok(engine::ImageResult {
            digest: image.digest,
            image_refs: image.image_refs,
            size_bytes: image.size_bytes,
            layer_count: image.layer_count,
            cached_steps: image.cached_steps,
            total_steps: image.total_steps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::PhaseClock;
    use std::time::{Duration, Instant};

    #[test]
    fn phases_split_a_build_at_its_marks_and_zero_what_it_never_reached() {
        let started = Instant::now();
        let at = |ms: u64| started + Duration::from_millis(ms);
        let clock = PhaseClock::default();
        {
            let mut marks = clock.marks.lock().unwrap();
            marks.context_ready = Some(at(40));
            marks.push_started = Some(at(340));
        }
        // A later tag's push does not move the phase's start.
        clock.push_started();
        let p = clock.phases(7, started, at(400));
        assert_eq!(
            (p.queued_ms, p.context_ms, p.build_ms, p.push_ms),
            (7, 40, 300, 60)
        );

        // Failed while fetching the context: no build, no push.
        let failed = PhaseClock::default().phases(0, started, at(25));
        assert_eq!(
            (failed.context_ms, failed.build_ms, failed.push_ms),
            (25, 0, 0)
        );

        // Failed in a RUN step: built until the end, pushed nothing.
        let clock = PhaseClock::default();
        clock.marks.lock().unwrap().context_ready = Some(at(10));
        let p = clock.phases(0, started, at(90));
        assert_eq!((p.context_ms, p.build_ms, p.push_ms), (10, 80, 0));
    }
}
