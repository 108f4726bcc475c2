//! BuildKit builds that mount build secrets (`RUN --mount=type=secret,id=…`).
//!
//! Docker Engine's `/build` endpoint has no way to pass secrets, and the
//! session bollard 0.21 opens for it serves none. So these builds are solved
//! through BuildKit's gRPC control API instead, on a session the host owns
//! and serves (context upload, registry auth, secrets), with progress read
//! from a second control connection (`Control.Status`). Each secret is a
//! 0600 file in a private temporary directory for the build's duration; its
//! value reaches the RUN step's tmpfs mount and nothing else: not the image,
//! not its history, not the build cache key.
//!
//! The trade-off: the session upload takes the whole context at once, so
//! these builds hold their context in memory, up to [`MAX_CONTEXT_BYTES`].
//! Builds without secret mounts keep streaming through `/build`.

use std::collections::HashMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use bollard::grpc::build::{ImageBuildFrontendOptions, ImageBuildPlatform, SecretSource};
use bollard::grpc::driver::moby::Moby;
use bollard::grpc::driver::Build as _;
use bollard::grpc::BuildRef;
use bollard_buildkit_proto::moby::buildkit::v1::control_client::ControlClient;
use bollard_buildkit_proto::moby::buildkit::v1::StatusRequest;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::Empty;

use super::{progress, tarball, BuildFailure, BuildkitParams, DockerEngine, LineSink};

/// Largest context a secret-mounting build may send (it is held in memory).
pub const MAX_CONTEXT_BYTES: usize = 1 << 30;

impl DockerEngine {
    /// Solve `params` (which names secrets) on a host-owned session; on
    /// success the image is in the engine under the first tag.
    pub(super) async fn solve_with_secrets(
        &self,
        context_dir: &Path,
        params: &BuildkitParams,
        first: &str,
        dockerfile: &str,
        sink: &dyn LineSink,
    ) -> Result<progress::Renderer, BuildFailure> {
        let socket = self.unix_socket().ok_or_else(|| {
            BuildFailure::engine(
                "build secrets need the Docker Engine on a local unix socket (DOCKER_HOST=unix://...)",
            )
        })?;
        if !params.cache_from.is_empty() {
            sink.line("cache: a build that mounts secrets imports no registry cache on this engine (Docker Engine 20.10's BuildKit session ignores cache-from); the engine's own cache still applies");
        }
        let context = collect_context(context_dir, params.dockerfile_inline.clone()).await?;
        let secret_dir = tempfile::tempdir()
            .map_err(|e| BuildFailure::engine(format!("cannot stage the build secrets: {e}")))?;
        let mut options = ImageBuildFrontendOptions::builder()
            .dockerfile(Path::new(dockerfile))
            .nocache(params.no_cache);
        for (id, value) in &params.secrets {
            let path = write_secret(secret_dir.path(), id, value)
                .map_err(|e| BuildFailure::engine(format!("cannot stage secret {id}: {e}")))?;
            options = options.set_secret(id, &SecretSource::File(path));
        }
        for (key, value) in &params.build_args {
            options = options.buildarg(key, value);
        }
        for (key, value) in &params.labels {
            options = options.label(key, value);
        }
        if let Some(target) = &params.target {
            options = options.target(target);
        }
        if let Some(platform) = params.platform.as_deref().and_then(parse_platform) {
            options = options.platforms(&platform);
        }
        let credentials: Option<HashMap<&str, bollard::auth::DockerCredentials>> = params
            .registry_auth
            .as_ref()
            .map(|auth| HashMap::from([(auth.server.as_str(), auth.docker())]));
        let build_ref = BuildRef::random();
        let mut control = control_client(&socket).await?;
        let status_ref = build_ref.as_ref().to_string();
        let mut renderer = progress::Renderer::default();
        let solve = Moby::new(&self.docker).docker_build(
            first,
            options.build(),
            bollard::grpc::build::ImageBuildLoadInput::Upload(context),
            credentials,
            Some(build_ref),
        );
        let follow = async {
            // Status waits for the solve to register its ref, then streams
            // until the build ends.
            let Ok(response) = control.status(StatusRequest { r#ref: status_ref }).await else {
                return;
            };
            let mut updates = response.into_inner();
            while let Some(Ok(status)) = updates.next().await {
                for line in renderer.render(&status) {
                    sink.line(&line);
                }
            }
        };
        let (solved, ()) = tokio::join!(solve, follow);
        drop(secret_dir);
        if let Err(error) = solved {
            let error = error.to_string();
            let detail = renderer.first_error().unwrap_or_default();
            sink.line(&format!("ERROR: {error}"));
            return Err(super::classify_build_error(
                &error,
                &detail,
                renderer.failed_step_output(),
            ));
        }
        Ok(renderer)
    }

    /// The daemon's unix socket path, when it is reached through one.
    pub(super) fn unix_socket(&self) -> Option<PathBuf> {
        let host = self.host.as_str();
        if host.is_empty() {
            return Some(PathBuf::from("/var/run/docker.sock"));
        }
        host.strip_prefix("unix://").map(PathBuf::from)
    }
}

/// The context as one tar in memory, refused past [`MAX_CONTEXT_BYTES`].
async fn collect_context(
    context_dir: &Path,
    generated_dockerfile: Option<String>,
) -> Result<Bytes, BuildFailure> {
    let mut stream = Box::pin(tarball::stream_directory(
        context_dir.to_path_buf(),
        generated_dockerfile,
    ));
    let mut tar = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| BuildFailure::engine(format!("cannot read the context: {e}")))?;
        tar.extend_from_slice(&chunk);
        if tar.len() > MAX_CONTEXT_BYTES {
            return Err(BuildFailure::engine(format!(
                "a build that mounts secrets sends its context in one piece, at most {} MiB; this context is larger (leave large files out with .dockerignore, or pass the secret with secretBuildArgs)",
                MAX_CONTEXT_BYTES >> 20
            )));
        }
    }
    Ok(Bytes::from(tar))
}

/// One secret as a file only this process may read.
fn write_secret(dir: &Path, id: &str, value: &str) -> std::io::Result<PathBuf> {
    use std::io::Write;
    // Ids are checked names (letters, digits, `_`, `-`, `.`), never paths.
    let path = dir.join(format!("secret-{}", hex::encode(id)));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all(value.as_bytes())?;
    Ok(path)
}

/// `os/arch[/variant]`.
fn parse_platform(text: &str) -> Option<ImageBuildPlatform> {
    let mut parts = text.split('/');
    let os = parts.next()?.to_string();
    let architecture = parts.next()?.to_string();
    Some(ImageBuildPlatform {
        os,
        architecture,
        variant: parts.next().map(str::to_string),
    })
}

/// A BuildKit control client on a connection of its own: `POST /grpc`
/// upgraded to h2c on the daemon's socket.
async fn control_client(
    socket: &Path,
) -> Result<ControlClient<tonic::transport::Channel>, BuildFailure> {
    let socket = socket.to_path_buf();
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let socket = socket.clone();
        async move { upgrade_to_grpc(&socket).await }
    });
    let channel = tonic::transport::Endpoint::from_static("http://docker.engine")
        .connect_with_connector(connector)
        .await
        .map_err(|e| BuildFailure::engine(format!("cannot reach BuildKit's control API: {e}")))?;
    Ok(ControlClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}

async fn upgrade_to_grpc(socket: &Path) -> std::io::Result<hyper::upgrade::Upgraded> {
    let io = |e: hyper::Error| std::io::Error::other(e.to_string());
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(io)?;
    tokio::spawn(connection.with_upgrades());
    let request = hyper::Request::post("/grpc")
        .header(hyper::header::HOST, "docker")
        .header(hyper::header::CONNECTION, "Upgrade")
        .header(hyper::header::UPGRADE, "h2c")
        .body(Empty::<Bytes>::new())
        .map_err(std::io::Error::other)?;
    let response = sender.send_request(request).await.map_err(io)?;
    if response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        return Err(std::io::Error::other(format!(
            "the engine answered {} to the gRPC upgrade",
            response.status()
        )));
    }
    hyper::upgrade::on(response).await.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_private_files_named_by_hex() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_secret(dir.path(), "../npm", "tok").unwrap();
        assert_eq!(path.parent().unwrap(), dir.path());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_to_string(path).unwrap(), "tok");
        let platform = parse_platform("linux/arm64/v8").unwrap();
        assert_eq!(
            (platform.os.as_str(), platform.architecture.as_str()),
            ("linux", "arm64")
        );
        assert!(parse_platform("linux").is_none());
    }
}
