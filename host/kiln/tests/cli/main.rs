//! The `kiln` command against a real server, engine and registry: builds,
//! organizations and tokens, a host killed mid-build, and `kiln verify`.
//! One test binary (each links the host, ~120 MB), one module per area.

mod cli_builds;
mod cli_manages_orgs_and_tokens;
mod malloc_arenas;
mod restart_recovers_builds;
mod tls;
mod verify;
