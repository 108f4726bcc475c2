//! `kiln-plugin-runtime`: the Kiln plugin runtime. It loads WebAssembly components
//! that implement a `kiln:plugin` world, runs each call in a fresh sandbox
//! under the plugin's limits, and answers the host interfaces plugins
//! import, checking permissions itself and delegating the effects to
//! capabilities the embedder implements. It depends on wasmtime and knows
//! nothing of Docker, git, storage or HTTP serving: `kiln-server` embeds it
//! with the real engine and git, `kiln-plugin-test` with recording fakes.
//!
//! What lives where, in the order a plugin meets it:
//!
//! * [`manifest`] — `plugin.toml`: id, kinds, the permissions it asks for, limits.
//! * [`grant`] — [`PluginGrant`]: what the operator grants (`[plugins.<id>]`).
//! * [`runtime`] — [`PluginRuntime`]: the wasmtime engine, loading
//!   (embedded plugins and plugin directories), the compile cache, the
//!   import check against the grant, one `InstancePre` per plugin.
//! * [`world`] — which world a component implements, matched on the
//!   contract's exact version ([`CONTRACT_VERSIONS`]: 0.1, 0.2 and 0.3).
//! * [`sandbox`] — one call's store: memory cap, time budget, preopens
//!   ([`Preopens`]), captured stdio, traps explained as [`PluginError`]s.
//! * [`calls`] — the single call path and one typed entry point per export
//!   (`materialize`, `build`, `detect`, credentials, `notify`, `attest`;
//!   `instantiate` alone).
//! * [`capabilities`] — what a call is lent ([`Capabilities`]), the
//!   traits the embedder implements ([`LogSink`], [`Engine`], [`Git`]) and
//!   the host functions that check permissions before calling them.
//! * [`http`] — the per-request gate for plugins granted `wasi:http` hosts.
//! * [`bindings`] — host bindings generated from the contract in `wit/`.
//!
//! The flow is one-way: an embedder calls [`PluginRuntime`]; a plugin's
//! import lands in [`capabilities`], which checks, then calls the embedder's
//! trait object. Nothing here calls back into the embedder otherwise.

pub mod bindings;
pub mod calls;
pub mod capabilities;
pub mod grant;
pub mod http;
pub mod manifest;
pub mod runtime;
pub mod sandbox;
pub mod world;

pub use calls::{CredentialAnswer, CredentialCall};
pub use capabilities::{
    Capabilities, ContainerHandle, Engine, EngineFailure, EngineLoan, Git, GitPermit, HostError,
    LogLevel, LogSink, RunningContainer,
};
pub use grant::PluginGrant;
pub use manifest::{Manifest, Permissions};
pub use runtime::{
    EffectiveLimits, EmbeddedPlugin, LoadError, LoadOptions, LoadedPlugin, PluginError,
    PluginRuntime,
};
pub use sandbox::{PluginState, Preopens};
pub use world::{World, CONTRACT_VERSIONS};
