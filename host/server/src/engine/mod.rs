//! The container engine: BuildKit builds through the Docker daemon (bollard),
//! then push and inspect. Everything here works on host paths and plain Rust
//! types; [`crate::capabilities`] translates from the plugin contract.

mod build_cache;
mod classify;
pub mod pool;
mod progress;
pub mod registry;
mod secrets;
mod tarball;

pub use build_cache::BuildCacheUsage;
pub use classify::classify_build_error;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::models::BuildInfoAux;
use bollard::query_parameters::{
    BuildImageOptions, BuilderVersion, PushImageOptions, RemoveImageOptions, TagImageOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::config::EngineTls;
use crate::store::FailureReason;

/// Where engine output goes, one rendered line at a time.
pub trait LineSink: Send + Sync {
    /// Append one line of engine output.
    fn line(&self, line: &str);

    /// The build is done and its first push begins (for the build's
    /// phases); nothing by default.
    fn push_started(&self) {}
}

/// The engine could not be reached or answered nonsense.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot connect to the Docker Engine at {host}: {source}")]
    Connect {
        host: String,
        source: bollard::errors::Error,
    },
    #[error("the Docker Engine at {host} does not answer: {source}")]
    Unreachable {
        host: String,
        source: bollard::errors::Error,
    },
    #[error("the Docker Engine at {host} refused a request: {message}")]
    Api { host: String, message: String },
}

/// A build that failed, classified.
#[derive(Debug, Clone)]
pub struct BuildFailure {
    pub reason: FailureReason,
    pub message: String,
    pub exit_code: Option<i32>,
}

impl BuildFailure {
    fn engine(message: impl Into<String>) -> Self {
        BuildFailure {
            reason: FailureReason::EngineError,
            message: message.into(),
            exit_code: None,
        }
    }
}

/// Credentials for the registry images are pushed to (and private bases
/// pulled from). Only the host holds them.
#[derive(Clone)]
pub struct RegistryAuth {
    pub server: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RegistryAuth({} as {}, password ***)",
            self.server, self.username
        )
    }
}

impl RegistryAuth {
    /// The username and password, for `kiln-trust`'s registry client.
    pub fn credentials(&self) -> kiln_trust::Credentials<'_> {
        kiln_trust::Credentials {
            username: &self.username,
            password: &self.password,
        }
    }

    fn docker(&self) -> DockerCredentials {
        DockerCredentials {
            username: Some(self.username.clone()),
            password: Some(self.password.clone()),
            serveraddress: Some(self.server.clone()),
            ..Default::default()
        }
    }
}

/// What a BuildKit build needs, already validated.
#[derive(Debug, Clone, Default)]
pub struct BuildkitParams {
    pub dockerfile: String,
    /// A generated Dockerfile, sent beside the context.
    pub dockerfile_inline: Option<String>,
    /// Full references: each is tagged from the build's own tag, pushed,
    /// and untagged again (the engine keeps none of them).
    pub tags: Vec<String>,
    pub build_args: HashMap<String, String>,
    pub labels: HashMap<String, String>,
    pub target: Option<String>,
    pub platform: Option<String>,
    pub no_cache: bool,
    pub registry_auth: Option<RegistryAuth>,
    /// Build secrets (id, value) for `RUN --mount=type=secret,id=ID`.
    pub secrets: Vec<(String, String)>,
    /// Images whose inline cache the build may import (`cache-from`), so a
    /// rebuild is warm on an engine that never built it.
    pub cache_from: Vec<String>,
    /// Export the build's cache inline, into the pushed image's config, for
    /// the next build to import wherever it runs.
    pub inline_cache: bool,
}

/// A container run, already permitted and resolved by the host.
#[derive(Clone)]
pub struct ContainerParams {
    pub image: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// `host:container[:ro]` bind mounts.
    pub binds: Vec<String>,
    pub host_network: bool,
    pub memory_bytes: u64,
    pub nano_cpus: u64,
}

/// How a container run ended.
#[derive(Debug, Clone, Copy)]
pub struct ContainerExit {
    pub exit_code: i32,
    pub oom_killed: bool,
    /// The most memory the run used, as the engine's stats reported it
    /// while it ran (the cgroup's high-water mark); 0 when no sample came.
    pub peak_memory_bytes: u64,
}

/// A task stopped when this is dropped (a container run the caller
/// stopped waiting for, a stats stream that outlives its container).
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What an engine's daemon says about itself (`docker info`).
#[derive(Debug, Clone, Default)]
pub struct EngineFacts {
    /// `os/arch` (`linux/amd64`).
    pub platform: Option<String>,
    pub version: Option<String>,
    pub cpus: Option<u32>,
    pub memory_bytes: Option<u64>,
}

/// bollard's per-request time limit, as its own default (a build's
/// stream is one request: the build's own timeout is what ends it).
const ENGINE_REQUEST_TIMEOUT_SECS: u64 = 120;

/// What a successful build produced.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub digest: String,
    pub image_refs: Vec<String>,
    pub size_bytes: u64,
    pub layer_count: u32,
    pub cached_steps: u32,
    pub total_steps: u32,
}

/// A connection to one Docker Engine. Cheap to clone.
#[derive(Clone)]
pub struct DockerEngine {
    docker: Docker,
    host: String,
    /// Mutual TLS files for a `tcp://` engine.
    tls: Option<Arc<EngineTls>>,
}

impl DockerEngine {
    /// Connect to `host` (`unix://...`, `tcp://...`), or the local default
    /// socket when empty. Does not talk to the daemon yet.
    pub fn connect(host: &str) -> Result<Self, EngineError> {
        Self::connect_with(host, None)
    }

    /// Connect to `host`, over mutual TLS when `tls` is given (a `tcp://`
    /// host). Does not talk to the daemon yet.
    pub fn connect_with(host: &str, tls: Option<Arc<EngineTls>>) -> Result<Self, EngineError> {
        let (docker, host) = match (host.is_empty(), &tls) {
            (true, _) => (
                Docker::connect_with_local_defaults(),
                "unix:///var/run/docker.sock".to_string(),
            ),
            (false, Some(tls)) => (
                {
                    // bollard builds its TLS client with the process's
                    // default provider, which a binary linking both of
                    // rustls' providers (as the tests do) has not chosen:
                    // ring, as the rest of Kiln. A no-op once one is set.
                    let _ = rustls::crypto::ring::default_provider().install_default();
                    Docker::connect_with_ssl(
                        host,
                        &tls.key,
                        &tls.cert,
                        &tls.ca,
                        ENGINE_REQUEST_TIMEOUT_SECS,
                        bollard::API_DEFAULT_VERSION,
                    )
                },
                host.to_string(),
            ),
            (false, None) => (Docker::connect_with_host(host), host.to_string()),
        };
        let docker = docker.map_err(|source| EngineError::Connect {
            host: host.clone(),
            source,
        })?;
        Ok(DockerEngine { docker, host, tls })
    }

    /// Where the engine is (`unix:///…`, `tcp://…`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether it is reached through a unix socket (build secrets are
    /// served only there, see `secrets`).
    pub fn is_local_socket(&self) -> bool {
        self.unix_socket().is_some()
    }

    /// What the daemon says about itself.
    pub async fn facts(&self) -> Result<EngineFacts, EngineError> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|source| EngineError::Unreachable {
                host: self.host.clone(),
                source,
            })?;
        let arch = match info.architecture.as_deref() {
            Some("x86_64") => "amd64".to_string(),
            Some("aarch64") => "arm64".to_string(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let platform = match (info.os_type.as_deref(), arch.is_empty()) {
            (Some(os), false) => Some(format!("{os}/{arch}")),
            _ => None,
        };
        Ok(EngineFacts {
            platform,
            version: info.server_version,
            cpus: info.ncpu.map(|n| n.max(0) as u32),
            memory_bytes: info.mem_total.map(|n| n.max(0) as u64),
        })
    }

    /// Check that the daemon answers.
    pub async fn ping(&self) -> Result<(), EngineError> {
        self.docker
            .ping()
            .await
            .map(|_| ())
            .map_err(|source| EngineError::Unreachable {
                host: self.host.clone(),
                source,
            })
    }

    /// The bollard client, for tests and tools.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Build `context_dir` with BuildKit, tag every reference, push them and
    /// measure the image. Dropping the returned future stops the build in
    /// the daemon.
    ///
    /// The build runs on a runtime of its own, with a client of its own, on
    /// a dedicated thread: bollard 0.21 serves the BuildKit session on a task
    /// it spawns and never stops, which would leak one connection (in this
    /// process and in the daemon) per build. Dropping the build's runtime
    /// when the build ends is what closes its session.
    pub async fn buildkit_build(
        &self,
        context_dir: &Path,
        params: &BuildkitParams,
        sink: Arc<dyn LineSink>,
    ) -> Result<BuiltImage, BuildFailure> {
        let context_dir = context_dir.to_path_buf();
        let params = params.clone();
        let build_tag = build_tag(&params.tags);
        let leftover = build_tag.clone();
        self.isolated(
            move |engine| async move {
                let built = engine
                    .buildkit_build_here(&context_dir, &params, &build_tag, &*sink)
                    .await;
                engine.untag(&build_tag).await;
                built
            },
            // A stopped build (cancel, timeout) leaves no tag either.
            move |engine| async move { engine.untag(&leftover).await },
        )
        .await
    }

    /// Remove one tag from the engine. Builds leave none behind, pushed or
    /// not: the registry holds the image, and an engine that kept every
    /// build's tags filled up (620 after one test run). BuildKit's build
    /// cache is kept apart from image tags, so the next build's cache hits
    /// stay. Best effort: a tag that is gone already is fine.
    async fn untag(&self, reference: &str) {
        let removed = self
            .docker
            .remove_image(
                reference,
                Some(RemoveImageOptions {
                    force: false,
                    noprune: false,
                    ..Default::default()
                }),
                None,
            )
            .await;
        match removed {
            Ok(_) => {}
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => tracing::warn!("cannot remove the tag {reference} from the engine: {e}"),
        }
    }

    /// Run `work` with a client of its own on a runtime of its own, on a
    /// dedicated thread; when the returned future is dropped (timeout,
    /// cancel), `cleanup` runs on that runtime before it shuts down, and the
    /// shutdown ends every task bollard spawned there.
    async fn isolated<T, W, WF, C, CF>(&self, work: W, cleanup: C) -> Result<T, BuildFailure>
    where
        T: Send + 'static,
        W: FnOnce(DockerEngine) -> WF + Send + 'static,
        WF: std::future::Future<Output = Result<T, BuildFailure>>,
        C: FnOnce(DockerEngine) -> CF + Send + 'static,
        CF: std::future::Future<Output = ()>,
    {
        let cancel = CancellationToken::new();
        // Dropping this future (timeout, cancel) cancels the work.
        let _stop_on_drop = cancel.clone().drop_guard();
        let (done_tx, done_rx) = oneshot::channel();
        let host = self.host.clone();
        let tls = self.tls.clone();
        std::thread::Builder::new()
            .name("kiln-engine".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = done_tx.send(Err(BuildFailure::engine(format!(
                            "cannot start the engine runtime: {e}"
                        ))));
                        return;
                    }
                };
                let result = runtime.block_on(async {
                    let engine = DockerEngine::connect_with(&host, tls)
                        .map_err(|e| BuildFailure::engine(e.to_string()))?;
                    tokio::select! {
                        result = work(engine.clone()) => result,
                        _ = cancel.cancelled() => {
                            cleanup(engine).await;
                            Err(BuildFailure::engine("the engine work was stopped"))
                        }
                    }
                });
                // Ends the session tasks and closes their connections.
                runtime.shutdown_timeout(Duration::from_secs(5));
                let _ = done_tx.send(result);
            })
            .map_err(|e| BuildFailure::engine(format!("cannot start an engine thread: {e}")))?;
        done_rx.await.unwrap_or_else(|_| {
            Err(BuildFailure::engine(
                "the engine thread ended without an answer",
            ))
        })
    }

    /// Run a container to completion (see [`ContainerParams`]); returns its
    /// exit code and whether it was killed for memory. The container is
    /// removed in every case, also when the caller stops waiting.
    pub async fn run_container(
        &self,
        params: ContainerParams,
        sink: Arc<dyn LineSink>,
    ) -> Result<ContainerExit, BuildFailure> {
        let name = format!("kiln-run-{}", uuid::Uuid::new_v4().simple());
        let cleanup_name = name.clone();
        self.isolated(
            move |engine| async move {
                let result = engine.run_container_here(&name, &params, &*sink).await;
                engine.remove_container(&name).await;
                result
            },
            move |engine| async move { engine.remove_container(&cleanup_name).await },
        )
        .await
    }

    async fn remove_container(&self, name: &str) {
        let _ = self
            .docker
            .remove_container(
                name,
                Some(bollard::query_parameters::RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
    }

    async fn run_container_here(
        &self,
        name: &str,
        params: &ContainerParams,
        sink: &dyn LineSink,
    ) -> Result<ContainerExit, BuildFailure> {
        use bollard::models::{ContainerCreateBody, HostConfig};
        use bollard::query_parameters::{
            CreateContainerOptions, LogsOptions, StartContainerOptions, WaitContainerOptions,
        };
        if self.docker.inspect_image(&params.image).await.is_err() {
            return Err(BuildFailure::engine(format!(
                "the image {} is not on the engine; pull it there first (or configure the builder to use an image that is)",
                params.image
            )));
        }
        // A profile may ask more CPUs than the engine has (`large` on a
        // two-core machine); the engine refuses such a limit outright, so
        // the run gets every CPU there is instead.
        let engine_cpus = self
            .docker
            .info()
            .await
            .ok()
            .and_then(|info| info.ncpu)
            .filter(|n| *n > 0)
            .map(|n| n as u64 * 1_000_000_000);
        let nano_cpus = match engine_cpus {
            Some(all) if params.nano_cpus > all => {
                sink.line(&format!(
                    "the profile allows {} CPUs; the engine has {}: the run may use all of them",
                    params.nano_cpus as f64 / 1e9,
                    all / 1_000_000_000
                ));
                all
            }
            _ => params.nano_cpus,
        };
        let config = ContainerCreateBody {
            image: Some(params.image.clone()),
            cmd: Some(params.args.clone()),
            env: Some(params.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            host_config: Some(HostConfig {
                binds: Some(params.binds.clone()),
                network_mode: params.host_network.then(|| "host".to_string()),
                memory: Some(params.memory_bytes as i64),
                // The profile's memory is all it gets: no swap on top
                // (Docker's default would allow as much swap again).
                memory_swap: Some(params.memory_bytes as i64),
                nano_cpus: Some(nano_cpus as i64),
                pids_limit: Some(4096),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.to_string()),
                    platform: String::new(),
                }),
                config,
            )
            .await
            .map_err(|e| BuildFailure::engine(format!("cannot create the container: {e}")))?;
        self.docker
            .start_container(name, None::<StartContainerOptions>)
            .await
            .map_err(|e| BuildFailure::engine(format!("cannot start the container: {e}")))?;
        // The engine's stats while it runs (a sample a second): their
        // high-water mark is the run's peak memory, which `auto` sizes later
        // builds by. The stream outlives the run; it is stopped after it.
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sampler = {
            let docker = self.docker.clone();
            let name = name.to_string();
            let peak = peak.clone();
            tokio::spawn(async move {
                let mut stats = docker.stats(
                    &name,
                    Some(bollard::query_parameters::StatsOptions {
                        stream: true,
                        one_shot: false,
                    }),
                );
                while let Some(Ok(sample)) = stats.next().await {
                    if let Some(memory) = sample.memory_stats {
                        let seen = memory.max_usage.unwrap_or(0).max(memory.usage.unwrap_or(0));
                        peak.fetch_max(seen, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
        };
        let sampler = AbortOnDrop(sampler);
        let mut logs = self.docker.logs(
            name,
            Some(LogsOptions {
                follow: true,
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        );
        let mut pending = String::new();
        while let Some(Ok(chunk)) = logs.next().await {
            pending.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            while let Some(end) = pending.find('\n') {
                let line: String = pending.drain(..=end).collect();
                sink.line(line.trim_end_matches(['\n', '\r']));
            }
        }
        if !pending.is_empty() {
            sink.line(&pending);
        }
        let mut wait = self
            .docker
            .wait_container(name, None::<WaitContainerOptions>);
        let mut exit_code = 0i64;
        while let Some(result) = wait.next().await {
            match result {
                Ok(status) => exit_code = status.status_code,
                Err(bollard::errors::Error::DockerContainerWaitError { code, .. }) => {
                    exit_code = code
                }
                Err(e) => {
                    return Err(BuildFailure::engine(format!(
                        "waiting for the container failed: {e}"
                    )))
                }
            }
        }
        let oom_killed = self
            .docker
            .inspect_container(
                name,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .ok()
            .and_then(|c| c.state)
            .and_then(|s| s.oom_killed)
            .unwrap_or(false);
        drop(sampler);
        let peak_memory_bytes = peak.load(std::sync::atomic::Ordering::Relaxed);
        Ok(ContainerExit {
            exit_code: exit_code as i32,
            oom_killed,
            peak_memory_bytes,
        })
    }

    /// The build itself, on the current runtime. The image is built under
    /// `build_tag`, a tag of its own, and each requested reference is
    /// tagged, pushed and untagged in turn under that reference's lock: two
    /// builds of the same `name:tag` never push each other's image, and no
    /// requested tag outlives its push.
    async fn buildkit_build_here(
        &self,
        context_dir: &Path,
        params: &BuildkitParams,
        build_tag: &str,
        sink: &dyn LineSink,
    ) -> Result<BuiltImage, BuildFailure> {
        if params.tags.is_empty() {
            return Err(BuildFailure::engine("a build needs at least one tag"));
        }
        let dockerfile = match &params.dockerfile_inline {
            Some(_) => tarball::GENERATED_DOCKERFILE.to_string(),
            None => params.dockerfile.clone(),
        };
        let renderer = if params.secrets.is_empty() {
            self.solve_through_build_endpoint(context_dir, params, build_tag, &dockerfile, sink)
                .await?
        } else {
            self.solve_with_secrets(context_dir, params, build_tag, &dockerfile, sink)
                .await?
        };
        let mut digest = String::new();
        sink.push_started();
        for reference in &params.tags {
            let lock = reference_lock(reference);
            let _held = lock.lock().await;
            let (repo, tag) = registry::without_tag(reference);
            self.docker
                .tag_image(
                    build_tag,
                    Some(TagImageOptions {
                        repo: Some(repo.to_string()),
                        tag: Some(tag.to_string()),
                    }),
                )
                .await
                .map_err(|e| BuildFailure::engine(format!("cannot tag {reference}: {e}")))?;
            let pushed = self
                .push_with_retries(reference, params.registry_auth.as_ref(), sink)
                .await;
            self.untag(reference).await;
            digest = pushed?;
        }
        let inspect = self
            .docker
            .inspect_image(build_tag)
            .await
            .map_err(|e| BuildFailure::engine(format!("cannot inspect {build_tag}: {e}")))?;
        Ok(BuiltImage {
            digest,
            image_refs: params.tags.clone(),
            size_bytes: inspect.size.unwrap_or(0).max(0) as u64,
            layer_count: inspect
                .root_fs
                .and_then(|fs| fs.layers)
                .map(|l| l.len() as u32)
                .unwrap_or(0),
            cached_steps: renderer.cached_steps(),
            total_steps: renderer.total_steps(),
        })
    }

    /// Solve through Docker Engine's `/build` endpoint, streaming the
    /// context; on success the image is in the engine under the first tag.
    async fn solve_through_build_endpoint(
        &self,
        context_dir: &Path,
        params: &BuildkitParams,
        first: &str,
        dockerfile: &str,
        sink: &dyn LineSink,
    ) -> Result<progress::Renderer, BuildFailure> {
        let mut build_args = params.build_args.clone();
        if params.inline_cache {
            // Docker Engine's builder turns this build arg into BuildKit's
            // inline cache export (the metadata rides in the image config).
            build_args.insert("BUILDKIT_INLINE_CACHE".into(), "1".into());
        }
        let options = BuildImageOptions {
            dockerfile: dockerfile.to_string(),
            t: Some(first.to_string()),
            nocache: params.no_cache,
            rm: true,
            forcerm: true,
            cachefrom: (!params.cache_from.is_empty()).then(|| params.cache_from.clone()),
            buildargs: Some(build_args),
            labels: Some(params.labels.clone()),
            target: params.target.clone().unwrap_or_default(),
            platform: params.platform.clone().unwrap_or_default(),
            version: BuilderVersion::BuilderBuildKit,
            session: Some(uuid::Uuid::new_v4().to_string()),
            ..Default::default()
        };
        let body = bollard::body_try_stream(tarball::stream_directory(
            context_dir.to_path_buf(),
            params.dockerfile_inline.clone(),
        ));
        // Credentials for pulling private bases from the org's registry.
        let pull_credentials = params
            .registry_auth
            .as_ref()
            .map(|auth| HashMap::from([(auth.server.clone(), auth.docker())]));
        let mut stream = self
            .docker
            .build_image(options, pull_credentials, Some(body));
        let mut renderer = progress::Renderer::default();
        let mut image_id = None;
        let mut stream_error = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(aux) = info.aux {
                        match aux {
                            BuildInfoAux::BuildKit(status) => {
                                for line in renderer.render(&status) {
                                    sink.line(&line);
                                }
                            }
                            BuildInfoAux::Default(id) => image_id = id.id,
                        }
                    }
                    if let Some(text) = info.stream {
                        for line in text.lines().filter(|l| !l.trim().is_empty()) {
                            sink.line(line);
                        }
                    }
                }
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    stream_error = Some(error);
                    break;
                }
                Err(e) => {
                    // The daemon itself did not answer (bollard's own text
                    // hides why: "client error (Connect)").
                    stream_error = Some(format!(
                        "the Docker Engine at {} did not answer: {}",
                        self.host,
                        causes(&e)
                    ));
                    break;
                }
            }
        }
        if let Some(error) = stream_error {
            let detail = renderer.first_error().unwrap_or_default();
            sink.line(&format!("ERROR: {error}"));
            return Err(classify_build_error(
                &error,
                &detail,
                renderer.failed_step_output(),
            ));
        }
        if image_id.is_none() {
            return Err(BuildFailure::engine(
                "the engine finished the build without reporting an image",
            ));
        }
        Ok(renderer)
    }

    /// Push one reference, retrying with backoff while the registry cannot
    /// be reached (refused, timed out, 5xx): a registry restarting or
    /// briefly overloaded should not fail the build. A refusal (denied,
    /// unauthorized) is final at once.
    async fn push_with_retries(
        &self,
        reference: &str,
        auth: Option<&RegistryAuth>,
        sink: &dyn LineSink,
    ) -> Result<String, BuildFailure> {
        let mut attempt = 1;
        loop {
            match self.push(reference, auth, sink).await {
                Err(failure)
                    if failure.reason == FailureReason::RegistryUnreachable
                        && attempt < PUSH_ATTEMPTS =>
                {
                    let delay = PUSH_FIRST_RETRY * 2u32.pow(attempt - 1);
                    sink.line(&format!(
                        "push of {reference} failed ({}); retrying in {} s (attempt {} of {PUSH_ATTEMPTS})",
                        failure.message.lines().next().unwrap_or(""),
                        delay.as_secs(),
                        attempt + 1
                    ));
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// Push one reference; returns the manifest digest the registry reported.
    async fn push(
        &self,
        reference: &str,
        auth: Option<&RegistryAuth>,
        sink: &dyn LineSink,
    ) -> Result<String, BuildFailure> {
        let (repo, tag) = registry::without_tag(reference);
        sink.line(&format!("pushing {reference}"));
        let mut stream = self.docker.push_image(
            repo,
            Some(PushImageOptions {
                tag: Some(tag.to_string()),
                platform: None,
            }),
            // Without credentials an empty auth header: the daemon wants one
            // even for registries that need none.
            Some(auth.map(RegistryAuth::docker).unwrap_or_default()),
        );
        let mut digest = None;
        let mut counting_down = false;
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(e) => return Err(classify::classify_push_error(reference, &e.to_string())),
            };
            if let Some(detail) = info.error_detail {
                let message = detail.message.unwrap_or_default();
                return Err(classify::classify_push_error(reference, &message));
            }
            if let Some(status) = info.status {
                if let Some(found) = parse_push_digest(&status) {
                    digest = Some(found);
                }
                // The engine retries a failed layer upload itself, counting
                // down ("Retrying in 5 seconds", "… 4 …"): say so once per
                // countdown, so a slow push is not a silent one.
                let retrying = status.starts_with("Retrying in");
                if retrying && !counting_down {
                    sink.line(&format!(
                        "push of {reference}: a layer upload failed; the engine retries it ({})",
                        status.to_lowercase()
                    ));
                }
                counting_down = retrying;
            }
        }
        let digest = digest.ok_or_else(|| {
            BuildFailure::engine(format!(
                "the registry accepted {reference} but reported no digest"
            ))
        })?;
        sink.line(&format!("pushed {reference} {digest}"));
        Ok(digest)
    }
}

/// An error and its causes, `outer: inner: …`.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

/// Pushes of one reference before a build fails with `REGISTRY_UNREACHABLE`.
const PUSH_ATTEMPTS: u32 = 4;
/// The wait before the second attempt; it doubles for each one after.
const PUSH_FIRST_RETRY: Duration = Duration::from_secs(1);

/// The tag a build's image is made under: the first requested
/// reference's repository with a tag no other build uses.
fn build_tag(tags: &[String]) -> String {
    let repo = tags
        .first()
        .map(|first| registry::without_tag(first).0)
        .unwrap_or("kiln-build");
    format!("{repo}:kiln-build-{}", uuid::Uuid::new_v4().simple())
}

/// One lock per image reference in this process: tagging a reference and
/// pushing it is one step no other build may interleave with.
fn reference_lock(reference: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: std::sync::LazyLock<
        std::sync::Mutex<HashMap<String, std::sync::Weak<tokio::sync::Mutex<()>>>>,
    > = std::sync::LazyLock::new(Default::default);
    let mut locks = LOCKS.lock().unwrap();
    locks.retain(|_, lock| lock.strong_count() > 0);
    if let Some(lock) = locks.get(reference).and_then(std::sync::Weak::upgrade) {
        return lock;
    }
    let lock = Arc::new(tokio::sync::Mutex::new(()));
    locks.insert(reference.to_string(), Arc::downgrade(&lock));
    lock
}

/// The digest in a push status line: `TAG: digest: sha256:... size: N`.
fn parse_push_digest(status: &str) -> Option<String> {
    let rest = &status[status.find("digest: ")? + "digest: ".len()..];
    let digest = rest.split_whitespace().next()?;
    digest.starts_with("sha256:").then(|| digest.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_digest_in_a_push_status() {
        assert_eq!(
            parse_push_digest("v1: digest: sha256:abc123 size: 527").as_deref(),
            Some("sha256:abc123")
        );
        assert_eq!(parse_push_digest("Pushed"), None);
    }
}
