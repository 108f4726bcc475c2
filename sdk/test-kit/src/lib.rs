//! `kiln-plugin-test`: test a Kiln plugin in the real host runtime — the
//! same wasmtime configuration, sandbox, limits and permission checks as
//! `kiln serve` — from an ordinary `cargo test` on the host.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kiln_plugin_test::HarnessError> {
//! use kiln_plugin_test::PluginHarness;
//!
//! // The plugin's directory: its plugin.toml and the component it names
//! // (build it first: cargo build --release --target wasm32-wasip2).
//! let harness = PluginHarness::load("path/to/my-source".as_ref())?;
//! let run = harness
//!     .materialize(&[("url", "my-source://example")], None)
//!     .await?;
//! assert!(run.context.path().join("Dockerfile").exists());
//! # Ok(()) }
//! ```
//!
//! The plugin is granted everything its manifest asks for, as with
//! `grant = "asked"`; its log lines are collected in [`Materialized::log`].

use std::path::Path;
use std::sync::{Arc, Mutex};

use kiln_server::capabilities::Capabilities;
use kiln_server::plugins::bindings::source::exports::kiln::plugin::source::{
    ContextInfo, SourceSpec,
};
use kiln_server::plugins::bindings::types::{KeyValue, PluginError};
use kiln_server::plugins::{PluginRuntime, Preopens};

/// Why a harness call failed.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("the plugin did not load: {0}")]
    Load(String),
    #[error("the plugin crashed or hit a limit: {0}")]
    Runtime(#[from] kiln_server::plugins::PluginError),
    #[error("the plugin returned an error: {0:?}")]
    Plugin(PluginError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A plugin loaded in a real host runtime.
pub struct PluginHarness {
    runtime: PluginRuntime,
    id: String,
}

/// What one `materialize` call produced.
pub struct Materialized {
    pub info: ContextInfo,
    /// The context directory the plugin filled; removed on drop.
    pub context: tempfile::TempDir,
    /// The plugin's log lines.
    pub log: Vec<String>,
}

impl PluginHarness {
    /// Load the plugin in `dir`, granting it what its manifest asks for.
    pub fn load(dir: &Path) -> Result<Self, HarnessError> {
        // Only this plugin: the harness tests it alone, under its own id.
        let mut runtime = PluginRuntime::new()?;
        let manifest = std::fs::read_to_string(dir.join("plugin.toml"))?;
        let id = kiln_server::plugins::manifest::Manifest::parse(&manifest)
            .map_err(|e| HarnessError::Load(e.to_string()))?
            .id;
        let grants = [(
            id.clone(),
            kiln_server::config::FileConfig::parse_grant("grant = \"asked\""),
        )]
        .into_iter()
        .collect();
        let id = runtime
            .load_one(dir, &grants)
            .map_err(|e| HarnessError::Load(e.message))?;
        Ok(PluginHarness { runtime, id })
    }

    /// The plugin's own description.
    pub async fn describe(&self) -> Result<String, HarnessError> {
        let plugin = self.runtime.plugin(&self.id).expect("loaded");
        Ok(self.runtime.describe(plugin).await?)
    }

    /// Call a context source's `materialize` with these options and, when
    /// given, this file staged as its input (`/input/<file name>`).
    pub async fn materialize(
        &self,
        options: &[(&str, &str)],
        input: Option<&Path>,
    ) -> Result<Materialized, HarnessError> {
        let plugin = self.runtime.plugin(&self.id).expect("loaded");
        let context = tempfile::tempdir()?;
        let staging = tempfile::tempdir()?;
        let input_path = match input {
            Some(file) => {
                let name = file.file_name().unwrap_or_default().to_owned();
                std::fs::copy(file, staging.path().join(&name))?;
                Some(format!("/input/{}", name.to_string_lossy()))
            }
            None => None,
        };
        let spec = SourceSpec {
            kind: plugin
                .manifest
                .kinds
                .context_source
                .first()
                .cloned()
                .unwrap_or_default(),
            input_path,
            options: options
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            max_unpacked_bytes: 1 << 30,
            max_entries: 100_000,
        };
        let preopens = Preopens {
            context: Some(context.path().to_path_buf()),
            context_writable: true,
            input: Some(staging.path().to_path_buf()),
            credentials: None,
        };
        let lines = Arc::new(Mutex::new(Vec::new()));
        let caps =
            Capabilities::new(&self.id, plugin.granted.clone(), None).with_log_sink(lines.clone());
        let info = self
            .runtime
            .materialize(plugin, caps, &preopens, &spec)
            .await?
            .map_err(HarnessError::Plugin)?;
        let log = lines.lock().unwrap().clone();
        Ok(Materialized { info, context, log })
    }
}
