//! The sandbox one call runs in: a fresh [`Store`] with the plugin's
//! memory cap, its wall-time budget (epoch interruption: a ticker thread
//! bumps the epoch every 10 ms and each store's callback yields to tokio
//! until the call's deadline, then traps), only the preopened directories
//! the call needs, no sockets, and stdout/stderr captured for the log.
//!
//! Time the plugin spends waiting inside a host function (a build in the
//! engine) extends the deadline: the budget limits the plugin's own code;
//! the embedder gives the work as a whole its own timeout.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::capabilities::{Capabilities, LogLevel, LogSink};
use crate::http;
use crate::runtime::{LoadedPlugin, PluginError, PluginRuntime};

/// Captured stdout+stderr per call.
pub(crate) const STDIO_CAPTURE_BYTES: usize = 64 * 1024;

/// Per-call memory cap that remembers whether it was hit, so the failure can
/// say so rather than show the guest's own confused allocation error.
struct MemoryCap {
    limit: usize,
    hit: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The data of one call's store.
pub struct PluginState {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    http_ctx: wasmtime_wasi_http::WasiHttpCtx,
    http_gate: http::HttpGate,
    memory: MemoryCap,
    deadline: Instant,
    pub caps: Capabilities,
}

impl PluginState {
    /// Give the plugin back time it spent waiting on the host.
    pub fn extend_deadline(&mut self, by: Duration) {
        self.deadline += by;
    }
}

impl wasmtime_wasi_http::WasiHttpView for PluginState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            hooks: &mut self.http_gate,
            table: &mut self.table,
            ctx: &mut self.http_ctx,
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Directories a call may see.
pub struct Preopens {
    /// Mounted at `/context`; none for calls that need no files.
    pub context: Option<PathBuf>,
    pub context_writable: bool,
    /// Mounted read-only at `/input`.
    pub input: Option<PathBuf>,
    /// Mounted read-only at `/credentials` (credential stores that read
    /// mounted files).
    pub credentials: Option<PathBuf>,
    /// Mounted read-only at `/rootfs`: an image's filesystem, for
    /// attestors.
    pub rootfs: Option<PathBuf>,
}

impl Preopens {
    /// No directories at all.
    pub fn none() -> Self {
        Preopens {
            context: None,
            context_writable: false,
            input: None,
            credentials: None,
            rootfs: None,
        }
    }
}

/// Stops the epoch ticker thread when the runtime goes away.
pub(crate) struct Ticker {
    pub(crate) stop: Arc<AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl PluginRuntime {
    pub(crate) fn new_store(
        &self,
        plugin: &LoadedPlugin,
        caps: Capabilities,
        preopens: &Preopens,
        stdio: &MemoryOutputPipe,
    ) -> Result<Store<PluginState>, PluginError> {
        let id = &plugin.manifest.id;
        let setup = |message: String| PluginError::Setup {
            id: id.clone(),
            message,
        };
        // Nothing is inherited: no environment, no arguments, no network
        // (the builder's defaults already refuse every socket address; this
        // says so), stdio captured for the build log.
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdio.clone())
            .stderr(stdio.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            // Plugins' file operations are small and many (an archive's
            // entries); doing them on the calling thread instead of a
            // blocking-pool hop per call is what makes unpacking fast.
            .allow_blocking_current_thread(true);
        for name in &plugin.granted.env {
            if let Ok(value) = std::env::var(name) {
                wasi.env(name, value);
            }
        }
        if let Some(context) = &preopens.context {
            let perms = if preopens.context_writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            wasi.preopened_dir(context, "/context", perms)
                .map_err(|e| setup(format!("cannot open the context directory: {e}")))?;
        }
        if let Some(input) = &preopens.input {
            wasi.preopened_dir(input, "/input", FsPerms::ReadOnly)
                .map_err(|e| setup(format!("cannot open the input directory: {e}")))?;
        }
        if let Some(credentials) = &preopens.credentials {
            wasi.preopened_dir(credentials, "/credentials", FsPerms::ReadOnly)
                .map_err(|e| setup(format!("cannot open the credentials directory: {e}")))?;
        }
        if let Some(rootfs) = &preopens.rootfs {
            wasi.preopened_dir(rootfs, "/rootfs", FsPerms::ReadOnly)
                .map_err(|e| setup(format!("cannot open the image's filesystem: {e}")))?;
        }
        let limits = &plugin.limits;
        let memory_mib = limits.memory_mib;
        let http_gate = http::HttpGate {
            plugin_id: id.clone(),
            granted: plugin.granted.clone(),
            secrets: caps.http_secrets.clone(),
        };
        let state = PluginState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            http_ctx: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_gate,
            memory: MemoryCap {
                limit: (memory_mib << 20) as usize,
                hit: false,
            },
            deadline: Instant::now() + Duration::from_secs(limits.time_secs),
            caps,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Ok(store)
    }

    /// Turn a trap into a failure that says what happened.
    pub(crate) fn explain(
        plugin: &LoadedPlugin,
        store: &Store<PluginState>,
        error: wasmtime::Error,
        stdio: &MemoryOutputPipe,
    ) -> PluginError {
        let id = plugin.manifest.id.clone();
        if store.data().memory.hit {
            return PluginError::OutOfMemory {
                id,
                limit_mib: plugin.limits.memory_mib,
            };
        }
        if matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            return PluginError::OutOfTime {
                id,
                limit_secs: plugin.limits.time_secs,
            };
        }
        let captured = String::from_utf8_lossy(&stdio.contents())
            .trim()
            .to_string();
        let mut message = error.to_string();
        if let Some(trap) = error.downcast_ref::<Trap>() {
            message = format!("{trap}");
        }
        if !captured.is_empty() {
            let tail: Vec<&str> = captured.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            message = format!("{message}; it printed: {}", tail.join(" / "));
        }
        PluginError::Trapped { id, message }
    }

    /// What the plugin printed goes where its log lines go: the build's
    /// log, or for calls outside a build (detect, credential stores) the
    /// operator's log at debug level, since a credential store's output is
    /// nobody else's business.
    pub(crate) fn forward_stdio(
        log: Option<&Arc<dyn LogSink>>,
        id: &str,
        stdio: &MemoryOutputPipe,
    ) {
        let captured = stdio.contents();
        for line in String::from_utf8_lossy(&captured).lines() {
            match log {
                Some(log) => log.write(id, LogLevel::Printed, line),
                None => tracing::debug!(plugin = %id, "{line}"),
            }
        }
    }
}
