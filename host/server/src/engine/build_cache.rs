//! The engine's build cache, kept under the operator's budget
//! (`retention.engine_build_cache_mib`). bollard 0.21 speaks API 1.53,
//! whose build-cache fields the Docker Engine 20.10 (API 1.41) here does
//! not have (`keep-storage` became `reserved-space`/`max-used-space`, and
//! `system/df`'s `BuildCache` list became a summary), so these two calls
//! are made directly, in the form every engine since 1.39 accepts.

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use super::{DockerEngine, EngineError};

/// What the engine's build cache holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildCacheUsage {
    /// Bytes of the records not shared with an image: what BuildKit's
    /// `keep-storage` counts and a prune can free (measured: with 5.5 MB
    /// shared, a prune to 4 MiB under the sum of every record freed
    /// nothing), so a budget is measured the way it is enforced.
    pub bytes: u64,
    /// Bytes of the records shared with the engine's images: they go
    /// only with those images.
    pub shared_bytes: u64,
    /// Records (layers, mounts, sources).
    pub records: u64,
}

/// Prunes one garbage collection asks an engine for, at most.
const PRUNE_PASSES: usize = 4;

impl DockerEngine {
    /// How much the engine's build cache holds.
    pub async fn build_cache_usage(&self) -> Result<BuildCacheUsage, EngineError> {
        // The daemon runs one `system/df` at a time and refuses a second
        // ("a disk usage operation is already running"): this process's
        // own readers (the pool's health checks, garbage collection) take
        // turns per engine.
        let turn = disk_usage_turn(&self.host);
        let _held = turn.lock().await;
        let answer = self.call_raw(hyper::Method::GET, "/system/df").await?;
        let records = answer["BuildCache"].as_array().cloned().unwrap_or_default();
        let size = |shared: bool| {
            records
                .iter()
                .filter(|r| r["Shared"].as_bool().unwrap_or(false) == shared)
                .filter_map(|r| r["Size"].as_u64())
                .sum()
        };
        Ok(BuildCacheUsage {
            bytes: size(false),
            shared_bytes: size(true),
            records: records.len() as u64,
        })
    }

    /// Prune the build cache down to `keep_bytes`, least recently used
    /// first (BuildKit's order; records in use stay); returns the bytes
    /// freed.
    ///
    /// BuildKit stops by its own count, which can leave the sum `system/df`
    /// reports (the figure operators see) a little over the budget (seen:
    /// 25 KB over 29 MiB with 4,600 records; 215 KB over 36 MiB beside an
    /// image's shared records): a few more passes then each ask for that
    /// much less, while they free anything.
    pub async fn prune_build_cache(&self, keep_bytes: u64) -> Result<u64, EngineError> {
        let mut freed = 0;
        let mut ask = keep_bytes;
        for _ in 0..PRUNE_PASSES {
            let this_pass = self.prune_build_cache_once(ask).await?;
            freed += this_pass;
            // Nothing freed: nothing more is prunable (or nothing was
            // over), and another `system/df` (slow over thousands of
            // records) would not change that.
            if this_pass == 0 {
                break;
            }
            let over = self
                .build_cache_usage()
                .await?
                .bytes
                .saturating_sub(keep_bytes);
            if over == 0 {
                break;
            }
            ask = ask.saturating_sub(over);
        }
        Ok(freed)
    }

    async fn prune_build_cache_once(&self, keep_bytes: u64) -> Result<u64, EngineError> {
        let answer = self
            .call_raw(
                hyper::Method::POST,
                &format!("/build/prune?all=true&keep-storage={keep_bytes}"),
            )
            .await?;
        Ok(answer["SpaceReclaimed"].as_u64().unwrap_or(0))
    }

    /// One request to the engine's API over a connection of its own;
    /// the answer as JSON.
    async fn call_raw(
        &self,
        method: hyper::Method,
        path: &str,
    ) -> Result<serde_json::Value, EngineError> {
        let fail = |message: String| EngineError::Api {
            host: self.host.clone(),
            message,
        };
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "docker")
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail(e.to_string()))?;
        let response = if let Some(socket) = self.host.strip_prefix("unix://") {
            let stream = tokio::net::UnixStream::connect(socket)
                .await
                .map_err(|e| fail(e.to_string()))?;
            send(TokioIo::new(stream), request).await
        } else {
            let address = self
                .host
                .strip_prefix("tcp://")
                .or_else(|| self.host.strip_prefix("http://"))
                .unwrap_or(&self.host)
                .trim_end_matches('/');
            let stream = tokio::net::TcpStream::connect(address)
                .await
                .map_err(|e| fail(e.to_string()))?;
            match &self.tls {
                Some(tls) => {
                    let (connector, name) =
                        tls_connector(tls, address).map_err(|e| fail(e.to_string()))?;
                    let stream = connector
                        .connect(name, stream)
                        .await
                        .map_err(|e| fail(format!("TLS: {e}")))?;
                    send(TokioIo::new(stream), request).await
                }
                None => send(TokioIo::new(stream), request).await,
            }
        }
        .map_err(fail)?;
        Ok(response)
    }
}

/// One lock per engine address for `system/df` in this process.
fn disk_usage_turn(host: &str) -> std::sync::Arc<tokio::sync::Mutex<()>> {
    static TURNS: std::sync::LazyLock<
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    > = std::sync::LazyLock::new(Default::default);
    TURNS
        .lock()
        .unwrap()
        .entry(host.to_string())
        .or_default()
        .clone()
}

/// A TLS client for an engine's `tcp://` address: the operator's CA is
/// the only root, this server's certificate its client identity (as
/// bollard's own connection over `connect_with_ssl`).
fn tls_connector(
    tls: &crate::config::EngineTls,
    address: &str,
) -> Result<
    (
        tokio_rustls::TlsConnector,
        rustls_pki_types::ServerName<'static>,
    ),
    String,
> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&read("CA", &tls.ca)?) {
        let cert = cert.map_err(|e| format!("the CA {} is not PEM: {e}", tls.ca.display()))?;
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    let chain = CertificateDer::pem_slice_iter(&read("certificate", &tls.cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate {} is not PEM: {e}", tls.cert.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&read("key", &tls.key)?)
        .map_err(|e| format!("the key {} is not PEM: {e}", tls.key.display()))?;
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .map_err(|e| e.to_string())?;
    let host = address
        .rsplit_once(':')
        .map_or(address, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host} is not a server name: {e}"))?;
    Ok((
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)),
        name,
    ))
}

async fn send<T>(io: T, request: hyper::Request<Empty<Bytes>>) -> Result<serde_json::Value, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("the answer is not JSON: {e}"))
}
