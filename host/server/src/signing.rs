//! Each organization's signing key. The formats it signs in (cosign's
//! simple signing payload, DSSE envelopes) and the pushes beside the image
//! are `kiln-trust`'s `cosign`; what the server owns is the key.
//!
//! Every organization has an ECDSA P-256 key, made the first time it is
//! needed and sealed beside its secrets (`SecretStore::signing_key`), or
//! its own, kept in the credential-store plugin that keeps its secrets
//! (`signing/key`); no API reads it, `GET /v1/orgs/{org}/signing-key` gives its public half.
//! After a build pushes, the host signs the image as `cosign sign --key`
//! does and attaches its provenance (`crate::provenance`) as `cosign
//! attest` does, so `cosign verify --key`, `cosign verify-attestation
//! --key` and `kiln verify` accept them.

use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};

pub use kiln_trust::cosign::public_key_pem;

use crate::credentials::CredentialStores;
use crate::store::secrets::{SecretError, SecretStore};

/// Why an image could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("organization {org}'s signing key: {source}")]
    Key { org: String, source: SecretError },
    #[error("organization {org}'s credential store cannot give its signing key: {source}")]
    Store {
        org: String,
        source: crate::credentials::CredentialError,
    },
    #[error("organization {org}'s signing key is not usable: {message}")]
    BadKey { org: String, message: String },
    #[error("cannot attach it: {0}")]
    Push(#[from] kiln_trust::RegistryError),
}

/// `org`'s signing key: its own, when the credential-store plugin keeping
/// its secrets holds one ([`crate::credentials::SIGNING_KEY`]), else the
/// one Kiln made and sealed for it on first use.
pub async fn org_key(stores: &CredentialStores, org: &str) -> Result<SigningKey, SigningError> {
    let own = stores
        .own_signing_key(org)
        .await
        .map_err(|source| SigningError::Store {
            org: org.to_string(),
            source,
        })?;
    match own {
        Some(pem) => private_key(&pem).map_err(|message| SigningError::BadKey {
            org: org.to_string(),
            message: format!(
                "`{}` in its credential store `{}`: {message}",
                crate::credentials::SIGNING_KEY,
                stores.plugin_for(org).unwrap_or_default()
            ),
        }),
        None => local_key(stores.local(), org),
    }
}

fn private_key(pem: &[u8]) -> Result<SigningKey, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "it is not PEM text".to_string())?;
    kiln_trust::cosign::private_key_from_pem(text)
}

/// The key Kiln made for `org`, sealed in the local store.
fn local_key(secrets: &SecretStore, org: &str) -> Result<SigningKey, SigningError> {
    let der = secrets
        .signing_key(org, || {
            let key = new_key();
            key.to_pkcs8_der()
                .expect("a P-256 key encodes")
                .as_bytes()
                .to_vec()
        })
        .map_err(|source| SigningError::Key {
            org: org.to_string(),
            source,
        })?;
    SigningKey::from_pkcs8_der(&der).map_err(|e| SigningError::BadKey {
        org: org.to_string(),
        message: e.to_string(),
    })
}

fn new_key() -> SigningKey {
    use rand::RngCore;
    loop {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        // Nearly every 32 bytes is a valid scalar; the rest are drawn again.
        if let Ok(key) = SigningKey::from_bytes(&bytes.into()) {
            return key;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_org_keeps_one_key_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("db")).unwrap();
        let sealing =
            crate::store::secrets::SecretKey::load_or_create(&dir.path().join("key")).unwrap();
        let secrets = store.secrets(&sealing).unwrap();
        let first = local_key(&secrets, "acme").unwrap();
        let again = local_key(&secrets, "acme").unwrap();
        assert_eq!(public_key_pem(&first), public_key_pem(&again));
        let other = local_key(&secrets, "other").unwrap();
        assert_ne!(public_key_pem(&first), public_key_pem(&other));
        // Not among the organization's secrets.
        assert!(secrets.names("acme").unwrap().is_empty());
    }
}
