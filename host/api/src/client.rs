//! A typed async client for the Kiln API (what the `kiln` CLI uses). Errors
//! say what to do: start the server, check the token, or the server's own
//! message for a 4xx.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kiln_api::ClientError> {
//! use kiln_api::{ApiClient, CreateBuildRequest};
//! let client = ApiClient::new("http://127.0.0.1:7878", Some("TOKEN"))?;
//! let accepted = client
//!     .create_build(&CreateBuildRequest {
//!         name: "hello".into(),
//!         context_id: Some("CONTEXT_ID".into()),
//!         ..Default::default()
//!     })
//!     .await?;
//! let build = client.get_build(&accepted.build_id).await?;
//! println!("{} is {}", build.build_id, build.status);
//! # Ok(()) }
//! ```

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::admin::{
    CreateOrgRequest, GcReport, GcRequest, MaskedSecrets, NewToken, Org, OrgList, PluginList,
    RegistryTarget, SaveSecretsRequest, SigningSetting,
};
use crate::builds::{
    Build, BuildAccepted, BuildList, BuildStatus, CreateBuildRequest, LogLine, UploadedContext,
};
use crate::error::ErrorBody;

/// How long a pooled connection may sit idle: under a Kiln server's
/// keep-alive (`--request-read-timeout-secs`, 30 s by default).
const POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(20);

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no token: pass --token or set KILN_TOKEN (the server writes the admin token to <data-dir>/admin-token)")]
    NoToken,
    #[error(
        "`{0}` is not a valid server URL; use https://host:port (or http:// for this machine)"
    )]
    BadServer(String),
    #[error("refusing to send the token over plain http to {0}, which is not this machine: anyone on the way could read it; use https:// (kiln serve --tls-cert/--tls-key), or --insecure if the network is trusted")]
    InsecureServer(String),
    #[error("cannot use the CA certificates {what}: {message}")]
    BadCaCert { what: String, message: String },
    #[error("cannot reach the Kiln server at {server}: {reason}; {hint}")]
    Unreachable {
        server: String,
        /// The connection error and its causes.
        reason: String,
        hint: &'static str,
    },
    #[error("the server rejected the token (401): {0}")]
    Unauthorized(String),
    #[error("the server refused ({status}): {message}")]
    Refused { status: StatusCode, message: String },
    #[error("the server's answer is not JSON: {0}")]
    BadAnswer(String),
}

type RequestBody = BoxBody<Bytes, std::io::Error>;

/// A fresh `Idempotency-Key`, unique per process and call: the standard
/// library's hasher keys are random per thread and change on every use.
fn idempotency_key() -> String {
    use std::hash::{BuildHasher, Hasher};
    let random = || {
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    };
    format!("kiln-cli-{:016x}{:016x}", random(), random())
}

/// TLS settings: the system's root certificates, plus the options' own.
fn tls_config(options: &ClientOptions) -> Result<rustls::ClientConfig, ClientError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are skipped, as other TLS clients do.
    let (_, _) = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(pem) = &options.ca_certs_pem {
        let bad = |message: String| ClientError::BadCaCert {
            what: "given (--ca-cert / KILN_CA_CERT)".into(),
            message,
        };
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no PEM certificate in it".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::BadCaCert {
            what: "of this build".into(),
            message: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A connection to one Kiln server with one token.
pub struct ApiClient {
    server: String,
    token: String,
    http: Client<HttpsConnector<HttpConnector>, RequestBody>,
}

/// How a client reaches its server, beyond the URL and token.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// PEM certificates to trust besides the system's roots (a private
    /// CA, or a self-signed server certificate): `--ca-cert`, `KILN_CA_CERT`.
    pub ca_certs_pem: Option<Vec<u8>>,
    /// Send the token over plain `http://` to hosts other than this
    /// machine too (`--insecure`).
    pub insecure: bool,
}

impl ApiClient {
    /// A client with the system's roots, speaking plain http only to this
    /// machine.
    pub fn new(server: &str, token: Option<&str>) -> Result<Self, ClientError> {
        Self::with_options(server, token, &ClientOptions::default())
    }

    pub fn with_options(
        server: &str,
        token: Option<&str>,
        options: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or(ClientError::NoToken)?;
        let server = server.trim_end_matches('/').to_string();
        let uri: hyper::Uri = server
            .parse()
            .map_err(|_| ClientError::BadServer(server.clone()))?;
        let host = uri.host().unwrap_or_default();
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if options.insecure || crate::validate::is_loopback_host(host) => {}
            Some("http") => return Err(ClientError::InsecureServer(server)),
            _ => return Err(ClientError::BadServer(server)),
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(options)?)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(ApiClient {
            server,
            token: token.trim().to_string(),
            // Idle connections are dropped before a Kiln server (30 s by
            // default, `--request-read-timeout-secs`) closes them, so a request
            // is not sent down a connection the server is closing.
            http: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(POOL_IDLE)
                .pool_timer(TokioTimer::new())
                .build(connector),
        })
    }

    /// The server's base URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    fn request(&self, method: Method, path: &str) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.server))
            .header("authorization", format!("Bearer {}", self.token))
    }

    async fn send(
        &self,
        request: hyper::http::request::Builder,
        body: RequestBody,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let request = request
            .body(body)
            .map_err(|_| ClientError::BadServer(self.server.clone()))?;
        self.http
            .request(request)
            .await
            .map_err(|error| {
                let mut reason = error.to_string();
                let mut cause = std::error::Error::source(&error);
                while let Some(next) = cause {
                    reason = format!("{reason}: {next}");
                    cause = next.source();
                }
                let hint = if reason.contains("certificate") {
                    "if the server's certificate comes from a private CA (or is self-signed), pass it with --ca-cert / KILN_CA_CERT"
                } else {
                    "is `kiln serve` running there? (--server / KILN_SERVER)"
                };
                ClientError::Unreachable {
                    server: self.server.clone(),
                    reason,
                    hint,
                }
            })
    }

    /// Send a request; JSON in, JSON out (`Value::Null` for an empty answer).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        self.call_typed(method, path, body).await
    }

    /// Send a request with a typed body and read a typed answer.
    pub async fn call_typed<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ClientError> {
        let mut request = self.request(method, path);
        let bytes = match body {
            Some(value) => {
                request = request.header("content-type", "application/json");
                Bytes::from(serde_json::to_vec(value).expect("JSON serializes"))
            }
            None => Bytes::new(),
        };
        let body = Full::new(bytes).map_err(|never| match never {}).boxed();
        let response = self.send(request, body).await?;
        Self::json_answer(response).await
    }

    /// `POST /v1/builds`, with an `Idempotency-Key` of its own: a request
    /// whose connection broke is sent again (after 1, 2 and 4 s) and the
    /// server answers the retry with the first answer, so a retry never
    /// makes a second build.
    pub async fn create_build(
        &self,
        request: &CreateBuildRequest,
    ) -> Result<BuildAccepted, ClientError> {
        let key = idempotency_key();
        let body = Bytes::from(serde_json::to_vec(request).expect("JSON serializes"));
        let mut delays = [1, 2, 4].into_iter();
        loop {
            let attempt = self
                .request(Method::POST, "/v1/builds")
                .header("content-type", "application/json")
                .header("idempotency-key", &key);
            let sent = Full::new(body.clone())
                .map_err(|never| match never {})
                .boxed();
            match self.send(attempt, sent).await {
                Ok(response) => return Self::json_answer(response).await,
                Err(ClientError::Unreachable { .. }) if let Some(secs) = delays.next() => {
                    tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `GET /v1/builds/{id}`.
    pub async fn get_build(&self, build_id: &str) -> Result<Build, ClientError> {
        self.call_typed(
            Method::GET,
            &format!("/v1/builds/{}", encode(build_id)),
            None::<&()>,
        )
        .await
    }

    /// `GET /v1/builds`: one page, newest first.
    pub async fn list_builds(&self, query: &ListBuilds) -> Result<BuildList, ClientError> {
        let mut params = form_query();
        if let Some(status) = query.status {
            params.append_pair("status", status.as_str());
        }
        for (key, value) in [
            ("name", &query.name),
            ("branch", &query.branch),
            ("projectId", &query.project_id),
            ("pageToken", &query.page_token),
        ] {
            if let Some(value) = value {
                params.append_pair(key, value);
            }
        }
        if let Some(size) = query.page_size {
            params.append_pair("pageSize", &size.to_string());
        }
        let query = params.finish();
        let path = if query.is_empty() {
            "/v1/builds".to_string()
        } else {
            format!("/v1/builds?{query}")
        };
        self.call_typed(Method::GET, &path, None::<&()>).await
    }

    /// `POST /v1/builds/{id}:cancel`: the build as it stands after the request.
    pub async fn cancel_build(&self, build_id: &str) -> Result<Build, ClientError> {
        self.call_typed(
            Method::POST,
            &format!("/v1/builds/{}:cancel", encode(build_id)),
            None::<&()>,
        )
        .await
    }

    /// `GET /v1/plugins`.
    pub async fn list_plugins(&self) -> Result<PluginList, ClientError> {
        self.call_typed(Method::GET, "/v1/plugins", None::<&()>)
            .await
    }

    /// `GET /v1/secrets`: names only, every value `***`.
    pub async fn list_secrets(&self) -> Result<MaskedSecrets, ClientError> {
        self.call_typed(Method::GET, "/v1/secrets", None::<&()>)
            .await
    }

    /// `PUT /v1/secrets`: sets (or, with `None`, removes) each named
    /// entry; answers with names only.
    pub async fn save_secrets(
        &self,
        secrets: &SaveSecretsRequest,
    ) -> Result<MaskedSecrets, ClientError> {
        self.call_typed(Method::PUT, "/v1/secrets", Some(secrets))
            .await
    }

    /// `DELETE /v1/secrets/{kind}/{name}`; `kind` is `registry`, `git` or
    /// `build`.
    pub async fn delete_secret(&self, kind: &str, name: &str) -> Result<(), ClientError> {
        self.call(
            Method::DELETE,
            &format!("/v1/secrets/{}/{}", encode(kind), encode(name)),
            None,
        )
        .await
        .map(drop)
    }

    /// `POST /v1/orgs` (admin token).
    pub async fn create_org(&self, name: &str) -> Result<Org, ClientError> {
        let body = CreateOrgRequest { name: name.into() };
        self.call_typed(Method::POST, "/v1/orgs", Some(&body)).await
    }

    /// `POST /v1/gc` (admin token): collect garbage now, or say what would go.
    pub async fn collect_garbage(&self, dry_run: bool) -> Result<GcReport, ClientError> {
        let body = GcRequest { dry_run };
        self.call_typed(Method::POST, "/v1/gc", Some(&body)).await
    }

    /// `GET /v1/engines` (admin token).
    pub async fn list_engines(&self) -> Result<crate::EngineList, ClientError> {
        self.call_typed(Method::GET, "/v1/engines", None::<&()>)
            .await
    }

    /// `POST /v1/engines/{name}:drain` or `:resume` (admin token).
    pub async fn drain_engine(
        &self,
        name: &str,
        draining: bool,
    ) -> Result<crate::Engine, ClientError> {
        let verb = if draining { "drain" } else { "resume" };
        let path = format!("/v1/engines/{}:{verb}", encode(name));
        self.call_typed(Method::POST, &path, None::<&()>).await
    }

    /// `GET /v1/orgs` (admin token).
    pub async fn list_orgs(&self) -> Result<OrgList, ClientError> {
        self.call_typed(Method::GET, "/v1/orgs", None::<&()>).await
    }

    /// `PUT /v1/orgs/{org}/registry` (admin token): the organization's
    /// next builds push to `target`.
    pub async fn set_org_registry(
        &self,
        org: &str,
        target: &RegistryTarget,
    ) -> Result<RegistryTarget, ClientError> {
        let path = format!("/v1/orgs/{}/registry", encode(org));
        self.call_typed(Method::PUT, &path, Some(target)).await
    }

    /// `GET /v1/orgs/{org}/registry` (admin token): where its images go.
    pub async fn org_registry(&self, org: &str) -> Result<RegistryTarget, ClientError> {
        let path = format!("/v1/orgs/{}/registry", encode(org));
        self.call_typed(Method::GET, &path, None::<&()>).await
    }

    /// `DELETE /v1/orgs/{org}/registry` (admin token): back to the server's.
    pub async fn reset_org_registry(&self, org: &str) -> Result<(), ClientError> {
        let path = format!("/v1/orgs/{}/registry", encode(org));
        self.call(Method::DELETE, &path, None).await.map(drop)
    }

    /// `PUT /v1/orgs/{org}/signing` (admin token): sign and attest its
    /// images, or not.
    pub async fn set_org_signing(
        &self,
        org: &str,
        enabled: bool,
    ) -> Result<SigningSetting, ClientError> {
        let path = format!("/v1/orgs/{}/signing", encode(org));
        self.call_typed(Method::PUT, &path, Some(&SigningSetting { enabled }))
            .await
    }

    /// `GET /v1/orgs/{org}/signing` (admin token): whether its images are
    /// signed and attested.
    pub async fn org_signing(&self, org: &str) -> Result<SigningSetting, ClientError> {
        let path = format!("/v1/orgs/{}/signing", encode(org));
        self.call_typed(Method::GET, &path, None::<&()>).await
    }

    /// `GET /v1/orgs/{org}/signing-key`: the public key its images are
    /// signed with (PEM), what `kiln verify` and `cosign verify --key` check
    /// with.
    pub async fn org_signing_key(&self, org: &str) -> Result<String, ClientError> {
        let path = format!("/v1/orgs/{}/signing-key", encode(org));
        let empty = Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed();
        let response = self.send(self.request(Method::GET, &path), empty).await?;
        let pem = Self::answer(response).await?;
        String::from_utf8(pem.to_vec())
            .map_err(|_| ClientError::BadAnswer("the signing key is not PEM text".into()))
    }

    /// `POST /v1/orgs/{org}/tokens` (admin token): the token, shown once.
    pub async fn create_token(&self, org: &str) -> Result<NewToken, ClientError> {
        self.call_typed(
            Method::POST,
            &format!("/v1/orgs/{}/tokens", encode(org)),
            None::<&()>,
        )
        .await
    }

    /// `POST /v1/projects`: the project, with its webhook secret (shown once).
    pub async fn create_project(
        &self,
        request: &crate::CreateProjectRequest,
    ) -> Result<crate::Project, ClientError> {
        self.call_typed(Method::POST, "/v1/projects", Some(request))
            .await
    }

    /// `GET /v1/projects`.
    pub async fn list_projects(&self) -> Result<crate::ProjectList, ClientError> {
        self.call_typed(Method::GET, "/v1/projects", None::<&()>)
            .await
    }

    /// `GET /v1/projects/{id}`.
    pub async fn get_project(&self, project_id: &str) -> Result<crate::Project, ClientError> {
        self.call_typed(
            Method::GET,
            &format!("/v1/projects/{}", encode(project_id)),
            None::<&()>,
        )
        .await
    }

    /// `DELETE /v1/projects/{id}` (its builds stay).
    pub async fn delete_project(&self, project_id: &str) -> Result<(), ClientError> {
        self.call(
            Method::DELETE,
            &format!("/v1/projects/{}", encode(project_id)),
            None,
        )
        .await
        .map(drop)
    }

    /// `POST /v1/projects/{id}:build`: a build of `reference` (default: the
    /// project's default branch) now.
    pub async fn build_project(
        &self,
        project_id: &str,
        reference: Option<&str>,
    ) -> Result<BuildAccepted, ClientError> {
        let body = crate::ProjectBuildRequest {
            reference: reference.map(str::to_string),
        };
        self.call_typed(
            Method::POST,
            &format!("/v1/projects/{}:build", encode(project_id)),
            Some(&body),
        )
        .await
    }

    /// `POST /v1/webhooks`: the webhook, with its secret (shown once).
    pub async fn create_webhook(
        &self,
        request: &crate::CreateWebhookRequest,
    ) -> Result<crate::Webhook, ClientError> {
        self.call_typed(Method::POST, "/v1/webhooks", Some(request))
            .await
    }

    /// `GET /v1/webhooks`.
    pub async fn list_webhooks(&self) -> Result<crate::WebhookList, ClientError> {
        self.call_typed(Method::GET, "/v1/webhooks", None::<&()>)
            .await
    }

    /// `DELETE /v1/webhooks/{id}`.
    pub async fn delete_webhook(&self, webhook_id: &str) -> Result<(), ClientError> {
        self.call(
            Method::DELETE,
            &format!("/v1/webhooks/{}", encode(webhook_id)),
            None,
        )
        .await
        .map(drop)
    }

    /// `GET /v1/webhooks/{id}/deliveries`: newest first.
    pub async fn list_deliveries(
        &self,
        webhook_id: &str,
    ) -> Result<crate::DeliveryList, ClientError> {
        self.call_typed(
            Method::GET,
            &format!("/v1/webhooks/{}/deliveries", encode(webhook_id)),
            None::<&()>,
        )
        .await
    }

    /// `POST /v1/webhooks/{id}/deliveries/{deliveryId}:redeliver`.
    pub async fn redeliver(
        &self,
        webhook_id: &str,
        delivery_id: &str,
    ) -> Result<crate::Delivery, ClientError> {
        self.call_typed(
            Method::POST,
            &format!(
                "/v1/webhooks/{}/deliveries/{}:redeliver",
                encode(webhook_id),
                encode(delivery_id)
            ),
            None::<&()>,
        )
        .await
    }

    /// `POST /v1/contexts` with a file as the body, streamed.
    pub async fn upload_context(
        &self,
        file: &std::path::Path,
        progress: impl Fn(u64) + Send + Sync + 'static,
    ) -> Result<UploadedContext, ClientError> {
        let answer = self.upload_file("/v1/contexts", file, progress).await?;
        serde_json::from_value(answer).map_err(|e| ClientError::BadAnswer(e.to_string()))
    }

    /// `GET /v1/builds/{id}/logs` as NDJSON: each line to `each`, until the
    /// server ends the stream (with `follow`, when the build finishes).
    pub async fn stream_log(
        &self,
        build_id: &str,
        from_start: bool,
        follow: bool,
        mut each: impl FnMut(LogLine),
    ) -> Result<(), ClientError> {
        let path = format!(
            "/v1/builds/{}/logs?fromStart={from_start}&follow={follow}&format=ndjson",
            encode(build_id)
        );
        let mut bad = None;
        self.stream_lines(&path, |line| {
            if line.is_empty() || bad.is_some() {
                return;
            }
            match serde_json::from_str::<LogLine>(line) {
                Ok(line) => each(line),
                Err(e) => bad = Some(format!("a log line is not JSON ({e}): {line}")),
            }
        })
        .await?;
        bad.map_or(Ok(()), |b| Err(ClientError::BadAnswer(b)))
    }

    /// Upload a file as the body of `POST path`, streamed, reporting bytes sent.
    pub async fn upload_file(
        &self,
        path: &str,
        file: &std::path::Path,
        progress: impl Fn(u64) + Send + Sync + 'static,
    ) -> Result<Value, ClientError> {
        let handle = tokio::fs::File::open(file)
            .await
            .map_err(|e| ClientError::BadAnswer(format!("cannot read {}: {e}", file.display())))?;
        let length = handle.metadata().await.map(|m| m.len()).unwrap_or(0);
        let stream =
            tokio_util::io::ReaderStream::with_capacity(handle, 256 * 1024).map(move |chunk| {
                chunk.map(|bytes| {
                    progress(bytes.len() as u64);
                    Frame::data(bytes)
                })
            });
        let request = self
            .request(Method::POST, path)
            .header("content-type", "application/octet-stream")
            .header("content-length", length);
        let response = self
            .send(request, BoxBody::new(StreamBody::new(stream)))
            .await?;
        Self::json_answer(response).await
    }

    /// GET `path` and hand each line of the (streamed) answer to `each`,
    /// until the server ends the stream.
    pub async fn stream_lines(
        &self,
        path: &str,
        mut each: impl FnMut(&str),
    ) -> Result<(), ClientError> {
        let body = Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed();
        let response = self.send(self.request(Method::GET, path), body).await?;
        if !response.status().is_success() {
            return Self::json_answer::<Value>(response).await.map(|_| ());
        }
        let mut body = response.into_body();
        let mut pending = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| ClientError::BadAnswer(format!("the stream broke off: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                each(String::from_utf8_lossy(&line).trim_end());
            }
        }
        if !pending.is_empty() {
            each(String::from_utf8_lossy(&pending).trim_end());
        }
        Ok(())
    }

    async fn json_answer<T: DeserializeOwned>(
        response: hyper::Response<hyper::body::Incoming>,
    ) -> Result<T, ClientError> {
        let body = Self::answer(response).await?;
        // An empty answer (204) reads as JSON `null`: `()` or `Value::Null`.
        let body: &[u8] = if body.is_empty() { b"null" } else { &body };
        serde_json::from_slice(body)
            .map_err(|e| ClientError::BadAnswer(format!("{e}: {}", String::from_utf8_lossy(body))))
    }

    /// A successful answer's body, or the server's error message.
    async fn answer(
        response: hyper::Response<hyper::body::Incoming>,
    ) -> Result<Bytes, ClientError> {
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            return Ok(body);
        }
        let message = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| {
                let text = String::from_utf8_lossy(&body).trim().to_string();
                if text.is_empty() {
                    "(no message)".to_string()
                } else {
                    text
                }
            });
        Err(if status == StatusCode::UNAUTHORIZED {
            ClientError::Unauthorized(message)
        } else {
            ClientError::Refused { status, message }
        })
    }
}

/// The query of `GET /v1/builds`; `Default` lists the newest 50.
#[derive(Debug, Clone, Default)]
pub struct ListBuilds {
    pub status: Option<BuildStatus>,
    pub name: Option<String>,
    pub branch: Option<String>,
    /// Only builds of this project.
    pub project_id: Option<String>,
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

fn form_query() -> form_urlencoded::Serializer<'static, String> {
    form_urlencoded::Serializer::new(String::new())
}

/// A path segment, percent-encoded (a build id is a UUID, but the client
/// must not build a path from whatever it is handed).
fn encode(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}
