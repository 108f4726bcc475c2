//! Real git repositories served over loopback: `git daemon` for `git://`,
//! and `git http-backend` behind a small HTTP server with basic auth for
//! smart HTTP. Repositories are made with the `git` command line (the host
//! under test uses gix; the tests use git itself to prepare and to check).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};

/// Run git in `dir` with a fixed identity and no user or system config.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args([
            "-c",
            "user.name=Kiln Test",
            "-c",
            "user.email=test@kiln.invalid",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.file.allow=always",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::null())
        .output()
        .expect("git (scripts/setup.sh installs it)");
    assert!(
        output.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A directory of repositories that servers export.
pub struct RepoRoot {
    dir: PathBuf,
    _temporary: Option<tempfile::TempDir>,
}

impl Default for RepoRoot {
    fn default() -> Self {
        Self::new()
    }
}

impl RepoRoot {
    /// A fresh temporary directory.
    pub fn new() -> Self {
        let temporary = tempfile::tempdir().unwrap();
        RepoRoot {
            dir: temporary.path().to_path_buf(),
            _temporary: Some(temporary),
        }
    }

    /// An existing directory, kept afterwards (benchmarks reuse it).
    pub fn at(dir: &Path) -> Self {
        RepoRoot {
            dir: dir.to_path_buf(),
            _temporary: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A new repository with a working tree at `<root>/<name>` (servers
    /// find its `.git`).
    pub fn repo(&self, name: &str) -> WorkRepo {
        let path = self.dir.join(name);
        std::fs::create_dir_all(&path).unwrap();
        git(&path, &["init", "-q", "-b", "main"]);
        // Fetches by commit id (submodules, pinned builds) need this on
        // servers that speak protocol v0.
        git(&path, &["config", "uploadpack.allowAnySHA1InWant", "true"]);
        WorkRepo { path }
    }
}

/// A repository the test edits and commits to.
pub struct WorkRepo {
    pub path: PathBuf,
}

impl WorkRepo {
    pub fn write(&self, relative: &str, content: &str) -> &Self {
        let path = self.path.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        self
    }

    /// Stage everything and commit; answer the commit id.
    pub fn commit(&self, message: &str) -> String {
        git(&self.path, &["add", "-A"]);
        git(
            &self.path,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        self.head()
    }

    pub fn head(&self) -> String {
        git(&self.path, &["rev-parse", "HEAD"])
    }

    pub fn run(&self, args: &[&str]) -> String {
        git(&self.path, args)
    }
}

/// `git daemon` exporting a [`RepoRoot`] on a free loopback port.
pub struct GitDaemon {
    child: std::process::Child,
    pub port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for_port(port: u16, what: &str) {
    let started = std::time::Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what} did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl GitDaemon {
    pub async fn start(root: &RepoRoot) -> Self {
        let port = free_port();
        let base = root.path().display().to_string();
        let child = Command::new("git")
            .args([
                "daemon",
                "--reuseaddr",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={base}"),
                "--export-all",
                "--enable=upload-pack",
                &base,
            ])
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon");
        wait_for_port(port, "git daemon").await;
        GitDaemon { child, port }
    }

    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Smart HTTP through `git http-backend` (CGI). Repositories under
/// `private/` need basic auth with the given user and password; the rest
/// are public.
pub struct GitHttp {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl GitHttp {
    pub async fn start(root: &RepoRoot, user: &str, password: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let root = root.path().to_path_buf();
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    return;
                };
                let root = root.clone();
                let expected = expected.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        cgi(request, root.clone(), expected.clone(), peer)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        GitHttp { port, task }
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn cgi(
    request: Request<hyper::body::Incoming>,
    root: PathBuf,
    expected_auth: String,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_string();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let authorization = header("authorization");
    eprintln!(
        "GITHTTP {} {} auth={}",
        request.method(),
        request.uri(),
        !authorization.is_empty()
    );
    let mut user = String::new();
    if path.starts_with("/private/") {
        if authorization != expected_auth {
            return Ok(Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header("WWW-Authenticate", "Basic realm=\"kiln-test\"")
                .body(Full::new(Bytes::from_static(b"authentication required\n")))
                .unwrap());
        }
        user = "tester".into();
    }
    let method = request.method().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let content_type = header("content-type");
    let git_protocol = header("git-protocol");
    let encoding = header("content-encoding");
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", &root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", method)
        .env("PATH_INFO", &path)
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", content_type)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", encoding)
        .env("GIT_PROTOCOL", git_protocol)
        .env("REMOTE_USER", user)
        .env("REMOTE_ADDR", peer.ip().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("git http-backend");
    let mut stdin = child.stdin.take().unwrap();
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let _ = stdin.write_all(&body).await;
    });
    let output = child.wait_with_output().await.unwrap();
    let _ = writer.await;
    let out = output.stdout;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, sep)) = split else {
        return Ok(Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Full::new(Bytes::from(out)))
            .unwrap());
    };
    let mut response = Response::builder();
    let mut status = StatusCode::OK;
    for line in String::from_utf8_lossy(&out[..end]).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("200");
            status = code.parse().unwrap_or(StatusCode::OK);
        } else {
            response = response.header(name, value);
        }
    }
    Ok(response
        .status(status)
        .body(Full::new(Bytes::copy_from_slice(&out[end + sep..])))
        .unwrap())
}
