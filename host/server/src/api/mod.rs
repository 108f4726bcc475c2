//! The HTTP API, on hyper.
//!
//! * [`routes`] — dispatch by method and path, bearer auth.
//! * [`builds`] — CreateBuild, GetBuild, ListBuilds, CancelBuild.
//! * [`contexts`] — UploadBuildContext (streamed to disk, content-addressed).
//! * [`logs`] — StreamBuildLogs (NDJSON or Server-Sent Events).
//! * [`events`] — an organization's build events as Server-Sent Events.
//! * [`session`] — the dashboard's sign-in: a session cookie in place of
//!   the bearer token, with a CSRF token for what changes state.
//! * [`projects`] — projects (saved build recipes) and their push webhooks.
//! * [`webhooks`] — completion webhooks and their deliveries.
//! * [`orgs`] — organizations and their tokens (the operator's admin token only).
//! * [`secrets`] — SaveBuildSecrets: sealed at rest, read back as `***`.
//! * [`wizard`] — `wizard:detect`: the Dockerfile wizard's answer, no build.
//! * [`views`] — storage records into `kiln-api`'s wire types (the only
//!   shapes the API answers with).
//!
//! The gRPC BuildService (`crate::grpc`) calls the same functions
//! (`builds::accept`, `builds::get`, `builds::list_page`, `builds::cancel`,
//! `contexts::receive`/`keep`, `logs::open`, `secrets::save_secrets`), so
//! both transports follow one set of rules.
//!
//! Request and answer types, and the rules a well-formed request follows
//! ([`validate`]), live in `kiln-api`, shared with the CLI.
//!
//! Errors are JSON, `{"error": {"code", "status", "message"}}`, and every
//! message says what was wrong and how to fix it. Another organization's
//! resources answer 404, exactly like missing ones.

pub mod builds;
pub mod contexts;
pub mod events;
pub mod idempotency;
pub mod logs;
pub mod orgs;
pub mod projects;
pub mod routes;
pub mod secrets;
pub mod session;
pub mod views;
pub mod webhooks;
pub mod wizard;

pub use kiln_api::validate;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::config::ServerConfig;
use crate::plugins::PluginRuntime;
use crate::scheduler::Scheduler;
use crate::store::{LogHub, Store};

/// The response body every handler returns.
pub type Body = BoxBody<Bytes, Infallible>;

/// What every handler can reach.
pub struct ApiState {
    pub store: Store,
    pub hub: LogHub,
    pub scheduler: Scheduler,
    pub runtime: Arc<PluginRuntime>,
    pub config: ServerConfig,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub secrets: crate::credentials::CredentialStores,
    pub gc: Arc<crate::gc::Collector>,
    pub webhooks: crate::webhooks::Webhooks,
    /// The engines builds run on (`GET /v1/engines`).
    pub engines: Arc<crate::engine::pool::EnginePool>,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// For a 405: the methods the path accepts (the `Allow` header).
    pub allow: Option<String>,
    /// For a 429: when to try again, in seconds (the `Retry-After` header).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            allow: None,
            retry_after: None,
        }
    }
    /// A 429's `Retry-After` header.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
    /// A 405's `Allow` header: the methods the path accepts.
    pub fn with_allow(mut self, methods: impl Into<String>) -> Self {
        self.allow = Some(methods.into());
        self
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }
    /// A failed write or read: a full disk is the server's storage
    /// (507), anything else an internal error.
    pub fn io(error: std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::StorageFull {
            tracing::error!("the data directory is full: {error}");
            return Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "the server's disk is full; nothing was kept of this request; try again once an operator has freed space",
            );
        }
        Self::internal(error)
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {error}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; the server's log has the details",
        )
    }

    pub fn into_response(self) -> Response<Body> {
        let body = kiln_api::ErrorBody::new(self.status.as_u16(), self.message);
        let mut response = json_response(self.status, &body);
        if let Some(allow) = self
            .allow
            .and_then(|a| hyper::header::HeaderValue::from_str(&a).ok())
        {
            response.headers_mut().insert(hyper::header::ALLOW, allow);
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(hyper::header::RETRY_AFTER, seconds.into());
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::internal(e)
    }
}

/// Read a request's JSON body of at most `limit` bytes as a `T`; `what`
/// names the body in the error (e.g. `CreateBuild`), `too_large` is the
/// answer for a bigger body.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    state: &ApiState,
    request: hyper::Request<hyper::body::Incoming>,
    limit: usize,
    what: &str,
    too_large: impl FnOnce() -> ApiError,
) -> Result<T, ApiError> {
    let body = read_json_bytes(state, request, limit, too_large).await?;
    parse_json(&body, what)
}

/// A request's JSON body of at most `limit` bytes, unparsed.
pub async fn read_json_bytes(
    state: &ApiState,
    request: hyper::Request<hyper::body::Incoming>,
    limit: usize,
    too_large: impl FnOnce() -> ApiError,
) -> Result<Bytes, ApiError> {
    require_json(&request)?;
    read_body(state, request.into_body(), limit, too_large).await
}

/// A request body of at most `limit` bytes, read whole: 413 (`too_large`)
/// as soon as it is known to be bigger (by its Content-Length, or by what
/// has arrived), 408 when it stops arriving, 400 when it breaks off.
pub async fn read_body(
    state: &ApiState,
    body: hyper::body::Incoming,
    limit: usize,
    too_large: impl FnOnce() -> ApiError,
) -> Result<Bytes, ApiError> {
    use hyper::body::Body as _;
    if body.size_hint().lower() > limit as u64 {
        return Err(too_large());
    }
    // Sized once by its Content-Length (within the limit, checked above):
    // a multi-megabyte inline context is not copied again as it grows.
    let mut whole = bytes::BytesMut::with_capacity(body.size_hint().lower() as usize);
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = next_chunk(state, &mut chunks).await? {
        let chunk = chunk.map_err(body_broke_off)?;
        if whole.len() + chunk.len() > limit {
            return Err(too_large());
        }
        whole.extend_from_slice(&chunk);
    }
    Ok(whole.freeze())
}

/// The next chunk of a request body (REST or a gRPC stream), or 408 when
/// none came within the server's read timeout. Without it a client that
/// stops sending mid-body holds its connection forever, and a stalled
/// create also holds builds back while it is answered
/// (`Scheduler::answering_create`).
pub async fn next_chunk<S: futures_util::Stream + Unpin>(
    state: &ApiState,
    chunks: &mut S,
) -> Result<Option<S::Item>, ApiError> {
    use futures_util::StreamExt as _;
    let timeout = state.config.request_read_timeout;
    tokio::time::timeout(timeout, chunks.next())
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body stopped arriving: nothing came for {} s, this server's limit (--request-read-timeout-secs); send the body without pausing",
                    timeout.as_secs()
                ),
            )
        })
}

/// 400 for a body the connection could not deliver (a bad chunk, a reset).
fn body_broke_off(e: hyper::Error) -> ApiError {
    ApiError::bad_request(format!("the request body broke off: {e}"))
}

/// `body` as a `T`; `what` names it in the error, and the field that was
/// wrong is named too (`tags[2]`: …), not only its line and column.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    let refused = |at: String, e: serde_json::Error| {
        ApiError::bad_request(format!("the request body is not a valid {what}: {at}{e}"))
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        // At the top level (an unknown field, a missing one) serde's own
        // message names the field already.
        let at = if path == "." {
            String::new()
        } else {
            format!("`{path}`: ")
        };
        refused(at, e.into_inner())
    })?;
    deserializer.end().map_err(|e| refused(String::new(), e))?;
    Ok(value)
}

/// A JSON body must say so: `Content-Type: application/json` (parameters
/// such as `charset` allowed, and `application/<x>+json`). Anything else is
/// 415, so a form post or a mislabelled upload is not read as JSON.
fn require_json(request: &hyper::Request<hyper::body::Incoming>) -> Result<(), ApiError> {
    let given = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("?"));
    let essence = given
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let is_json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if is_json {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        match given {
            None => "the request has a JSON body but no Content-Type; send `Content-Type: application/json`".to_string(),
            Some(other) => format!("the body must be JSON, sent as `Content-Type: application/json`, not {other:?}"),
        },
    ))
}

/// `204 No Content`: done, nothing to say.
pub fn no_content() -> Response<Body> {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(
            http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap()
}

/// A JSON answer.
pub fn json_response(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    let bytes = serde_json::to_vec(value).expect("responses serialize");
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(bytes)).boxed())
        .unwrap()
}

/// Refuses new work (507) while the data directory's filesystem has less
/// free space than the operator's minimum: a build or upload that cannot
/// finish is refused at once instead of failing half-way, and what is
/// already stored keeps being served.
pub fn check_free_disk(state: &ApiState) -> Result<(), ApiError> {
    let minimum = state.config.min_free_disk_bytes;
    if minimum == 0 {
        return Ok(());
    }
    let free = match crate::store::free_bytes(&state.config.data_dir) {
        Ok(free) => free,
        Err(e) => {
            tracing::warn!("cannot read the data directory's free space: {e}");
            return Ok(());
        }
    };
    if free < minimum {
        tracing::warn!(
            free,
            minimum,
            "refusing new work: the data directory is low on space"
        );
        return Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            format!(
                "the server is low on disk space ({} MiB free, its minimum is {} MiB); new builds and uploads are refused until an operator frees space",
                free >> 20,
                minimum >> 20
            ),
        ));
    }
    Ok(())
}
