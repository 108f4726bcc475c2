//! The container engine: BuildKit builds through the Docker daemon (bollard),
//! then push and inspect. Everything here works on host paths and plain Rust
//! types; [`crate::capabilities`] translates from the plugin contract.

mod classify;
mod progress;
mod tarball;

pub use classify::classify_build_error;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::models::BuildInfoAux;
use bollard::query_parameters::{
    BuildImageOptions, BuilderVersion, PushImageOptions, TagImageOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::store::FailureReason;

/// Where engine output goes, one rendered line at a time.
pub trait LineSink: Send + Sync {
    /// Append one line of engine output.
    fn line(&self, line: &str);
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
    /// Full references; the first is built, the rest tagged from it.
    pub tags: Vec<String>,
    pub build_args: HashMap<String, String>,
    pub labels: HashMap<String, String>,
    pub target: Option<String>,
    pub platform: Option<String>,
    pub no_cache: bool,
    pub registry_auth: Option<RegistryAuth>,
}

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
}

impl DockerEngine {
    /// Connect to `host` (`unix://...`, `tcp://...`), or the local default
    /// socket when empty. Does not talk to the daemon yet.
    pub fn connect(host: &str) -> Result<Self, EngineError> {
        let (docker, host) = if host.is_empty() {
            (
                Docker::connect_with_local_defaults(),
                "unix:///var/run/docker.sock".to_string(),
            )
        } else {
            (Docker::connect_with_host(host), host.to_string())
        };
        let docker = docker.map_err(|source| EngineError::Connect {
            host: host.clone(),
            source,
        })?;
        Ok(DockerEngine { docker, host })
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
        let cancel = CancellationToken::new();
        // Dropping this future (timeout, cancel) cancels the build's runtime.
        let _stop_on_drop = cancel.clone().drop_guard();
        let (done_tx, done_rx) = oneshot::channel();
        let host = self.host.clone();
        let context_dir = context_dir.to_path_buf();
        let params = params.clone();
        std::thread::Builder::new()
            .name("kiln-build".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = done_tx.send(Err(BuildFailure::engine(format!(
                            "cannot start the build's runtime: {e}"
                        ))));
                        return;
                    }
                };
                let result = runtime.block_on(async {
                    let engine = DockerEngine::connect(&host)
                        .map_err(|e| BuildFailure::engine(e.to_string()))?;
                    tokio::select! {
                        result = engine.buildkit_build_here(&context_dir, &params, &*sink) => result,
                        _ = cancel.cancelled() => Err(BuildFailure::engine("the build was stopped")),
                    }
                });
                // Ends the session task and closes its connection.
                runtime.shutdown_timeout(Duration::from_secs(5));
                let _ = done_tx.send(result);
            })
            .map_err(|e| BuildFailure::engine(format!("cannot start a build thread: {e}")))?;
        done_rx.await.unwrap_or_else(|_| {
            Err(BuildFailure::engine(
                "the build thread ended without an answer",
            ))
        })
    }

    /// The build itself, on the current runtime.
    async fn buildkit_build_here(
        &self,
        context_dir: &Path,
        params: &BuildkitParams,
        sink: &dyn LineSink,
    ) -> Result<BuiltImage, BuildFailure> {
        let first = params
            .tags
            .first()
            .ok_or_else(|| BuildFailure::engine("a build needs at least one tag"))?;
        let dockerfile = match &params.dockerfile_inline {
            Some(_) => tarball::GENERATED_DOCKERFILE.to_string(),
            None => params.dockerfile.clone(),
        };
        let options = BuildImageOptions {
            dockerfile,
            t: Some(first.clone()),
            nocache: params.no_cache,
            rm: true,
            forcerm: true,
            buildargs: Some(params.build_args.clone()),
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
                    stream_error = Some(e.to_string());
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
        for extra in &params.tags[1..] {
            let (repo, tag) = split_reference(extra);
            self.docker
                .tag_image(
                    first,
                    Some(TagImageOptions {
                        repo: Some(repo.to_string()),
                        tag: Some(tag.to_string()),
                    }),
                )
                .await
                .map_err(|e| BuildFailure::engine(format!("cannot tag {extra}: {e}")))?;
        }
        let mut digest = String::new();
        for reference in &params.tags {
            digest = self
                .push(reference, params.registry_auth.as_ref(), sink)
                .await?;
        }
        let inspect = self
            .docker
            .inspect_image(first)
            .await
            .map_err(|e| BuildFailure::engine(format!("cannot inspect {first}: {e}")))?;
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

    /// Push one reference; returns the manifest digest the registry reported.
    async fn push(
        &self,
        reference: &str,
        auth: Option<&RegistryAuth>,
        sink: &dyn LineSink,
    ) -> Result<String, BuildFailure> {
        let (repo, tag) = split_reference(reference);
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

/// `host:port/org/name:tag` → (`host:port/org/name`, `tag`).
pub fn split_reference(reference: &str) -> (&str, &str) {
    let last_slash = reference.rfind('/').map(|i| i + 1).unwrap_or(0);
    match reference[last_slash..].rfind(':') {
        Some(colon) => (
            &reference[..last_slash + colon],
            &reference[last_slash + colon + 1..],
        ),
        None => (reference, "latest"),
    }
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
    fn splits_references_with_registry_ports() {
        assert_eq!(
            split_reference("127.0.0.1:5000/default/hello:v1"),
            ("127.0.0.1:5000/default/hello", "v1")
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/default/hello"),
            ("127.0.0.1:5000/default/hello", "latest")
        );
    }

    #[test]
    fn finds_the_digest_in_a_push_status() {
        assert_eq!(
            parse_push_digest("v1: digest: sha256:abc123 size: 527").as_deref(),
            Some("sha256:abc123")
        );
        assert_eq!(parse_push_digest("Pushed"), None);
    }
}
