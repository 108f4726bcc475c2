//! `wasi:http` outgoing requests, for plugins granted the `http`
//! permission. A component that imports `wasi:http` without the grant is
//! refused at load; this gate is the per-request check: the first thing it
//! does is compare the request's host with the granted hosts. Then it
//! writes in the secrets the call was lent by name (`@@secret:NAME@@` in
//! the path, query or a header value — never the host, so a secret cannot
//! choose where it goes).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::manifest::Permissions;

/// The hooks a plugin's HTTP requests go through.
pub struct HttpGate {
    pub plugin_id: String,
    pub granted: Arc<Permissions>,
    /// Name → value, written in where a request names them.
    pub secrets: Arc<BTreeMap<String, String>>,
}

/// How a request names a lent secret.
const SECRET_OPEN: &str = "@@secret:";
const SECRET_CLOSE: &str = "@@";

/// The names `text` refers to as `@@secret:NAME@@`, in order (what a
/// subscription must lend for its options to be filled in).
pub fn secret_names(text: &str) -> impl Iterator<Item = &str> {
    text.split(SECRET_OPEN)
        .skip(1)
        .map(|after| after.split(SECRET_CLOSE).next().unwrap_or(after))
}

/// `text` with each `@@secret:NAME@@` replaced by the value lent under
/// NAME; an unknown name is an error naming it (a request never goes out
/// with a placeholder in it).
pub fn fill_secrets(text: &str, secrets: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(SECRET_OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + SECRET_OPEN.len()..];
        let end = after
            .find(SECRET_CLOSE)
            .ok_or_else(|| "a `@@secret:` without its closing `@@`".to_string())?;
        let name = &after[..end];
        let value = secrets.get(name).ok_or_else(|| {
            format!("the request names the secret {name}, which this call was not lent")
        })?;
        out.push_str(value);
        rest = &after[end + SECRET_CLOSE.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The request with its lent secrets written in.
fn with_secrets(
    request: hyper::Request<WasiBody>,
    secrets: &BTreeMap<String, String>,
) -> Result<hyper::Request<WasiBody>, String> {
    let (mut parts, body) = request.into_parts();
    if let Some(path) = parts.uri.path_and_query() {
        if path.as_str().contains(SECRET_OPEN) {
            let filled = fill_secrets(path.as_str(), secrets)?;
            let mut uri = parts.uri.clone().into_parts();
            uri.path_and_query = Some(filled.parse().map_err(|_| {
                "a secret's value is not usable in a URL path (encode it when saving it)"
                    .to_string()
            })?);
            parts.uri = hyper::Uri::from_parts(uri).map_err(|e| e.to_string())?;
        }
    }
    for value in parts.headers.values_mut() {
        let Ok(text) = value.to_str() else {
            continue;
        };
        if text.contains(SECRET_OPEN) {
            let filled = fill_secrets(text, secrets)?;
            *value = filled
                .parse()
                .map_err(|_| "a secret's value is not usable in a header".to_string())?;
        }
    }
    Ok(hyper::Request::from_parts(parts, body))
}

type Sent = Box<
    dyn Future<
            Output = Result<
                (
                    hyper::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for HttpGate {
    fn send_request(
        &mut self,
        request: hyper::Request<WasiBody>,
        options: Option<RequestOptions>,
        _body_done: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Sent {
        // Permission: the host (or host:port) must be granted.
        let host = request.uri().host().unwrap_or_default().to_string();
        let authority = request
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let http = &self.granted.http;
        if !(http.contains(&host) || http.contains(&authority)) {
            tracing::warn!(plugin = %self.plugin_id, %authority, "HTTP request denied: host not granted");
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let request = match with_secrets(request, &self.secrets) {
            Ok(request) => request,
            Err(why) => {
                tracing::warn!(plugin = %self.plugin_id, %authority, "HTTP request refused: {why}");
                return Box::new(async move { Err(HttpError::InternalError(Some(why))) });
            }
        };
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_and_unknown_names_refused() {
        let secrets: BTreeMap<String, String> = [("HOOK".to_string(), "T0K3N".to_string())].into();
        assert_eq!(
            fill_secrets("/services/@@secret:HOOK@@?x=@@secret:HOOK@@", &secrets).unwrap(),
            "/services/T0K3N?x=T0K3N"
        );
        assert_eq!(fill_secrets("/plain", &secrets).unwrap(), "/plain");
        let unknown = fill_secrets("/@@secret:OTHER@@", &secrets).unwrap_err();
        assert!(unknown.contains("OTHER"), "{unknown}");
        assert!(fill_secrets("/@@secret:HOOK", &secrets).is_err());
        let names: Vec<&str> = secret_names("/a/@@secret:ONE@@/b?c=@@secret:TWO@@").collect();
        assert_eq!(names, ["ONE", "TWO"]);
        assert_eq!(secret_names("/plain").count(), 0);
    }
}
