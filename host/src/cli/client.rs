//! A small client for the Kiln API, for the CLI's client commands. Errors
//! say what to do: start the server, check the token, or the server's own
//! message for a 4xx.

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
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

type RequestBody = BoxBody<Bytes, std::io::Error>;

/// A connection to one Kiln server with one token.
pub struct ApiClient {
    server: String,
    token: String,
    http: Client<HttpConnector, RequestBody>,
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
            .map_err(|source| ClientError::Unreachable {
                server: self.server.clone(),
                source,
            })
    }

    /// Send a request; JSON in, JSON out (`Value::Null` for an empty answer).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
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
            return Self::json_answer(response).await.map(|_| ());
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

    async fn json_answer(
        response: hyper::Response<hyper::body::Incoming>,
    ) -> Result<Value, ClientError> {
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
