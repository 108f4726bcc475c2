//! `http-archive-source`: a Kiln context source written the way a third
//! party would write one. A build with `contextUrl: "http://host/app.tar.gz"`
//! comes here; the archive is streamed over `wasi:http` (only to hosts the
//! operator granted: the host checks every request) straight into the
//! unpacker, never held whole in memory, with the same escape, link and
//! bomb checks as Kiln's own sources.

use std::io::{self, Read};
use std::path::Path;

use kiln_sdk::source::{ContextInfo, ContextSource, PluginError, SourceSpec};
use kiln_sdk::unpack::{context_info, Limits};
use wasi::http::outgoing_handler;
use wasi::http::types::{ErrorCode, Fields, IncomingBody, Method, OutgoingRequest, Scheme};
use wasi::io::streams::{InputStream, StreamError};

struct HttpArchive;

/// A response body as `std::io::Read`.
struct BodyReader {
    stream: InputStream,
    _body: IncomingBody,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.stream.blocking_read(buf.len() as u64) {
            Ok(chunk) => {
                buf[..chunk.len()].copy_from_slice(&chunk);
                Ok(chunk.len())
            }
            Err(StreamError::Closed) => Ok(0),
            Err(StreamError::LastOperationFailed(e)) => Err(io::Error::other(e.to_debug_string())),
        }
    }
}

fn invalid(message: String) -> PluginError {
    PluginError::InvalidInput(message)
}

/// GET `url`; the body as a reader.
fn get(url: &str) -> Result<BodyReader, PluginError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid(format!("`{url}` is not an http(s) URL")))?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => return Err(invalid(format!("scheme {other} is not http or https"))),
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let request = OutgoingRequest::new(Fields::new());
    let setup =
        |ok: Result<(), ()>, what: &str| ok.map_err(|_| invalid(format!("bad {what} in `{url}`")));
    setup(request.set_method(&Method::Get), "method")?;
    setup(request.set_scheme(Some(&scheme)), "scheme")?;
    setup(request.set_authority(Some(authority)), "host")?;
    setup(
        request.set_path_with_query(Some(if path.is_empty() { "/" } else { path })),
        "path",
    )?;
    let pending = outgoing_handler::handle(request, None)
        .map_err(|e| PluginError::Internal(format!("cannot send the request: {e:?}")))?;
    let response = loop {
        match pending.get() {
            Some(result) => break result,
            None => pending.subscribe().block(),
        }
    };
    let response = match response {
        Ok(Ok(response)) => response,
        Ok(Err(ErrorCode::HttpRequestDenied)) => {
            return Err(PluginError::Denied(format!(
                "the host refused the request to {authority}: this plugin is not granted http access to it"
            )))
        }
        Ok(Err(code)) => return Err(PluginError::Internal(format!("GET {url} failed: {code:?}"))),
        Err(()) => return Err(PluginError::Internal(format!("GET {url}: no response"))),
    };
    let status = response.status();
    if status != 200 {
        return Err(invalid(format!("GET {url} answered HTTP {status}")));
    }
    let body = response
        .consume()
        .map_err(|_| PluginError::Internal("the response has no body".into()))?;
    let stream = body
        .stream()
        .map_err(|_| PluginError::Internal("the response body cannot be read".into()))?;
    Ok(BodyReader {
        stream,
        _body: body,
    })
}

impl ContextSource for HttpArchive {
    fn materialize(spec: SourceSpec) -> Result<ContextInfo, PluginError> {
        let url = spec
            .options
            .iter()
            .find(|kv| kv.key == "url")
            .map(|kv| kv.value.clone())
            .ok_or_else(|| invalid("no contextUrl given".into()))?;
        kiln_sdk::log::info(&format!("http-archive-source: downloading {url}"));
        let body = get(&url)?;
        let limits = Limits {
            max_bytes: spec.max_unpacked_bytes,
            max_entries: spec.max_entries,
        };
        let unpacked = kiln_sdk::unpack::unpack_tar_gz(
            io::BufReader::with_capacity(256 * 1024, body),
            Path::new("/context"),
            limits,
        )?;
        Ok(context_info(unpacked, &url))
    }
}

kiln_sdk::export_context_source!(HttpArchive);
