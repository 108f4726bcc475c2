//! `kiln-trust`: what Kiln attaches to the images it pushes, and how anyone
//! checks it. The server signs and attests with it; `kiln verify` (and any
//! Rust program) verifies with it, needing nothing of the server.
//!
//! | module | owns |
//! |---|---|
//! | [`registry`] | a small OCI Distribution client: manifests and blobs read by digest and checked against it, small artifacts pushed, basic and bearer auth, plain HTTP only to loopback |
//! | [`cosign`] | cosign's key-based formats: the simple signing payload and its ECDSA P-256 signature under `sha256-<hex>.sig`, in-toto statements in DSSE envelopes under `sha256-<hex>.att` |
//! | [`artifact`] | plugins as Wasm OCI artifacts (`wkg`'s layout): published with their `plugin.toml` annotated and the publisher's signature, fetched against a sha256 pin and trusted keys |
//! | [`verify`] | checking an image with a trusted public key: a signature of its digest, every attestation signed and about this digest, the SLSA provenance and SBOM summarized |
//!
//! Flow: `artifact` → `verify` → `cosign` → `registry`. Making and sealing keys, and
//! writing the provenance statement, belong to the server (`kiln-server`'s
//! `signing` and `provenance`): they need its store and its records.

pub mod artifact;
pub mod cosign;
pub mod registry;
pub mod verify;

pub use p256::ecdsa::{SigningKey, VerifyingKey};
pub use registry::{Credentials, RegistryError};
pub use verify::{verify_image, SbomSummary, Verified, VerifyError};
