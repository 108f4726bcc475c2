//! `kiln-server`: the Kiln server (`kiln serve`), everything but the
//! command line and the wire types (`kiln-api`).
//!
//! A build flows one way through these modules:
//!
//! **[`api`] → [`store`] / [`scheduler`] → [`plugins`] → [`capabilities`] → [`engine`] / [`git`] → [`store`]**
//!
//! | module | owns |
//! |---|---|
//! | [`api`] | the hyper server: routing, bearer auth, log streaming; answers only with `kiln-api` types, converted from records in `api::views` |
//! | [`dashboard`] | the web dashboard's page, script and styles, embedded, under `/ui/`; it signs in through `api::session` and calls the REST API |
//! | [`grpc`] | the BuildService over gRPC (tonic, generated from `proto/`), health and reflection, on the API's listener: each method calls the function its REST route calls |
//! | [`store`] | sled: organizations and tokens, build records, the queue, log lines |
//! | [`scheduler`] | the queue's workers (one per engine slot): a build's seat on an engine, its pipeline (context source, then builder), timeouts, an engine lost mid-build, restart recovery; the one materialize step `wizard:detect` shares |
//! | [`context`] | the host's half of materializing a context: modes, links, `.dockerignore`, the Dockerfile |
//! | [`projects`] | projects: push deliveries (senders, signatures, payloads), branch/tag/path globs, tag templates |
//! | [`plugins`] | `kiln-plugin-runtime` (re-exported: manifests, grants, loading, the sandbox, one call path, the permission checks) plus the first-party plugins embedded by `build.rs` |
//! | [`capabilities`] | the runtime's capability traits implemented over the real parts: the build log as `LogSink`, Docker Engine and the registry as `Engine`, gix checkouts as `Git` (the runtime checked the permission before they run) |
//! | [`engine`] | bollard: BuildKit builds through the Docker daemon, progress rendering, push, image inspection; `engine::pool`: the engines builds are spread over (`[[engines]]`), their health, affinity and draining |
//! | [`git`] | gix: a mirror per repository, shallow fetches, credentials from the store, tree export into the context, the last build's context kept so the next writes only what changed |
//! | [`net`] | which addresses the host may reach on a tenant's behalf (no loopback, link-local or private networks unless the operator allows them) |
//! | [`gc`] | garbage collection by the `[retention]` rules: old records and logs, unreferenced uploads, idle git mirrors (with their kept contexts), stale plugin artifacts, leftovers; in the background and on `POST /v1/gc` |
//! | [`attest`] | attestor plugins' statements (the SBOM): the pushed image's filesystem rebuilt from its registry layers (whiteouts applied, escapes refused), read-only to each attestor |
//! | [`provenance`] | the SLSA v1 provenance statement (in-toto) of a pushed image: its request, source, plugins and run |
//! | [`signing`] | each organization's sealed ECDSA P-256 signing key; the images are signed and attested in cosign's formats by `kiln-trust` |
//! | [`webhooks`] | completion webhooks: build events queued durably, delivered signed (Standard Webhooks) with retries, SSRF-checked |
//! | [`memory`] | handing freed memory back to the OS once the server goes quiet after builds or connections end |
//! | [`metrics`] | counters and histograms for `GET /metrics` (Prometheus text) |
//! | [`credentials`] | which store keeps an organization's secrets: the encrypted local one, or a credential-store plugin |
//! | [`config`] | the settings `kiln serve` runs with |
//!
//! The API never touches the engine, and no plugin ever sees a credential or
//! a host path outside the directories preopened for its call.

pub mod api;
pub mod attest;
pub mod capabilities;
pub mod config;
pub mod context;
pub mod credentials;
pub mod dashboard;
pub mod engine;
pub mod gc;
pub mod git;
pub mod grpc;
pub mod memory;
pub mod metrics;
pub mod net;
pub mod plugins;
pub mod projects;
pub mod provenance;
pub mod scheduler;
pub mod signing;
pub mod store;
pub mod webhooks;

mod server;

pub use server::Server;
