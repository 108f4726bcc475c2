//! The web dashboard, served by `kiln serve` on the API's listener under
//! `/ui/`: one page of plain HTML, CSS and JavaScript embedded in the
//! binary (nothing fetched from elsewhere, works offline), which calls the
//! same REST API as every other client, signed in with a session cookie
//! ([`crate::api::session`]) instead of a bearer token.
//!
//! | path | what |
//! |---|---|
//! | `/` | redirects to `/ui/` |
//! | `/ui/` | the page ([`assets/index.html`](assets/index.html)); its views are `#/…` routes |
//! | `/ui/app.js`, `/ui/app.css`, `/ui/icon.svg` | the page's script, styles and icon |
//! | `/ui/session` | sign in (`POST {token}`), who am I (`GET`), sign out (`DELETE`) |
//!
//! Every answer of the server carries a strict Content-Security-Policy
//! ([`SECURITY_HEADERS`]): scripts and styles only from this origin, no
//! inline script, no framing.

use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use crate::api::{session, ApiError, ApiState, Body};

struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/ui/",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("assets/index.html"),
    },
    Asset {
        path: "/ui/app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("assets/app.js"),
    },
    Asset {
        path: "/ui/app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("assets/app.css"),
    },
    Asset {
        path: "/ui/icon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("assets/icon.svg"),
    },
];

/// Headers on every answer, API and dashboard alike: the API's JSON is
/// never a page, and the dashboard's page runs only its own script.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
];

/// Whether `path` is the dashboard's (everything else is the API's).
pub fn serves(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/")
}

/// An asset's entity tag: its content's hash, computed once.
fn etag(asset: &Asset) -> String {
    use sha2::{Digest, Sha256};
    format!("\"{}\"", &hex::encode(Sha256::digest(asset.bytes))[..16])
}

fn redirect(to: &'static str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(hyper::header::LOCATION, to)
        .body(
            http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap()
}

pub async fn handle(
    state: &ApiState,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    if path == "/ui/session" {
        return match method {
            Method::POST => session::sign_in(state, request).await,
            Method::GET => session::current(state, request.headers()),
            Method::DELETE => session::sign_out(state, request.headers()).await,
            _ => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "/ui/session accepts POST (sign in), GET and DELETE (sign out)",
            )
            .with_allow("GET, POST, DELETE")),
        };
    }
    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{path} is a page of the dashboard: only GET"),
        )
        .with_allow("GET"));
    }
    if path == "/" || path == "/ui" {
        return Ok(redirect("/ui/"));
    }
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return Err(ApiError::not_found(&format!(
            "dashboard page {path} (the dashboard is at /ui/)"
        )));
    };
    let tag = etag(asset);
    let unchanged = request
        .headers()
        .get(hyper::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let builder = Response::builder()
        .header(hyper::header::ETAG, &tag)
        // Revalidated each time: a new server version's page is seen at once.
        .header(hyper::header::CACHE_CONTROL, "no-cache");
    if unchanged {
        return Ok(builder
            .status(StatusCode::NOT_MODIFIED)
            .body(
                http_body_util::Empty::new()
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .unwrap());
    }
    Ok(builder
        .status(StatusCode::OK)
        .header(hyper::header::CONTENT_TYPE, asset.content_type)
        .body(Full::new(bytes::Bytes::from_static(asset.bytes)).boxed())
        .unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_only_its_own_assets() {
        let page = std::str::from_utf8(ASSETS[0].bytes).unwrap();
        for asset in ["/ui/app.js", "/ui/app.css", "/ui/icon.svg"] {
            assert!(page.contains(asset), "index.html does not load {asset}");
        }
        assert!(
            !page.contains("<script>"),
            "no inline script: the CSP refuses it"
        );
        assert!(
            !page.contains("style="),
            "no inline style: the CSP refuses it"
        );
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "nothing from elsewhere"
        );
    }
}
