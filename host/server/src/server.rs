//! Wiring: open the store, make sure the first organization exists, load
//! plugins, start the scheduler and the HTTP listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use http_body_util::Either;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::orgs::issue_token;
use crate::api::{routes, ApiState};
use crate::config::ServerConfig;
use crate::engine::pool::EnginePool;
use crate::plugins::{LoadOptions, PluginRuntime};
use crate::scheduler::Scheduler;
use crate::store::{LogHub, Org, Store};

/// The organization created on first start.
pub const DEFAULT_ORG: &str = "default";

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot use the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Secrets(#[from] crate::store::secrets::SecretError),
    #[error(transparent)]
    Plugins(#[from] crate::plugins::PluginError),
    #[error(transparent)]
    PluginSource(#[from] crate::plugins::remote::SourceError),
    #[error("the credential stores are misconfigured: {0}")]
    Credentials(String),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error("cannot use the TLS files ({cert}, {key}): {message}")]
    Tls {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    admin_token_path: PathBuf,
    stop: CancellationToken,
    scheduler: Scheduler,
    store: Store,
    gc: Arc<crate::gc::Collector>,
}

/// Write a file only its owner can read.
fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")
}

impl Server {
    /// Start serving. Returns once the listener is bound.
    pub async fn start(config: ServerConfig) -> Result<Server, StartError> {
        let data_err = |source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&config.data_dir).map_err(data_err)?;
        let store = Store::open(&config.data_dir.join("db"))?;

        let admin_token_path = config.data_dir.join("admin-token");
        let org = Org {
            name: DEFAULT_ORG.into(),
            create_time: Utc::now(),
            registry: None,
            sign_images: None,
        };
        if store.create_org(&org)? {
            let (token, _) = issue_token(&store, DEFAULT_ORG, true)?;
            write_private(&admin_token_path, &token).map_err(data_err)?;
            store.flush().await?;
            tracing::info!(path = %admin_token_path.display(), "created organization `default`; its token is in the file");
        }

        let mut runtime = PluginRuntime::load(LoadOptions {
            cache_dir: Some(config.data_dir.join("plugin-cache")),
            max_memory_mib: config.max_plugin_memory_mib,
            max_time_secs: config.max_plugin_time_secs,
            executor_image: Some(config.kaniko_image.clone()),
            ..crate::plugins::first_party(&config.plugin_dirs, &config.plugin_grants)
        })?;
        crate::plugins::remote::load_sources(
            &mut runtime,
            &config.plugin_sources,
            &config.plugin_grants,
            &config.data_dir.join("plugin-artifacts"),
        )
        .await?;
        let runtime = Arc::new(runtime);
        for plugin in runtime.plugins() {
            tracing::info!(
                id = %plugin.manifest.id,
                version = %plugin.manifest.version,
                origin = %plugin.origin,
                cached = plugin.from_cache,
                load_ms = plugin.load_time.as_secs_f64() * 1000.0,
                "plugin loaded"
            );
        }
        let engine_configs = match config.engines.is_empty() {
            true => vec![crate::config::EngineConfig::single(
                &config.docker_host,
                config.max_concurrent_builds,
            )],
            false => config.engines.clone(),
        };
        let engines = Arc::new(EnginePool::new(&engine_configs)?);
        engines.check_all(false).await;
        for engine in engines.views() {
            if let Some(error) = &engine.health_error {
                tracing::warn!(
                    engine = engine.name,
                    "{error}; it gets no builds until it answers"
                );
            }
            for builder in &engine.builders {
                if runtime.builder(builder).is_none() {
                    tracing::warn!(
                        engine = engine.name,
                        "[[engines]] builders names {builder:?}, which no plugin provides"
                    );
                }
            }
        }
        let secret_key = crate::store::secrets::SecretKey::load_or_create(&config.secret_key_file)?;
        let secrets = crate::credentials::CredentialStores::new(
            Arc::new(store.secrets(&secret_key)?),
            runtime.clone(),
            config.credential_orgs.clone(),
            config.credentials_dir.clone(),
        );
        secrets.check().map_err(StartError::Credentials)?;
        let hub = LogHub::new();
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let webhooks = crate::webhooks::Webhooks::new(
            store.clone(),
            secrets.clone(),
            runtime.clone(),
            metrics.clone(),
            crate::webhooks::WebhookSettings {
                public_url: config.public_url.clone(),
                ..config.webhooks.clone()
            },
        );
        let scheduler = Scheduler::start(crate::scheduler::Parts {
            store: store.clone(),
            hub: hub.clone(),
            runtime: runtime.clone(),
            engines: engines.clone(),
            config: config.clone(),
            metrics: metrics.clone(),
            secrets: secrets.clone(),
            webhooks: webhooks.clone(),
        })?;

        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
        let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
        let stop = CancellationToken::new();
        engines.start_health_checks(config.engine_health_interval, stop.clone());
        let gc = Arc::new(crate::gc::Collector::new(
            store.clone(),
            &config,
            runtime.clone(),
            metrics.clone(),
            engines.named_engines(),
        ));
        gc.start_background(stop.clone());
        tokio::spawn(webhooks.clone().run(stop.clone()));
        tokio::spawn(crate::memory::return_when_quiet(stop.clone()));
        let collector = gc.clone();
        let state = Arc::new(ApiState {
            store: store.clone(),
            hub,
            scheduler: scheduler.clone(),
            runtime,
            config,
            metrics,
            secrets,
            gc,
            webhooks,
            engines,
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        tokio::spawn(crate::api::projects::poll(state.clone(), stop.clone()));
        let grpc = crate::grpc::GrpcServices::new(state.clone()).await;
        tokio::spawn(accept_loop(listener, tls, state, grpc, stop.clone()));
        tracing::info!(%addr, scheme, "kiln is listening");
        Ok(Server {
            addr,
            admin_token_path,
            stop,
            scheduler,
            store,
            gc: collector,
        })
    }

    /// The garbage collector (to run one at a chosen time, in tests and tools).
    pub fn gc(&self) -> &Arc<crate::gc::Collector> {
        &self.gc
    }

    /// The address the API listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The file holding the `default` organization's token.
    pub fn admin_token_path(&self) -> &std::path::Path {
        &self.admin_token_path
    }

    /// The `default` organization's token, as written at first start.
    pub fn admin_token(&self) -> std::io::Result<String> {
        Ok(std::fs::read_to_string(&self.admin_token_path)?
            .trim()
            .to_string())
    }

    /// The store, for tools and tests (e.g. to add organizations).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Create an organization with a fresh token; returns the token.
    pub fn create_org_with_token(&self, name: &str) -> Result<String, crate::store::StoreError> {
        self.store.create_org(&Org {
            name: name.into(),
            create_time: Utc::now(),
            registry: None,
            sign_images: None,
        })?;
        Ok(issue_token(&self.store, name, false)?.0)
    }

    /// Stop accepting connections and builds.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.scheduler.shutdown();
        let _ = self.store.flush().await;
    }

    /// Serve until Ctrl-C or SIGTERM.
    pub async fn run_until_signal(self) {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

/// A TLS acceptor for the configured files, offering HTTP/2 and HTTP/1.1
/// by ALPN.
fn tls_acceptor(files: &crate::config::TlsFiles) -> Result<tokio_rustls::TlsAcceptor, StartError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let fail = |message: String| StartError::Tls {
        cert: files.cert.clone(),
        key: files.key.clone(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| fail(format!("the certificate file: {e}")))?;
    if chain.is_empty() {
        return Err(fail("the certificate file holds no PEM certificate".into()));
    }
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(|e| fail(format!("the key file: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| fail(format!("the key does not fit the certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// How long a client may take to finish its TLS handshake.
const TLS_HANDSHAKE_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<ApiState>,
    grpc: crate::grpc::GrpcServices,
    stop: CancellationToken,
) {
    let read_timeout = state.config.request_read_timeout;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // Answers go out as they are written: an HTTP/2 answer is several
        // small writes (headers, data, trailers), and Nagle's algorithm
        // held the last one for the client's delayed ACK — 40 ms on every
        // gRPC call.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, "cannot set TCP_NODELAY: {e}");
        }
        let state = state.clone();
        let grpc = grpc.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            // Told when the connection's first request begins (below).
            let first_request = Arc::new(tokio::sync::Notify::new());
            // gRPC (by its content type) and REST share the listener.
            let service = {
                let first_request = first_request.clone();
                service_fn(move |request| {
                    first_request.notify_one();
                    let state = state.clone();
                    let grpc = grpc.clone();
                    async move {
                        let response = if crate::grpc::is_grpc(&request) {
                            grpc.call(request).await.map(Either::Right)
                        } else {
                            routes::handle(state, request).await.map(Either::Left)
                        };
                        Ok::<_, std::convert::Infallible>(response)
                    }
                })
            };
            let stream = match tls {
                None => tokio_util::either::Either::Left(stream),
                Some(tls) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_LIMIT, tls.accept(stream)).await {
                        Ok(Ok(stream)) => tokio_util::either::Either::Right(stream),
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            // HTTP/1.1, or HTTP/2 (by ALPN under TLS, by prior knowledge without).
            let mut http = auto::Builder::new(TokioExecutor::new());
            // A client that sends its headers a byte at a time is closed
            // after the read timeout, as is a keep-alive connection idle
            // that long, instead of holding a descriptor forever (hyper
            // enforces neither without a timer). Bodies have their own
            // timeout, between chunks, where they are read.
            http.http1()
                .timer(TokioTimer::new())
                .header_read_timeout(read_timeout);
            let serving = http.serve_connection(TokioIo::new(stream), service);
            let mut serving = std::pin::pin!(serving);
            // hyper's header timeout starts once HTTP/1 is chosen, and
            // choosing waits for the client's first bytes with no limit: a
            // connection that sends nothing (or a few bytes) would stay.
            let served = tokio::select! {
                served = serving.as_mut() => served,
                _ = first_request.notified() => serving.await,
                _ = tokio::time::sleep(read_timeout) => {
                    tracing::debug!(%peer, "closing a connection that sent no request within the read timeout");
                    return;
                }
            };
            if let Err(e) = served {
                tracing::debug!("connection ended: {e}");
            }
            crate::memory::note_activity();
        });
    }
}
