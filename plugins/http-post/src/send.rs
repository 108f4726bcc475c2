//! The POST itself, over `wasi:http` (inside the component only).

use kiln_sdk::notifier::{Delivered, NotifyError};
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasi::io::streams::StreamError;

/// How long to wait for a connection and then for the answer's first byte:
/// a receiver slower than this is retried later rather than held on to.
const TIMEOUT_NS: u64 = 10_000_000_000;
/// How much of the answer is kept as the delivery's summary.
const EXCERPT_BYTES: usize = 512;

fn give_up(message: String) -> NotifyError {
    NotifyError::GiveUp(message)
}

/// POST `body` as JSON to `url`.
pub fn post_json(url: &str, body: &str) -> Result<Delivered, NotifyError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| give_up(format!("`{url}` is not an http:// or https:// URL")))?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => {
            return Err(give_up(format!(
                "`{url}`: the scheme {other} is not http or https"
            )))
        }
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    // A length, not chunks: simple receivers (and some proxies) read
    // only bodies whose length they are told.
    let headers = Fields::from_list(&[
        ("content-type".to_string(), b"application/json".to_vec()),
        (
            "content-length".to_string(),
            body.len().to_string().into_bytes(),
        ),
        ("user-agent".to_string(), b"kiln-http-post/0.1".to_vec()),
    ])
    .map_err(|e| give_up(format!("cannot set the headers: {e:?}")))?;
    let request = OutgoingRequest::new(headers);
    let setup = |ok: Result<(), ()>, what: &str| {
        ok.map_err(|_| give_up(format!("`{url}` has an unusable {what}")))
    };
    setup(request.set_method(&Method::Post), "method")?;
    setup(request.set_scheme(Some(&scheme)), "scheme")?;
    setup(request.set_authority(Some(authority)), "host")?;
    setup(
        request.set_path_with_query(Some(if path.is_empty() { "/" } else { path })),
        "path",
    )?;
    let options = RequestOptions::new();
    // Both are optional for a host to honour; a refusal is not an error.
    let _ = options.set_connect_timeout(Some(TIMEOUT_NS));
    let _ = options.set_first_byte_timeout(Some(TIMEOUT_NS));

    let outgoing = request
        .body()
        .map_err(|_| give_up("the request has no body to write".into()))?;
    let pending = outgoing_handler::handle(request, Some(options))
        .map_err(|code| refused(url, authority, code))?;
    // A request the host refused (a host not granted) closes the body: the
    // answer below says why, so a failed write only matters without one.
    let written = write_body(outgoing, body.as_bytes());

    let response = loop {
        match pending.get() {
            Some(result) => break result,
            None => pending.subscribe().block(),
        }
    };
    let response = match response {
        Ok(Ok(response)) => response,
        Ok(Err(code)) => return Err(refused(url, authority, code)),
        Err(()) => return Err(NotifyError::Retry(format!("{url}: no answer"))),
    };
    if let Err(failed) = written {
        return Err(NotifyError::Retry(format!(
            "sending the body to {url} failed: {failed}"
        )));
    }
    let status = response.status();
    let excerpt = read_excerpt(&response);
    match crate::judge_status(status, url, &excerpt) {
        None => Ok(Delivered {
            status: Some(status),
            summary: excerpt,
        }),
        Some(error) => Err(error),
    }
}

/// Write the whole body and finish it.
fn write_body(outgoing: OutgoingBody, body: &[u8]) -> Result<(), String> {
    {
        let stream = outgoing
            .write()
            .map_err(|_| "the body stream is not available".to_string())?;
        for chunk in body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("{e:?}"))?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(|code| format!("{code:?}"))
}

/// Why a request got no answer: a host the operator did not grant fails
/// the delivery (retrying cannot help), anything else is worth a retry.
fn refused(url: &str, authority: &str, code: ErrorCode) -> NotifyError {
    match code {
        ErrorCode::HttpRequestDenied => give_up(format!(
            "the server refused to send to {authority}: it is not granted to plugin http-post; an operator grants it in the server's config ([plugins.http-post] http = [\"{host}\"])",
            host = authority.split(':').next().unwrap_or(authority)
        )),
        other => NotifyError::Retry(format!("POST {url} failed: {other:?}")),
    }
}

/// The first bytes of the answer, as text.
fn read_excerpt(response: &wasi::http::types::IncomingResponse) -> String {
    let Ok(body) = response.consume() else {
        return String::new();
    };
    let Ok(stream) = body.stream() else {
        return String::new();
    };
    let mut bytes = Vec::new();
    while bytes.len() < EXCERPT_BYTES {
        match stream.blocking_read((EXCERPT_BYTES - bytes.len()) as u64) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) | Err(StreamError::LastOperationFailed(_)) => break,
        }
    }
    drop(stream);
    String::from_utf8_lossy(&bytes).trim().to_string()
}
