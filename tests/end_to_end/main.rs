//! Kiln end to end, against a real Docker Engine and registry: one test
//! binary, one module per area, so a clean build links the host into one
//! executable instead of one per file (each is ~120 MB; fourteen of them
//! filled a CI machine's disk). Tests of different modules run side by side:
//! a test that counts something engine-wide counts only what it made.

mod api_rejects_bad_input;
mod build_lifecycle;
mod builds_end_to_end;
mod container_runs;
mod credential_stores;
mod dashboard;
mod engine_pool;
mod failures_are_classified;
mod git_sources;
mod grpc;
mod hostile_plugins;
mod kaniko_builder;
mod organizations_take_turns;
mod projects;
mod registries;
mod retention;
mod sbom;
mod secrets;
mod signing;
mod uploaded_contexts;
mod webhooks;
mod wizard;
