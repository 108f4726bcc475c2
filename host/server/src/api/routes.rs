//! Dispatch and authentication.

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use super::{
    builds, contexts, events, logs, orgs, projects, secrets, webhooks, wizard, ApiError, ApiState,
    Body,
};

/// Who is calling: the organization the bearer token (or the dashboard
/// session) belongs to.
pub struct Caller {
    pub org: String,
    /// The operator's token: may manage organizations.
    pub admin: bool,
    /// What the caller proved itself with, for what outlives the request
    /// (a log or event stream ends when it is revoked).
    pub credential: Credential,
}

/// A bearer token, or a dashboard session (whose token stays server-side).
#[derive(Clone)]
pub enum Credential {
    Token(String),
    Session(String),
}

impl Credential {
    /// Whether it still opens the API: the token is not revoked, the
    /// session not signed out, expired, or left by a revoked token.
    pub fn is_valid(&self, store: &crate::store::Store) -> Result<bool, crate::store::StoreError> {
        Ok(match self {
            Credential::Token(token) => store.token(token)?.is_some(),
            Credential::Session(id) => store.session(id)?.is_some(),
        })
    }
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

/// The token of an `Authorization: Bearer <token>` header, if the request
/// has one. The scheme name is case-insensitive (RFC 9110 §11.1): `bearer x`
/// is as good as `Bearer x`.
fn bearer_token(headers: &hyper::HeaderMap) -> Option<&str> {
    headers
        .get(hyper::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
}

/// The caller a request's `Authorization: Bearer <token>` names: REST
/// headers and gRPC metadata alike (gRPC metadata is HTTP/2 headers).
pub fn authenticate(state: &ApiState, headers: &hyper::HeaderMap) -> Result<Caller, ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, m);
    if !headers.contains_key(hyper::header::AUTHORIZATION) {
        return Err(unauthorized(
            "missing `Authorization: Bearer <token>` header",
        ));
    }
    let token = bearer_token(headers)
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
    let record = state
        .store
        .token(token)?
        .ok_or_else(|| unauthorized("the token is not valid (unknown or revoked)"))?;
    Ok(Caller {
        org: record.org,
        admin: record.admin,
        credential: Credential::Token(token.to_string()),
    })
}

/// A REST request's caller: its bearer token, or else the dashboard's
/// session cookie. A session's state-changing request must also carry the
/// session's CSRF token (`X-Kiln-CSRF`), which only a page of this origin
/// can read; a bearer token is never sent by a browser on its own, so it
/// needs none.
fn authenticate_rest(
    state: &ApiState,
    method: &Method,
    headers: &hyper::HeaderMap,
) -> Result<Caller, ApiError> {
    if headers.contains_key(hyper::header::AUTHORIZATION) {
        return authenticate(state, headers);
    }
    match super::session::from_cookie(state, headers)? {
        Some((session_id, session)) => {
            if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
                super::session::check_csrf(&session, headers)?;
            }
            Ok(Caller {
                org: session.org,
                admin: session.admin,
                credential: Credential::Session(session_id),
            })
        }
        None => authenticate(state, headers),
    }
}

/// Answer one request.
pub async fn handle(state: Arc<ApiState>, request: Request<Incoming>) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = std::time::Instant::now();
    let mut response = match route(state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    let headers = response.headers_mut();
    for (name, value) in crate::dashboard::SECURITY_HEADERS {
        headers.insert(*name, hyper::header::HeaderValue::from_static(value));
    }
    tracing::debug!(%method, path, status = response.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    response
}

/// Every route, as (method, path template) — the same set the OpenAPI
/// document describes; a test keeps the two equal.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/builds"),
    ("GET", "/v1/builds"),
    ("GET", "/v1/builds/{buildId}"),
    ("POST", "/v1/builds/{buildId}:cancel"),
    ("GET", "/v1/builds/{buildId}/logs"),
    ("GET", "/v1/events"),
    ("POST", "/v1/contexts"),
    ("GET", "/v1/contexts/{contextId}"),
    ("GET", "/v1/plugins"),
    ("POST", "/v1/projects"),
    ("GET", "/v1/projects"),
    ("GET", "/v1/projects/{projectId}"),
    ("PATCH", "/v1/projects/{projectId}"),
    ("DELETE", "/v1/projects/{projectId}"),
    ("POST", "/v1/projects/{projectId}:build"),
    ("POST", "/v1/projects/{projectId}:rotateWebhookSecret"),
    ("POST", "/v1/hooks/{projectId}"),
    ("POST", "/v1/webhooks"),
    ("GET", "/v1/webhooks"),
    ("DELETE", "/v1/webhooks/{webhookId}"),
    ("GET", "/v1/webhooks/{webhookId}/deliveries"),
    (
        "POST",
        "/v1/webhooks/{webhookId}/deliveries/{deliveryId}:redeliver",
    ),
    ("POST", "/v1/wizard:detect"),
    ("POST", "/v1/orgs"),
    ("GET", "/v1/orgs"),
    ("POST", "/v1/orgs/{org}/tokens"),
    ("DELETE", "/v1/orgs/{org}/tokens/{tokenId}"),
    ("PUT", "/v1/orgs/{org}/registry"),
    ("GET", "/v1/orgs/{org}/registry"),
    ("DELETE", "/v1/orgs/{org}/registry"),
    ("GET", "/v1/orgs/{org}/signing-key"),
    ("PUT", "/v1/orgs/{org}/signing"),
    ("GET", "/v1/orgs/{org}/signing"),
    ("PUT", "/v1/secrets"),
    ("GET", "/v1/secrets"),
    ("DELETE", "/v1/secrets/{kind}/{name}"),
    ("POST", "/v1/gc"),
    ("GET", "/v1/engines"),
    ("POST", "/v1/engines/{engine}:drain"),
    ("POST", "/v1/engines/{engine}:resume"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/metrics"),
    ("GET", "/healthz"),
];

/// The OpenAPI 3.1 description of every route, generated from the
/// `kiln-api` types and rendered once.
pub fn openapi_json() -> bytes::Bytes {
    static RENDERED: std::sync::OnceLock<bytes::Bytes> = std::sync::OnceLock::new();
    RENDERED
        .get_or_init(|| {
            let document = serde_json::to_vec_pretty(&kiln_api::openapi::document())
                .expect("the OpenAPI document serializes");
            bytes::Bytes::from(document)
        })
        .clone()
}

/// A request's destination, with its path parameters.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Healthz,
    Metrics,
    OpenApi,
    CreateBuild,
    ListBuilds,
    GetBuild(&'a str),
    CancelBuild(&'a str),
    BuildLogs(&'a str),
    Events,
    UploadContext,
    GetContext(&'a str),
    ListPlugins,
    CreateProject,
    ListProjects,
    GetProject(&'a str),
    UpdateProject(&'a str),
    DeleteProject(&'a str),
    BuildProject(&'a str),
    RotateWebhookSecret(&'a str),
    /// A push delivery: authenticated by its signature, not a token.
    PushHook(&'a str),
    CreateWebhook,
    ListWebhooks,
    DeleteWebhook(&'a str),
    WebhookDeliveries(&'a str),
    Redeliver(&'a str, &'a str),
    WizardDetect,
    CreateOrg,
    ListOrgs,
    CreateToken(&'a str),
    SetOrgRegistry(&'a str),
    GetOrgRegistry(&'a str),
    ResetOrgRegistry(&'a str),
    SigningKey(&'a str),
    SetOrgSigning(&'a str),
    GetOrgSigning(&'a str),
    RevokeToken(&'a str, &'a str),
    SaveSecrets,
    ListSecrets,
    DeleteSecret(&'a str, &'a str),
    CollectGarbage,
    ListEngines,
    DrainEngine(&'a str),
    ResumeEngine(&'a str),
}

impl Route<'_> {
    /// Routes anyone may call, without a token.
    fn is_public(&self) -> bool {
        matches!(
            self,
            Route::Healthz | Route::Metrics | Route::OpenApi | Route::PushHook(_)
        )
    }
}

/// Where `method path` goes: 404 for no such path, 405 (with `Allow`) for
/// a path that exists with other methods.
pub fn resolve<'a>(method: &Method, path: &'a str) -> Result<Route<'a>, ApiError> {
    if let Some(route) = route_for(method, path)? {
        return Ok(route);
    }
    let allowed: Vec<&str> = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ]
    .iter()
    .filter(|other| matches!(route_for(other, path), Ok(Some(_))))
    .map(Method::as_str)
    .collect();
    let allowed = allowed.join(", ");
    Err(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{path} does not accept {method}, only {allowed}; see GET /v1/openapi.json"),
    )
    .with_allow(allowed))
}

/// The route `method path` names; `None` when the path exists but not with
/// this method.
fn route_for<'a>(method: &Method, path: &'a str) -> Result<Option<Route<'a>>, ApiError> {
    let segments: Vec<&'a str> = path.trim_start_matches('/').split('/').collect();
    let is = |m: Method| *method == m;
    let route = match segments.as_slice() {
        ["healthz"] => is(Method::GET).then_some(Route::Healthz),
        ["metrics"] => is(Method::GET).then_some(Route::Metrics),
        ["v1", "openapi.json"] => is(Method::GET).then_some(Route::OpenApi),
        ["v1", "builds"] if is(Method::POST) => Some(Route::CreateBuild),
        ["v1", "builds"] => is(Method::GET).then_some(Route::ListBuilds),
        ["v1", "builds", action] if action.ends_with(":cancel") => {
            is(Method::POST).then(|| Route::CancelBuild(action.trim_end_matches(":cancel")))
        }
        ["v1", "builds", id] if !id.is_empty() => is(Method::GET).then_some(Route::GetBuild(id)),
        ["v1", "builds", id, "logs"] => is(Method::GET).then_some(Route::BuildLogs(id)),
        ["v1", "events"] => is(Method::GET).then_some(Route::Events),
        ["v1", "contexts"] => is(Method::POST).then_some(Route::UploadContext),
        ["v1", "contexts", id] => is(Method::GET).then_some(Route::GetContext(id)),
        ["v1", "plugins"] => is(Method::GET).then_some(Route::ListPlugins),
        ["v1", "projects"] if is(Method::POST) => Some(Route::CreateProject),
        ["v1", "projects"] => is(Method::GET).then_some(Route::ListProjects),
        ["v1", "projects", action] if action.ends_with(":build") => {
            is(Method::POST).then(|| Route::BuildProject(action.trim_end_matches(":build")))
        }
        ["v1", "projects", action] if action.ends_with(":rotateWebhookSecret") => is(Method::POST)
            .then(|| Route::RotateWebhookSecret(action.trim_end_matches(":rotateWebhookSecret"))),
        ["v1", "projects", id] if !id.is_empty() => match *method {
            Method::GET => Some(Route::GetProject(id)),
            Method::PATCH => Some(Route::UpdateProject(id)),
            Method::DELETE => Some(Route::DeleteProject(id)),
            _ => None,
        },
        ["v1", "hooks", id] if !id.is_empty() => is(Method::POST).then_some(Route::PushHook(id)),
        ["v1", "webhooks"] if is(Method::POST) => Some(Route::CreateWebhook),
        ["v1", "webhooks"] => is(Method::GET).then_some(Route::ListWebhooks),
        ["v1", "webhooks", id] if !id.is_empty() => {
            is(Method::DELETE).then_some(Route::DeleteWebhook(id))
        }
        ["v1", "webhooks", id, "deliveries"] => {
            is(Method::GET).then_some(Route::WebhookDeliveries(id))
        }
        ["v1", "webhooks", id, "deliveries", action] if action.ends_with(":redeliver") => {
            is(Method::POST).then(|| Route::Redeliver(id, action.trim_end_matches(":redeliver")))
        }
        ["v1", "wizard:detect"] => is(Method::POST).then_some(Route::WizardDetect),
        ["v1", "orgs"] if is(Method::POST) => Some(Route::CreateOrg),
        ["v1", "orgs"] => is(Method::GET).then_some(Route::ListOrgs),
        ["v1", "orgs", org, "tokens"] => is(Method::POST).then_some(Route::CreateToken(org)),
        ["v1", "orgs", org, "registry"] if is(Method::PUT) => Some(Route::SetOrgRegistry(org)),
        ["v1", "orgs", org, "registry"] if is(Method::DELETE) => Some(Route::ResetOrgRegistry(org)),
        ["v1", "orgs", org, "registry"] => is(Method::GET).then_some(Route::GetOrgRegistry(org)),
        ["v1", "orgs", org, "signing-key"] => is(Method::GET).then_some(Route::SigningKey(org)),
        ["v1", "orgs", org, "signing"] if is(Method::PUT) => Some(Route::SetOrgSigning(org)),
        ["v1", "orgs", org, "signing"] => is(Method::GET).then_some(Route::GetOrgSigning(org)),
        ["v1", "orgs", org, "tokens", id] => {
            is(Method::DELETE).then_some(Route::RevokeToken(org, id))
        }
        ["v1", "secrets"] if is(Method::PUT) => Some(Route::SaveSecrets),
        ["v1", "secrets"] => is(Method::GET).then_some(Route::ListSecrets),
        ["v1", "secrets", kind, name] => {
            is(Method::DELETE).then_some(Route::DeleteSecret(kind, name))
        }
        ["v1", "gc"] => is(Method::POST).then_some(Route::CollectGarbage),
        ["v1", "engines"] => is(Method::GET).then_some(Route::ListEngines),
        ["v1", "engines", action] if action.ends_with(":drain") => {
            is(Method::POST).then(|| Route::DrainEngine(action.trim_end_matches(":drain")))
        }
        ["v1", "engines", action] if action.ends_with(":resume") => {
            is(Method::POST).then(|| Route::ResumeEngine(action.trim_end_matches(":resume")))
        }
        _ => return Err(ApiError::not_found(&format!("route {path}"))),
    };
    Ok(route)
}

async fn route(
    state: Arc<ApiState>,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let path = request.uri().path().to_string();
    if crate::dashboard::serves(&path) {
        return crate::dashboard::handle(&state, request).await;
    }
    let route = resolve(request.method(), &path)?;
    if route.is_public() {
        return Ok(match route {
            Route::Metrics => {
                check_metrics_token(&state, &request)?;
                metrics(&state)
            }
            Route::PushHook(id) => projects::push(&state, id, request).await?,
            Route::OpenApi => Response::builder()
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(http_body_util::Full::new(openapi_json()).boxed())
                .unwrap(),
            _ => super::json_response(StatusCode::OK, &serde_json::json!({"status": "ok"})),
        });
    }
    let caller = authenticate_rest(&state, request.method(), request.headers())?;
    match route {
        Route::CreateBuild => builds::create(&state, &caller, request).await,
        Route::ListBuilds => builds::list(&state, &caller, &request),
        Route::GetBuild(id) => Ok(super::json_response(
            StatusCode::OK,
            &builds::get(&state, &caller.org, id)?,
        )),
        Route::CancelBuild(id) => Ok(super::json_response(
            StatusCode::OK,
            &builds::cancel(&state, &caller.org, id).await?,
        )),
        Route::BuildLogs(id) => logs::stream(&state, &caller, id, &request),
        Route::Events => events::stream(&state, &caller, &request),
        Route::UploadContext => contexts::upload(&state, &caller, request).await,
        Route::GetContext(id) => contexts::get(&state, &caller, id),
        Route::ListPlugins => builds::plugins(&state),
        Route::CreateProject => projects::create(&state, &caller, request).await,
        Route::ListProjects => projects::list(&state, &caller),
        Route::GetProject(id) => projects::get(&state, &caller, id),
        Route::UpdateProject(id) => projects::update(&state, &caller, id, request).await,
        Route::DeleteProject(id) => projects::delete(&state, &caller, id).await,
        Route::BuildProject(id) => projects::build(&state, &caller, id, request).await,
        Route::RotateWebhookSecret(id) => projects::rotate_secret(&state, &caller, id).await,
        Route::CreateWebhook => webhooks::create(&state, &caller, request).await,
        Route::ListWebhooks => webhooks::list(&state, &caller),
        Route::DeleteWebhook(id) => webhooks::delete(&state, &caller, id).await,
        Route::WebhookDeliveries(id) => webhooks::deliveries(&state, &caller, id),
        Route::Redeliver(id, delivery) => webhooks::redeliver(&state, &caller, id, delivery).await,
        Route::WizardDetect => wizard::detect(&state, &caller, request).await,
        Route::CreateOrg => orgs::create(&state, &caller, request).await,
        Route::ListOrgs => orgs::list(&state, &caller),
        Route::CreateToken(org) => orgs::create_token(&state, &caller, org),
        Route::SetOrgRegistry(org) => orgs::set_registry(&state, &caller, org, request).await,
        Route::GetOrgRegistry(org) => orgs::get_registry(&state, &caller, org),
        Route::ResetOrgRegistry(org) => orgs::reset_registry(&state, &caller, org).await,
        Route::SigningKey(org) => orgs::signing_key(&state, &caller, org).await,
        Route::SetOrgSigning(org) => orgs::set_signing(&state, &caller, org, request).await,
        Route::GetOrgSigning(org) => orgs::get_signing(&state, &caller, org),
        Route::RevokeToken(org, id) => orgs::revoke_token(&state, &caller, org, id),
        Route::SaveSecrets => secrets::save(&state, &caller, request).await,
        Route::ListSecrets => Ok(super::json_response(
            StatusCode::OK,
            &secrets::masked(&state, &caller.org).await?,
        )),
        Route::DeleteSecret(kind, name) => secrets::delete(&state, &caller, kind, name).await,
        Route::CollectGarbage => orgs::collect_garbage(&state, &caller, request).await,
        Route::ListEngines => orgs::list_engines(&state, &caller),
        Route::DrainEngine(name) => orgs::drain_engine(&state, &caller, name, true),
        Route::ResumeEngine(name) => orgs::drain_engine(&state, &caller, name, false),
        Route::Healthz | Route::Metrics | Route::OpenApi | Route::PushHook(_) => {
            unreachable!("public routes answered above")
        }
    }
}

/// With a metrics token configured, `/metrics` answers only a scraper
/// that presents it (`Authorization: Bearer <token>`); without one it is
/// open, as Prometheus endpoints usually are on a private network.
fn check_metrics_token(state: &ApiState, request: &Request<Incoming>) -> Result<(), ApiError> {
    use sha2::{Digest, Sha256};
    let Some(expected) = &state.config.metrics_token else {
        return Ok(());
    };
    let given = bearer_token(request.headers()).unwrap_or_default();
    // Digests compared, not the tokens: the comparison's time says nothing
    // about how much of a guess was right.
    if Sha256::digest(given.as_bytes()) == Sha256::digest(expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "/metrics needs the metrics token: `Authorization: Bearer <token>` (the operator's --metrics-token-file)",
        ))
    }
}

fn metrics(state: &ApiState) -> Response<Body> {
    let text = state.metrics.render(&crate::metrics::Snapshot {
        queue_depth: state.store.queue_len() as u64,
        running: state.scheduler.running_count() as u64,
        engines: state.engines.views(),
    });
    Response::builder()
        .header(hyper::header::CONTENT_TYPE, "text/plain; version=0.0.4")
        .body(http_body_util::Full::new(bytes::Bytes::from(text)).boxed())
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn spec_routes() -> BTreeSet<(String, String)> {
        let spec: serde_json::Value =
            serde_json::from_slice(&openapi_json()).expect("the document is JSON");
        assert_eq!(spec["openapi"], "3.1.0");
        let mut out = BTreeSet::new();
        for (path, item) in spec["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
        out
    }

    #[test]
    fn the_openapi_document_describes_exactly_the_routes() {
        let ours: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(spec_routes(), ours);
    }

    #[test]
    fn every_documented_route_resolves_and_other_methods_are_405() {
        for (method, template) in spec_routes() {
            let path = template
                .replace("{buildId}", "b-1")
                .replace("{contextId}", "ctx-1")
                .replace("{projectId}", "p-1")
                .replace("{webhookId}", "w-1")
                .replace("{deliveryId}", "msg_1")
                .replace("{org}", "team")
                .replace("{tokenId}", "t-1")
                .replace("{kind}", "build")
                .replace("{name}", "NPM_TOKEN");
            let method: Method = method.parse().unwrap();
            let route = resolve(&method, &path);
            assert!(route.is_ok(), "{method} {path}: {:?}", route.err());
            // A method the path does not take.
            let other = [Method::PUT, Method::PATCH, Method::GET]
                .into_iter()
                .find(|m| !matches!(route_for(m, &path), Ok(Some(_))))
                .expect("no path takes every method");
            let refused = resolve(&other, &path).unwrap_err();
            assert_eq!(refused.status, StatusCode::METHOD_NOT_ALLOWED);
            let allow = refused.allow.expect("a 405 says what is allowed");
            assert!(
                allow.split(", ").any(|m| m == method.as_str()),
                "{path}: Allow {allow:?} lacks {method}"
            );
        }
        assert_eq!(
            resolve(&Method::GET, "/v1/nope").unwrap_err().status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            resolve(&Method::POST, "/v1/builds/abc:cancel").unwrap(),
            Route::CancelBuild("abc")
        );
    }
}
