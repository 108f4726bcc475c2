//! A small client for the Kiln API, for the CLI's client commands. Errors
//! say what to do: start the server, check the token, or the server's own
//! message for a 4xx.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no token: pass --token or set KILN_TOKEN (the server writes the admin token to <data-dir>/admin-token)")]
    NoToken,
    #[error("`{0}` is not a valid server URL; use http://host:port")]
    BadServer(String),
    #[error("cannot reach the Kiln server at {server}: {source}; is `kiln serve` running there? (--server / KILN_SERVER)")]
    Unreachable {
        server: String,
        source: hyper_util::client::legacy::Error,
    },
    #[error("the server rejected the token (401): {0}")]
    Unauthorized(String),
    #[error("the server refused ({status}): {message}")]
    Refused { status: StatusCode, message: String },
    #[error("the server's answer is not JSON: {0}")]
    BadAnswer(String),
}

/// A connection to one Kiln server with one token.
pub struct ApiClient {
    server: String,
    token: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl ApiClient {
    pub fn new(server: &str, token: Option<&str>) -> Result<Self, ClientError> {
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or(ClientError::NoToken)?;
        let server = server.trim_end_matches('/').to_string();
        if !server.starts_with("http://") {
            return Err(ClientError::BadServer(server));
        }
        Ok(ApiClient {
            server,
            token: token.trim().to_string(),
            http: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// Send a request; JSON in, JSON out (`Value::Null` for an empty answer).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.server))
            .header("authorization", format!("Bearer {}", self.token));
        let bytes = match body {
            Some(value) => {
                request = request.header("content-type", "application/json");
                Bytes::from(serde_json::to_vec(value).expect("JSON serializes"))
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(bytes))
            .map_err(|_| ClientError::BadServer(self.server.clone()))?;
        let response =
            self.http
                .request(request)
                .await
                .map_err(|source| ClientError::Unreachable {
                    server: self.server.clone(),
                    source,
                })?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let json: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .map_err(|_| ClientError::BadAnswer(String::from_utf8_lossy(&body).into_owned()))?
        };
        if status.is_success() {
            return Ok(json);
        }
        let message = json["error"]["message"]
            .as_str()
            .unwrap_or("(no message)")
            .to_string();
        Err(if status == StatusCode::UNAUTHORIZED {
            ClientError::Unauthorized(message)
        } else {
            ClientError::Refused { status, message }
        })
    }
}
