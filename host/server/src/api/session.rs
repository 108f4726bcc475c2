//! The dashboard's sign-in (`/ui/session`): a browser trades an
//! organization token (or the admin token) for a session once, and from
//! then on sends only the session's cookie.
//!
//! * The cookie (`kiln_session`) is `HttpOnly` (no script reads it),
//!   `SameSite=Strict` (no other site's page sends it) and `Secure` when
//!   the server speaks TLS. The token itself is never stored by the
//!   browser, nor in a URL or page: the session keeps its hash.
//! * A state-changing request made with the cookie must also carry the
//!   session's CSRF token in `X-Kiln-CSRF`: the page reads it from
//!   `GET /ui/session`, which another origin cannot.
//! * A session ends when it is signed out (`DELETE /ui/session`), after
//!   [`SESSION_LIFETIME`], or when its token is revoked.

use chrono::Utc;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{read_json, ApiError, ApiState, Body};
use crate::store::SessionRecord;

pub const COOKIE: &str = "kiln_session";
/// The header a session's state-changing request carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-kiln-csrf";
/// How long a session lasts: a working day.
pub const SESSION_LIFETIME: chrono::Duration = chrono::Duration::hours(12);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    token: String,
}

/// What the page knows of its session: who it is and its CSRF token.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionView {
    org: String,
    admin: bool,
    csrf: String,
    expire_time: chrono::DateTime<Utc>,
}

fn view(record: &SessionRecord) -> SessionView {
    SessionView {
        org: record.org.clone(),
        admin: record.admin,
        csrf: record.csrf.clone(),
        expire_time: record.expire_time,
    }
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// The session id a request's `Cookie` headers carry, if any.
fn cookie_value(headers: &hyper::HeaderMap) -> Option<&str> {
    headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// The live session a request's cookie names: `None` without a cookie,
/// 401 with one that names no live session.
pub fn from_cookie(
    state: &ApiState,
    headers: &hyper::HeaderMap,
) -> Result<Option<(String, SessionRecord)>, ApiError> {
    let Some(id) = cookie_value(headers) else {
        return Ok(None);
    };
    match state.store.session(id)? {
        Some(record) => Ok(Some((id.to_string(), record))),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the dashboard session has ended (signed out, expired, or its token was revoked); sign in again",
        )),
    }
}

/// A session's state-changing request must carry its CSRF token.
pub fn check_csrf(session: &SessionRecord, headers: &hyper::HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Digests compared: the time taken says nothing about a guess.
    if !given.is_empty()
        && Sha256::digest(given.as_bytes()) == Sha256::digest(session.csrf.as_bytes())
    {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "a request made with the dashboard's session cookie that changes something must carry the session's `X-Kiln-CSRF` header (GET /ui/session gives it); API clients use `Authorization: Bearer <token>` instead",
    ))
}

fn set_cookie(state: &ApiState, value: &str, max_age_secs: i64) -> String {
    let secure = if state.config.tls.is_some() {
        "; Secure"
    } else {
        ""
    };
    format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}")
}

fn with_cookie(mut response: Response<Body>, cookie: Option<String>) -> Response<Body> {
    if let Some(value) = cookie.and_then(|c| hyper::header::HeaderValue::from_str(&c).ok()) {
        response
            .headers_mut()
            .insert(hyper::header::SET_COOKIE, value);
    }
    response
        .headers_mut()
        .insert(hyper::header::CACHE_CONTROL, "no-store".parse().unwrap());
    response
}

/// `POST /ui/session` `{"token": …}`: sign in.
pub async fn sign_in(
    state: &ApiState,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body: SignIn = read_json(state, request, 4096, "sign-in", || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "a sign-in is `{\"token\": \"kiln_…\"}`",
        )
    })
    .await?;
    let Some((token, token_sha256)) = state.store.token_for_session(body.token.trim())? else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "that token is not valid (unknown or revoked); ask your operator for an organization token (`kiln org token create`)",
        ));
    };
    let session_id = random_hex(32);
    let now = Utc::now();
    let record = SessionRecord {
        org: token.org,
        admin: token.admin,
        token_sha256,
        csrf: random_hex(32),
        create_time: now,
        expire_time: now + SESSION_LIFETIME,
    };
    state.store.put_session(&session_id, &record)?;
    state.store.flush().await?;
    tracing::info!(org = %record.org, "dashboard sign-in");
    let response = super::json_response(StatusCode::CREATED, &view(&record));
    Ok(with_cookie(
        response,
        Some(set_cookie(
            state,
            &session_id,
            SESSION_LIFETIME.num_seconds(),
        )),
    ))
}

/// `GET /ui/session`: the signed-in session, or 401.
pub fn current(state: &ApiState, headers: &hyper::HeaderMap) -> Result<Response<Body>, ApiError> {
    match from_cookie(state, headers)? {
        Some((_, record)) => Ok(with_cookie(
            super::json_response(StatusCode::OK, &view(&record)),
            None,
        )),
        None => Err(ApiError::new(StatusCode::UNAUTHORIZED, "not signed in")),
    }
}

/// `DELETE /ui/session`: sign out (the session's CSRF token required).
pub async fn sign_out(
    state: &ApiState,
    headers: &hyper::HeaderMap,
) -> Result<Response<Body>, ApiError> {
    if let Some((id, record)) = from_cookie(state, headers).unwrap_or(None) {
        check_csrf(&record, headers)?;
        state.store.remove_session(&id)?;
        state.store.flush().await?;
    }
    Ok(with_cookie(
        super::no_content(),
        Some(set_cookie(state, "", 0)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = hyper::HeaderMap::new();
        headers.append(
            hyper::header::COOKIE,
            "a=1; kiln_session=abc ; b=2".parse().unwrap(),
        );
        assert_eq!(cookie_value(&headers), Some("abc"));
        let mut other = hyper::HeaderMap::new();
        other.append(hyper::header::COOKIE, "x_kiln_session=abc".parse().unwrap());
        assert_eq!(cookie_value(&other), None);
        other.append(hyper::header::COOKIE, "kiln_session=".parse().unwrap());
        assert_eq!(
            cookie_value(&other),
            None,
            "an empty (signed-out) cookie is none"
        );
    }
}
