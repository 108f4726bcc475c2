//! `kiln-server`: the Kiln server (`kiln serve`), everything but the
//! command line and the wire types (`kiln-api`).
//!
//! A build flows one way through these modules:
//!
//! **[`api`] → [`store`] / [`scheduler`] → [`plugins`] → [`capabilities`] → [`engine`] / [`git`] → [`store`]**
//!
//! | module | owns |
//! |---|---|
//! | [`api`] | the hyper server: routing, bearer auth, JSON in and out, log streaming |
//! | [`store`] | sled: organizations and tokens, build records, the queue, log lines |
//! | [`scheduler`] | the queue's workers: a build's pipeline (context source, then builder), timeouts, restart recovery |
//! | [`context`] | the host's half of materializing a context: modes, links, `.dockerignore`, the Dockerfile |
//! | [`plugins`] | wasmtime: manifests, the engine and linker, one `InstancePre` per plugin, per-call stores with memory and time limits |
//! | [`capabilities`] | the host side of the WIT interfaces plugins import (`log`, `engine`), each checking its permission first |
//! | [`engine`] | bollard: BuildKit builds through the Docker daemon, progress rendering, push, image inspection |
//! | [`git`] | gix: a mirror per repository, shallow fetches, credentials from the store, tree export into the context |
//! | [`metrics`] | counters and histograms for `GET /metrics` (Prometheus text) |
//! | [`credentials`] | which store keeps an organization's secrets: the encrypted local one, or a credential-store plugin |
//! | [`config`] | the settings `kiln serve` runs with |
//!
//! The API never touches the engine, and no plugin ever sees a credential or
//! a host path outside the directories preopened for its call.

pub mod api;
pub mod capabilities;
pub mod config;
pub mod context;
pub mod credentials;
pub mod engine;
pub mod git;
pub mod metrics;
pub mod plugins;
pub mod scheduler;
pub mod store;

mod server;

pub use server::Server;
