//! The registry as builds see it: `kiln-trust`'s OCI client with the
//! organization's saved credentials, its failures as the build's. Builders
//! that push by themselves (Kaniko) are read back here: the digest, the
//! stored size and the layer count.

pub use kiln_trust::registry::{plain_http, without_tag, PushedImage};

use super::{BuildFailure, RegistryAuth};

/// Read `reference`'s manifest (the first platform's, for an index).
pub async fn manifest(
    reference: &str,
    auth: Option<&RegistryAuth>,
) -> Result<PushedImage, BuildFailure> {
    kiln_trust::registry::manifest(reference, auth.map(RegistryAuth::credentials))
        .await
        .map_err(|e| BuildFailure::engine(e.to_string()))
}
