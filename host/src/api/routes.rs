//! Dispatch and authentication.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use super::{builds, contexts, logs, orgs, ApiError, ApiState, Body};

/// Who is calling: the organization the bearer token belongs to.
pub struct Caller {
    pub org: String,
    /// The operator's token: may manage organizations.
    pub admin: bool,
}

impl Caller {
    /// Organization management is for the operator's admin token only.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.admin {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "only the operator's admin token (<data-dir>/admin-token) may manage organizations and tokens",
            ))
        }
    }
}

fn authenticate(state: &ApiState, request: &Request<Incoming>) -> Result<Caller, ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, m);
    let header = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing `Authorization: Bearer <token>` header"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
    let record = state
        .store
        .token(token)?
        .ok_or_else(|| unauthorized("the token is not valid (unknown or revoked)"))?;
    Ok(Caller {
        org: record.org,
        admin: record.admin,
    })
}

/// Answer one request.
pub async fn handle(state: Arc<ApiState>, request: Request<Incoming>) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = std::time::Instant::now();
    let response = match route(state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    tracing::debug!(%method, path, status = response.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    response
}

async fn route(
    state: Arc<ApiState>,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let path = request.uri().path().to_string();
    if path == "/healthz" {
        return Ok(super::json_response(
            StatusCode::OK,
            &serde_json::json!({"status": "ok"}),
        ));
    }
    let Some(rest) = path.strip_prefix("/v1/") else {
        return Err(ApiError::not_found(&format!("route {path}")));
    };
    let caller = authenticate(&state, &request)?;
    let segments: Vec<&str> = rest.split('/').collect();
    let method = request.method().clone();
    match (method, segments.as_slice()) {
        (Method::POST, ["builds"]) => builds::create(&state, &caller, request).await,
        (Method::GET, ["builds"]) => builds::list(&state, &caller, &request),
        (Method::GET, ["builds", id]) if !id.contains(':') => builds::get(&state, &caller, id),
        (Method::POST, ["builds", action]) if action.ends_with(":cancel") => {
            builds::cancel(&state, &caller, action.trim_end_matches(":cancel"))
        }
        (Method::GET, ["builds", id, "logs"]) => logs::stream(&state, &caller, id, &request),
        (Method::GET, ["plugins"]) => builds::plugins(&state),
        (Method::POST, ["contexts"]) => contexts::upload(&state, &caller, request).await,
        (Method::GET, ["contexts", id]) => contexts::get(&state, &caller, id),
        (Method::POST, ["orgs"]) => orgs::create(&state, &caller, request).await,
        (Method::GET, ["orgs"]) => orgs::list(&state, &caller),
        (Method::POST, ["orgs", org, "tokens"]) => orgs::create_token(&state, &caller, org),
        (Method::DELETE, ["orgs", org, "tokens", token_id]) => {
            orgs::revoke_token(&state, &caller, org, token_id)
        }
        (_, ["builds"])
        | (_, ["builds", _])
        | (_, ["builds", _, "logs"])
        | (_, ["plugins"])
        | (_, ["contexts"])
        | (_, ["contexts", _])
        | (_, ["orgs"])
        | (_, ["orgs", _, "tokens"])
        | (_, ["orgs", _, "tokens", _]) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} does not accept this method", path),
        )),
        _ => Err(ApiError::not_found(&format!("route {path}"))),
    }
}
