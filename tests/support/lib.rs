//! The harness the end-to-end tests share: a real Kiln server per test (in
//! this process, on a free loopback port, with its own data directory), an
//! HTTP client, zip helpers, and checks against the real registry and
//! Docker Engine that `scripts/setup.sh` starts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

pub use kiln_server;

pub mod browser;
pub mod engines;
pub mod git;
pub mod webhooks;

/// The registry `scripts/setup.sh` runs.
pub const REGISTRY: &str = "127.0.0.1:5000";

/// The directory of hostile fixture plugins built by `build.rs`.
pub fn fixture_plugin_dir() -> PathBuf {
    PathBuf::from(env!("KILN_FIXTURE_PLUGIN_DIR"))
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A unique image name for one test, so parallel tests never share images.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// A client of one server, holding one token.
pub struct Api {
    base: String,
    pub token: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A running server (in this process) and a client holding the `default`
/// organization's admin token.
pub struct TestServer {
    pub server: kiln_server::Server,
    pub data_dir: tempfile::TempDir,
    api: Api,
}

impl std::ops::Deref for TestServer {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

/// An HTTP answer.
pub struct Answer {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    /// The error message of an error answer.
    pub fn error_message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_else(|| {
                panic!(
                    "no error message in {}",
                    String::from_utf8_lossy(&self.body)
                )
            })
            .to_string()
    }
}

impl TestServer {
    /// A server with default settings.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server whose configuration `adjust` may change first.
    pub async fn start_with(adjust: impl FnOnce(&mut kiln_server::config::ServerConfig)) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = kiln_server::config::ServerConfig::new(data_dir.path());
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.registry = REGISTRY.into();
        // The tests' git servers listen on loopback; a test of the
        // refusal resets this to the default.
        config.network =
            kiln_server::net::NetworkPolicy::allowing(["127.0.0.0/8".parse().unwrap()]);
        // Tests run garbage collection themselves, when they mean to: a
        // background run could prune the engine's build cache other tests
        // are counting on.
        config.retention.interval_minutes = 0;
        adjust(&mut config);
        let server = kiln_server::Server::start(config)
            .await
            .expect("the server starts (did scripts/setup.sh run?)");
        let token = server.admin_token().unwrap();
        let api = Api::new(&format!("http://{}", server.addr()), &token);
        TestServer {
            server,
            data_dir,
            api,
        }
    }

    /// The server's store (to flush it before reading its files raw).
    pub fn store(&self) -> &kiln_server::store::Store {
        self.server.store()
    }

    /// A client of this server with another token.
    pub fn as_token(&self, token: &str) -> Api {
        Api::new(&self.api.base, token)
    }
}

/// A `kiln serve` process, for what only a real process can show (a kill -9,
/// a restart, the CLI).
pub struct KilnProcess {
    child: std::process::Child,
    pub data_dir: PathBuf,
    api: Api,
}

impl std::ops::Deref for KilnProcess {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl KilnProcess {
    /// Start `kiln serve` from `binary` on a free port with `data_dir`,
    /// pushing to the test registry unless `extra_args` has `--registry`.
    pub fn spawn(binary: &Path, data_dir: &Path, extra_args: &[&str]) -> Self {
        Self::spawn_with_env(binary, data_dir, extra_args, &[])
    }

    /// [`KilnProcess::spawn`] with these variables in its environment too.
    pub fn spawn_with_env(
        binary: &Path,
        data_dir: &Path,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        std::fs::create_dir_all(data_dir).unwrap();
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("kiln-stderr.log"))
            .unwrap();
        // The test registry unless `extra_args` names another.
        let registry: &[&str] = if extra_args.contains(&"--registry") {
            &[]
        } else {
            &["--registry", REGISTRY]
        };
        let mut child = Command::new(binary)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(registry)
            .args(extra_args)
            .env("KILN_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start kiln serve");
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| {
                    panic!(
                        "kiln serve exited before listening: {}",
                        std::fs::read_to_string(data_dir.join("kiln-stderr.log"))
                            .unwrap_or_default()
                    )
                })
                .unwrap();
            if let Some(rest) = line.strip_prefix("kiln listening on ") {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep draining stdout so the process never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let token = std::fs::read_to_string(data_dir.join("admin-token"))
            .unwrap()
            .trim()
            .to_string();
        KilnProcess {
            child,
            data_dir: data_dir.to_path_buf(),
            api: Api::new(&addr, &token),
        }
    }

    /// The server's address, `http://host:port` (`https://` when serving TLS).
    pub fn server_url(&self) -> &str {
        &self.api.base
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to clean up or flush.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for KilnProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Api {
    pub fn new(base: &str, token: &str) -> Self {
        Api {
            base: base.to_string(),
            token: token.to_string(),
            // Below the server's keep-alive (its read timeout, 30 s).
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(20))
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .build_http(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `PUT /v1/secrets` with `body`, as this client's token.
    pub async fn save_secrets(&self, body: &Value) -> Answer {
        self.request_as(
            Some(&self.token),
            Method::PUT,
            "/v1/secrets",
            Some(serde_json::to_vec(body).unwrap()),
        )
        .await
    }

    /// A request with an explicit token (or none); a body is sent as JSON.
    pub async fn request_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Answer {
        let mut headers = Vec::new();
        if let Some(token) = token {
            headers.push(("authorization", format!("Bearer {token}")));
        }
        if body.is_some() {
            headers.push(("content-type", "application/json".to_string()));
        }
        self.request_with(method, path, &headers, body.unwrap_or_default())
            .await
    }

    /// A request with exactly these headers (no token unless given).
    pub async fn request_with(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Answer {
        let mut builder = Request::builder().method(method).uri(self.url(path));
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        let request = builder.body(Full::new(Bytes::from(body))).unwrap();
        let response = self
            .client
            .request(request)
            .await
            .expect("the server answers");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.request_as(Some(&self.token.clone()), Method::GET, path, None)
            .await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Answer {
        self.request_as(
            Some(&self.token.clone()),
            Method::POST,
            path,
            Some(serde_json::to_vec(body).unwrap()),
        )
        .await
    }

    /// POST `body` to `path`; panics unless the answer is 400 with a
    /// message that names `needle` (the field at fault, or its fix).
    pub async fn assert_refused(&self, path: &str, body: &Value, needle: &str) {
        let answer = self.post_json(path, body).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path} {body}");
        assert!(
            answer.error_message().contains(needle),
            "{path} {body}: {} does not name {needle:?}",
            answer.error_message()
        );
    }

    /// Panics unless `/metrics` holds each of `lines` (e.g.
    /// `kiln_builds_created_total 1`).
    pub async fn assert_metrics(&self, lines: &[&str]) {
        let metrics = String::from_utf8(self.get("/metrics").await.body.to_vec()).unwrap();
        for line in lines {
            assert!(metrics.contains(line), "{line} in\n{metrics}");
        }
    }

    /// Ask for a build; panics unless it is accepted. Returns the build id.
    pub async fn create_build(&self, body: &Value) -> String {
        let answer = self.post_json("/v1/builds", body).await;
        assert_eq!(
            answer.status,
            StatusCode::ACCEPTED,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let json = answer.json();
        assert_eq!(json["status"], "BUILD_STATUS_PENDING");
        json["buildId"].as_str().unwrap().to_string()
    }

    pub async fn build(&self, build_id: &str) -> Value {
        let answer = self.get(&format!("/v1/builds/{build_id}")).await;
        assert_eq!(answer.status, StatusCode::OK);
        answer.json()
    }

    /// Poll until the build has finished; panics after `limit`.
    pub async fn wait_finished(&self, build_id: &str, limit: Duration) -> Value {
        let started = Instant::now();
        loop {
            let record = self.build(build_id).await;
            let status = record["status"].as_str().unwrap().to_string();
            if matches!(
                status.as_str(),
                "BUILD_STATUS_SUCCEEDED" | "BUILD_STATUS_FAILED" | "BUILD_STATUS_CANCELLED"
            ) {
                return record;
            }
            assert!(
                started.elapsed() < limit,
                "build {build_id} still {status} after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Poll until the build has finished and assert it succeeded (the
    /// record and the log in the message when it did not).
    pub async fn wait_succeeded(&self, build_id: &str, limit: Duration) -> Value {
        let record = self.wait_finished(build_id, limit).await;
        assert_eq!(
            record["status"],
            "BUILD_STATUS_SUCCEEDED",
            "{record:#}\n{}",
            self.log_text(build_id).await
        );
        record
    }

    /// The whole stored log of a build, as NDJSON records.
    pub async fn log(&self, build_id: &str) -> Vec<Value> {
        let answer = self
            .get(&format!("/v1/builds/{build_id}/logs?fromStart=true"))
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        parse_ndjson(&answer.body)
    }

    /// The log's text, one line per record.
    /// Asserts that `value`, an answer of this server, is described field
    /// by field by the schema `name` of the OpenAPI document the same
    /// server serves (objects closed: an undocumented field fails).
    pub async fn assert_documented(&self, name: &str, value: &Value) {
        let document = self
            .request_as(None, hyper::Method::GET, "/v1/openapi.json", None)
            .await
            .json();
        let schema = kiln_api::openapi::component_schema(&document, name, true)
            .unwrap_or_else(|| panic!("the served document has no schema {name}"));
        let validator = jsonschema::validator_for(&schema).expect("the document's schemas compile");
        let errors: Vec<String> = validator
            .iter_errors(value)
            .map(|error| format!("{error} at {}", error.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "the served document's {name} does not describe the answer:\n{}\nanswer: {value:#}",
            errors.join("\n")
        );
    }

    pub async fn log_text(&self, build_id: &str) -> String {
        self.log(build_id)
            .await
            .iter()
            .map(|l| l["line"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub fn parse_ndjson(body: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(body)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad NDJSON line {l:?}: {e}")))
        .collect()
}

/// A zip of the given (path, contents, unix mode) entries.
pub fn zip_entries(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut cursor = std::io::Cursor::new(Vec::new());
    {
        let mut writer = zip::ZipWriter::new(&mut cursor);
        for (name, contents, mode) in entries {
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .unix_permissions(*mode);
            writer.start_file(*name, options).unwrap();
            writer.write_all(contents).unwrap();
        }
        writer.finish().unwrap();
    }
    cursor.into_inner()
}

/// A zip of every file under `dir`, keeping executable bits.
pub fn zip_dir(dir: &Path) -> Vec<u8> {
    use std::os::unix::fs::PermissionsExt;
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                files.push((name, std::fs::read(&path).unwrap(), mode));
            }
        }
    }
    let borrowed: Vec<(&str, &[u8], u32)> = files
        .iter()
        .map(|(n, c, m)| (n.as_str(), c.as_slice(), *m))
        .collect();
    zip_entries(&borrowed)
}

pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A CreateBuild body for `examples/hello`.
pub fn hello_request(name: &str) -> Value {
    let zip = zip_dir(&workspace().join("examples/hello"));
    json!({ "name": name, "zippedCode": base64(&zip) })
}

/// What a server wrote on a raw connection, read until its answer's head
/// and the first byte of a JSON body have arrived (the connection stays
/// open, as keep-alive leaves it). Fails if the server closes it first.
pub async fn read_json_answer_start(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("\r\n\r\n{") {
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// A CreateBuild body for a context holding just this Dockerfile.
pub fn dockerfile_request(name: &str, dockerfile: &str) -> Value {
    let zip = zip_entries(&[("Dockerfile", dockerfile.as_bytes(), 0o644)]);
    json!({ "name": name, "zippedCode": base64(&zip) })
}

/// The registry's answer for a manifest: (HTTP status, Docker-Content-Digest).
pub async fn registry_manifest(repository: &str, reference: &str) -> (StatusCode, Option<String>) {
    registry_manifest_at(REGISTRY, None, repository, reference).await
}

/// [`registry_manifest`] from the registry at `addr`, with basic auth
/// `(user, password)` when given.
pub async fn registry_manifest_at(
    addr: &str,
    basic_auth: Option<(&str, &str)>,
    repository: &str,
    reference: &str,
) -> (StatusCode, Option<String>) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::builder()
        .method(Method::HEAD)
        .uri(format!("http://{addr}/v2/{repository}/manifests/{reference}"))
        .header(
            "accept",
            "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
        );
    if let Some((user, password)) = basic_auth {
        request = request.header(
            "authorization",
            format!("Basic {}", base64(format!("{user}:{password}").as_bytes())),
        );
    }
    let request = request.body(Full::new(Bytes::new())).unwrap();
    let response = client.request(request).await.expect("the registry answers");
    let digest = response
        .headers()
        .get("docker-content-digest")
        .map(|v| v.to_str().unwrap().to_string());
    (response.status(), digest)
}

/// The Docker Engine the tests share.
pub fn docker() -> bollard::Docker {
    bollard::Docker::connect_with_local_defaults().expect("a Docker Engine socket")
}

/// Containers, running or not, whose command mentions `marker` (tests run
/// side by side, so counting all containers would race).
pub async fn containers_with(marker: &str) -> usize {
    docker()
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await
        .unwrap()
        .iter()
        .filter(|c| c.command.as_deref().unwrap_or_default().contains(marker))
        .count()
}

/// Run `image` to completion and return what it printed on stdout.
pub async fn run_image(image: &str) -> String {
    use bollard::query_parameters::{LogsOptions, WaitContainerOptions};
    use futures_util::StreamExt;
    let docker = docker();
    let name = start_container(image).await;
    let mut wait = docker.wait_container(&name, None::<WaitContainerOptions>);
    while wait.next().await.is_some() {}
    let mut out = String::new();
    let mut logs = docker.logs(
        &name,
        Some(LogsOptions {
            stdout: true,
            ..Default::default()
        }),
    );
    while let Some(Ok(chunk)) = logs.next().await {
        out.push_str(&chunk.to_string());
    }
    remove_container(&name).await;
    out
}

/// Create and start a container of `image` (its own command); its name.
/// Pull `image` from the local registry into the engine: builds leave no
/// tags in the engine, so what a test runs or inspects is what the registry
/// serves (the proof that the push landed).
pub async fn pull(image: &str) {
    use bollard::query_parameters::CreateImageOptions;
    use futures_util::StreamExt;
    let mut progress = docker().create_image(
        Some(CreateImageOptions {
            from_image: Some(image.to_string()),
            ..Default::default()
        }),
        None,
        None,
    );
    while let Some(step) = progress.next().await {
        step.unwrap_or_else(|e| panic!("cannot pull {image} from the registry: {e}"));
    }
}

pub async fn start_container(image: &str) -> String {
    use bollard::models::ContainerCreateBody;
    use bollard::query_parameters::CreateContainerOptions;
    if image.starts_with(REGISTRY) {
        pull(image).await;
    }
    let docker = docker();
    let name = unique_name("kiln-test-run");
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.clone()),
                platform: String::new(),
            }),
            ContainerCreateBody {
                image: Some(image.to_string()),
                ..Default::default()
            },
        )
        .await
        .expect("create a container");
    docker
        .start_container(
            &name,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .expect("start it");
    name
}

/// Remove a container, running or not.
pub async fn remove_container(name: &str) {
    docker()
        .remove_container(
            name,
            Some(bollard::query_parameters::RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await
        .ok();
}

/// Start `image`, answer what `GET /` on its `port` returns (raw HTTP),
/// remove the container.
pub async fn serve_and_get(image: &str, port: u16) -> String {
    let name = start_container(image).await;
    let ip = docker()
        .inspect_container(
            &name,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .unwrap()
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|networks| networks.into_values().find_map(|n| n.ip_address))
        .filter(|ip| !ip.is_empty())
        .expect("the container has an address");
    let mut body = String::new();
    for _ in 0..100 {
        if let Ok(mut stream) = tokio::net::TcpStream::connect((ip.as_str(), port)).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            stream
                .write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
                .await
                .unwrap();
            stream.read_to_string(&mut body).await.ok();
            if !body.is_empty() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    remove_container(&name).await;
    body
}

/// A registry of our own for one test (Debian's `docker-registry`), on a
/// free loopback port: with basic auth, read-only, or open.
pub struct TestRegistry {
    child: std::process::Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

/// How a [`TestRegistry`] behaves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RegistryMode {
    /// htpasswd auth, user `kiln`, password `secret`.
    BasicAuth,
    /// Refuses every write (maintenance read-only mode).
    ReadOnly,
    /// Takes every push, like the main test registry.
    Open,
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl TestRegistry {
    pub async fn start(mode: RegistryMode) -> Self {
        Self::start_on(mode, free_port()).await
    }

    /// A registry on `port` (e.g. one a server was told about before the
    /// registry came up).
    pub async fn start_on(mode: RegistryMode, port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n",
            dir.path().join("data").display()
        );
        match mode {
            RegistryMode::BasicAuth => {
                let htpasswd = std::process::Command::new("htpasswd")
                    .args(["-Bbn", "kiln", "secret"])
                    .output()
                    .expect("htpasswd (apache2-utils; scripts/setup.sh installs it)");
                std::fs::write(dir.path().join("htpasswd"), htpasswd.stdout).unwrap();
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                    dir.path().join("htpasswd").display()
                ));
            }
            RegistryMode::ReadOnly => {
                config.push_str("  maintenance:\n    readonly:\n      enabled: true\n");
            }
            RegistryMode::Open => {}
        }
        config.push_str(&format!("http:\n  addr: {addr}\n"));
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = std::process::Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let started = std::time::Instant::now();
        while tokio::net::TcpStream::connect(&addr).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the test registry did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        TestRegistry {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One entry of a test tar: a file, a symlink, or a character device.
pub enum TarEntry<'a> {
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
    CharDevice(&'a str),
}

/// A tar archive of the entries.
pub fn tar_entries(entries: &[TarEntry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        match entry {
            TarEntry::File(name, data, mode) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(data.len() as u64);
                header.set_mode(*mode);
                builder.append_data(&mut header, name, *data).unwrap();
            }
            TarEntry::Symlink(name, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                header.set_mode(0o777);
                builder.append_link(&mut header, name, target).unwrap();
            }
            TarEntry::CharDevice(name) => {
                header.set_entry_type(tar::EntryType::Char);
                header.set_size(0);
                header.set_mode(0o644);
                builder.append_data(&mut header, name, &b""[..]).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

/// gzip the bytes.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

impl Api {
    /// POST `path` with an `Idempotency-Key` (a JSON content type, which
    /// uploads ignore).
    pub async fn post_keyed(&self, path: &str, key: &str, body: Vec<u8>) -> Answer {
        let headers = [
            ("authorization", format!("Bearer {}", self.token)),
            ("content-type", "application/json".to_string()),
            ("idempotency-key", key.to_string()),
        ];
        self.request_with(Method::POST, path, &headers, body).await
    }

    /// POST /v1/contexts with these bytes.
    pub async fn upload(&self, bytes: Vec<u8>) -> Answer {
        self.request_as(Some(&self.token), Method::POST, "/v1/contexts", Some(bytes))
            .await
    }
}

/// A plugin directory for one test: copies of the named fixture plugins,
/// plus extra plugins given as (directory name, plugin.toml, component bytes).
pub fn plugin_dir_with(fixtures: &[&str], extra: &[(&str, &str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in fixtures {
        let from = fixture_plugin_dir().join(name);
        let to = dir.path().join(name);
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(&from).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
    for (name, manifest, component) in extra {
        let to = dir.path().join(name);
        std::fs::create_dir_all(&to).unwrap();
        std::fs::write(to.join("plugin.toml"), manifest).unwrap();
        std::fs::write(to.join("component.wasm"), component).unwrap();
    }
    dir
}

/// A fixture plugin's component bytes.
pub fn fixture_component(name: &str) -> Vec<u8> {
    std::fs::read(fixture_plugin_dir().join(name).join(format!("{name}.wasm"))).unwrap()
}

/// `cargo ARGS` in a plugin crate's own directory, as its author would,
/// free of the calling test's cargo settings.
fn plugin_cargo(dir: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(dir).args(args);
    for (key, _) in std::env::vars() {
        if (key.starts_with("CARGO_") && key != "CARGO_HOME") || key == "RUSTFLAGS" {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// `cargo test` in a scaffolded plugin crate: its own test, with the plugin
/// kit. Host artifacts (the runtime, wasmtime) go to one shared directory
/// under the workspace's `target/`, so the scaffolds of one run, and later
/// runs, compile them once.
pub fn test_plugin_crate(dir: &Path) {
    let out = plugin_cargo(dir, &["test", "--quiet"])
        .env(
            "CARGO_TARGET_DIR",
            workspace().join("target/scaffold-tests"),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo test fails in {}: {}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `cargo build --release --target wasm32-wasip2` in a plugin crate's own
/// directory, as its author would, free of the calling test's cargo settings.
pub fn build_plugin_crate(dir: &Path) {
    let out = plugin_cargo(
        dir,
        &["build", "--release", "--target", "wasm32-wasip2", "--quiet"],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{} does not build: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A small tmpfs mounted for one test or bench (needs root), unmounted
/// when dropped, also on panic: a disk that really fills up.
pub struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    pub fn mount(megabytes: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(mounted.success(), "mounting a small tmpfs needs root");
        SmallDisk(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: an in-process server may still hold files open there
        // (a plain umount was "busy" and left the mount behind).
        let _ = std::process::Command::new("umount")
            .arg("--lazy")
            .arg(self.0.path())
            .status();
    }
}

/// A zip of a Dockerfile and `count` one-byte files: little data, but on
/// a filesystem each file takes a block, so a small disk fills before the
/// bytes add up to any limit.
pub fn many_small_files_zip(dockerfile: &str, count: usize) -> Vec<u8> {
    let names: Vec<String> = (0..count).map(|i| format!("d{}/f{i}", i / 1000)).collect();
    let mut entries: Vec<(&str, &[u8], u32)> = vec![("Dockerfile", dockerfile.as_bytes(), 0o644)];
    entries.extend(names.iter().map(|name| (name.as_str(), &b"x"[..], 0o644)));
    zip_entries(&entries)
}

/// Free MiB on the filesystem holding `dir`.
pub fn free_mib(dir: &Path) -> u64 {
    kiln_server::store::free_bytes(dir).unwrap() >> 20
}

/// (build records, `Idempotency-Key` answers) the store in `data_dir`
/// holds; its server must have stopped (the store is opened here).
pub fn stored_builds_and_answers(data_dir: &Path) -> (usize, u64) {
    let store = kiln_server::store::Store::open(&data_dir.join("db")).unwrap();
    let far_future = chrono::Utc::now() + chrono::TimeDelta::days(2);
    (
        store.all_builds().count(),
        store.prune_idempotent_answers(far_future, true).unwrap(),
    )
}

/// A gRPC client that is not Kiln's, pinned: Python grpcio, the stub
/// generator (grpcio-tools), and the standard health and reflection
/// clients.
pub const GRPC_PYTHON_PACKAGES: &[&str] = &[
    "grpcio==1.85.3",
    "grpcio-tools==1.85.1",
    "grpcio-health-checking==1.85.1",
    "grpcio-reflection==1.85.1",
];

/// The python of a virtual environment under `target/python-<name>` with
/// `packages` (pinned PyPI requirements) installed; made once, and again
/// when the list changes. Clients that are not Kiln's (grpcio) test Kiln
/// from here.
pub fn python_venv(name: &str, packages: &[&str]) -> PathBuf {
    let dir = workspace().join("target").join(format!("python-{name}"));
    let stamp = dir.join("kiln-requirements.txt");
    let wanted = packages.join("\n");
    let python = dir.join("bin/python");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return python;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let run = |command: &mut std::process::Command| {
        let output = command
            .output()
            .expect("run python3 (Debian's python3-venv)");
        assert!(
            output.status.success(),
            "{command:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(std::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(&dir));
    run(std::process::Command::new(dir.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(packages));
    std::fs::write(&stamp, wanted).unwrap();
    python
}

impl Api {
    /// GET an NDJSON stream (a followed log) and hand `each` every value
    /// the moment its line arrives; returns when the server ends the stream.
    pub async fn follow_ndjson(&self, path: &str, mut each: impl FnMut(Value)) {
        let request = Request::builder()
            .uri(self.url(path))
            .header("authorization", format!("Bearer {}", self.token))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let mut body = self.client.request(request).await.unwrap().into_body();
        let mut pending = String::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.unwrap().into_data() else {
                continue;
            };
            pending.push_str(&String::from_utf8_lossy(&data));
            while let Some(end) = pending.find('\n') {
                let line: String = pending.drain(..=end).collect();
                each(serde_json::from_str(line.trim()).unwrap());
            }
        }
    }
}

/// The `p` quantile (0..=1) of ascending `sorted` values (NaN for none):
/// what the benches print as p50 and p99.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// `values` in ascending order.
pub fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values
}

/// Fills a fresh data directory with `count` finished builds (one in ten
/// failed) of 50 names, `app-0`…`app-49`, of the organization `default`,
/// straight into the store (the benchmarks' 100,000-record servers).
pub fn fill_finished_builds(dir: &std::path::Path, count: usize) -> Duration {
    let started = Instant::now();
    let store = kiln_server::store::Store::open(&dir.join("db")).unwrap();
    for i in 0..count {
        let record = kiln_server::store::BuildRecord {
            build_id: format!("bench-{i:06}"),
            org: "default".into(),
            number: 0,
            name: format!("app-{}", i % 50),
            status: kiln_server::store::BuildStatus::Pending,
            source: kiln_server::store::SourceSummary {
                kind: "inline-zip".into(),
                size_bytes: Some(1000),
                format: Some("zip".into()),
                context_id: None,
                url: None,
                git: None,
            },
            request: kiln_server::store::BuildSpec {
                dockerfile: "Dockerfile".into(),
                tags: vec!["latest".into()],
                builder: "buildkit".into(),
                ..Default::default()
            },
            image_refs: vec![format!("127.0.0.1:5000/default/app-{}:latest", i % 50)],
            digest: Some(format!("sha256:{:064x}", i)),
            platform_images: Vec::new(),
            metrics: None,
            failure: None,
            wizard: None,
            create_time: chrono::Utc::now(),
            start_time: None,
            finish_time: None,
            seq: 0,
            log_removed_time: None,
            project_id: None,
            trigger: None,
            registry: None,
            profile_used: None,
            attempts: Vec::new(),
            engine: None,
            cache_from: Vec::new(),
            peak_memory_bytes: None,
            attachments: Vec::new(),
        };
        store.create_build(record).unwrap();
        store.pop_queued_fair(None, |_| false).unwrap();
        let status = if i % 10 == 0 {
            kiln_server::store::BuildStatus::Failed
        } else {
            kiln_server::store::BuildStatus::Succeeded
        };
        store
            .update_build(&format!("bench-{i:06}"), |r| r.status = status)
            .unwrap();
    }
    store.flush_blocking().unwrap();
    started.elapsed()
}

/// ListBuilds' latency for pages of 50 (`query` added to the query
/// string), over 200 requests: (p50, p99) in milliseconds.
pub async fn list_page_latencies(api: &Api, query: &str) -> (f64, f64) {
    let mut times = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        let answer = api.get(&format!("/v1/builds?pageSize=50{query}")).await;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json()["builds"].as_array().unwrap().len(), 50);
    }
    let times = sorted(times);
    (percentile(&times, 0.5), percentile(&times, 0.99))
}
