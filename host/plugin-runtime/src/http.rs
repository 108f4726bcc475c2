//! `wasi:http` outgoing requests, for plugins granted the `http`
//! permission. A component that imports `wasi:http` without the grant is
//! refused at load; this gate is the per-request check: the first thing it
//! does is compare the request's host with the granted hosts.

use std::future::Future;
use std::sync::Arc;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::manifest::Permissions;

/// The hooks a plugin's HTTP requests go through.
pub struct HttpGate {
    pub plugin_id: String,
    pub granted: Arc<Permissions>,
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
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}
