//! Image signatures in cosign's key-based format.
//!
//! Every organization has an ECDSA P-256 key, made the first time it is
//! needed and sealed beside its secrets (`SecretStore::signing_key`); no
//! API reads it, `GET /v1/orgs/{org}/signing-key` gives its public half.
//! After a build pushes, the host signs the image as `cosign sign --key`
//! does, so `cosign verify --key` (or anything following cosign's
//! documented format) accepts it:
//!
//! * the payload is a *simple signing* document naming the repository and
//!   the manifest digest ([`payload`]);
//! * the signature is ECDSA over SHA-256 of the payload, ASN.1 DER, base64;
//! * both go to the image's repository under the tag `sha256-<hex>.sig`:
//!   an OCI manifest whose one layer is the payload
//!   (`application/vnd.dev.cosign.simplesigning.v1+json`) with the
//!   signature in its `dev.cosignproject.cosign/signature` annotation.
//!
//! Attestations (the SLSA provenance, `crate::provenance`) are in-toto
//! statements in DSSE envelopes signed with the same key (over DSSE's
//! pre-authentication encoding), pushed under `sha256-<hex>.att` as
//! `cosign attest` does, so `cosign verify-attestation --key` accepts them.

use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};

use crate::engine::registry::{self, Blob};
use crate::engine::RegistryAuth;
use crate::store::secrets::{SecretError, SecretStore};

/// The media type of a simple signing payload.
pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation carrying a payload's signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// Why an image could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("organization {org}'s signing key: {source}")]
    Key { org: String, source: SecretError },
    #[error("organization {org}'s stored signing key is not a P-256 key: {message}")]
    BadKey { org: String, message: String },
    #[error("cannot attach the signature: {0}")]
    Push(#[from] registry::PushError),
}

/// `org`'s signing key, made and sealed on first use.
pub fn org_key(secrets: &SecretStore, org: &str) -> Result<SigningKey, SigningError> {
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

/// The public key as PEM (SubjectPublicKeyInfo), what `cosign verify --key`
/// reads.
pub fn public_key_pem(key: &SigningKey) -> String {
    key.verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("a P-256 public key encodes")
}

/// The simple signing payload for `repository` (`host/path`, no tag) at
/// `digest`, as cosign writes it.
pub fn payload(repository: &str, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": null,
    }))
    .expect("the payload serializes")
}

/// `payload`'s signature: ECDSA P-256 over SHA-256, ASN.1 DER, base64.
pub fn sign(key: &SigningKey, payload: &[u8]) -> String {
    let signature: Signature = key.sign(payload);
    base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
}

/// The tag cosign keeps an image's signatures under.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replace(':', "-"))
}

/// What was attached to an image: where and its manifest digest.
#[derive(Debug, Clone)]
pub struct Attached {
    pub reference: String,
    pub digest: String,
}

/// Sign the image `repository@digest` with `key` and push the signature
/// beside it.
pub async fn attach_signature(
    key: &SigningKey,
    repository: &str,
    digest: &str,
    auth: Option<&RegistryAuth>,
) -> Result<Attached, SigningError> {
    let payload = payload(repository, digest);
    let signature = sign(key, &payload);
    let layer = Blob {
        media_type: PAYLOAD_MEDIA_TYPE,
        annotations: [(SIGNATURE_ANNOTATION.to_string(), signature)].into(),
        bytes: payload,
    };
    push_one_layer(repository, &signature_tag(digest), layer, auth).await
}

/// The media type of a DSSE envelope, as cosign attaches attestations.
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// An in-toto statement's payload type inside an envelope.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// DSSE's pre-authentication encoding: what is signed, so the payload
/// type cannot be swapped under a signature.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// An in-toto `statement` in a DSSE envelope signed with `key`.
pub fn envelope(key: &SigningKey, statement: &serde_json::Value) -> Vec<u8> {
    let payload = serde_json::to_vec(statement).expect("a statement serializes");
    let signature = sign(key, &pae(IN_TOTO_PAYLOAD_TYPE, &payload));
    serde_json::to_vec(&serde_json::json!({
        "payloadType": IN_TOTO_PAYLOAD_TYPE,
        "payload": base64::engine::general_purpose::STANDARD.encode(&payload),
        "signatures": [{"keyid": "", "sig": signature}],
    }))
    .expect("an envelope serializes")
}

/// The tag cosign keeps an image's attestations under.
pub fn attestation_tag(digest: &str) -> String {
    format!("{}.att", digest.replace(':', "-"))
}

/// Push a signed `envelope` (of a statement with `predicate_type`) beside
/// `repository@digest`, as `cosign attest` does: one DSSE layer under the
/// `sha256-<digest>.att` tag.
pub async fn attach_attestation(
    repository: &str,
    digest: &str,
    envelope: Vec<u8>,
    predicate_type: &str,
    auth: Option<&RegistryAuth>,
) -> Result<Attached, SigningError> {
    let layer = Blob {
        media_type: DSSE_MEDIA_TYPE,
        // cosign's attestation layers carry an empty signature annotation
        // (the signature is inside the envelope) and the predicate type.
        annotations: [
            (SIGNATURE_ANNOTATION.to_string(), String::new()),
            ("predicateType".to_string(), predicate_type.to_string()),
        ]
        .into(),
        bytes: envelope,
    };
    push_one_layer(repository, &attestation_tag(digest), layer, auth).await
}

/// Push `layer` as the one layer of an OCI manifest tagged `tag`, with the
/// config cosign writes for such images (the layer, uncompressed, is its
/// one diff).
async fn push_one_layer(
    repository: &str,
    tag: &str,
    layer: Blob,
    auth: Option<&RegistryAuth>,
) -> Result<Attached, SigningError> {
    let config = Blob {
        media_type: "application/vnd.oci.image.config.v1+json",
        annotations: Default::default(),
        bytes: serde_json::to_vec(&serde_json::json!({
            "architecture": "",
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [layer.digest()]},
            "config": {},
        }))
        .expect("the config serializes"),
    };
    let pushed = registry::push_manifest(repository, tag, &config, &[layer], auth).await?;
    Ok(Attached {
        reference: format!("{repository}:{tag}"),
        digest: pushed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier as _;
    use p256::ecdsa::VerifyingKey;
    use p256::pkcs8::DecodePublicKey;

    #[test]
    fn a_signature_verifies_with_the_published_key_and_not_for_other_bytes() {
        let key = new_key();
        let payload = payload("127.0.0.1:5000/acme/app", "sha256:abc");
        let signature = sign(&key, &payload);
        let pem = public_key_pem(&key);
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
        let public = VerifyingKey::from_public_key_pem(&pem).unwrap();
        let der = base64::engine::general_purpose::STANDARD
            .decode(signature)
            .unwrap();
        let signature = Signature::from_der(&der).unwrap();
        public.verify(&payload, &signature).unwrap();
        let other = payload_for_other_digest();
        assert!(public.verify(&other, &signature).is_err());
    }

    fn payload_for_other_digest() -> Vec<u8> {
        payload("127.0.0.1:5000/acme/app", "sha256:abd")
    }

    #[test]
    fn an_envelope_signs_the_pre_authentication_encoding() {
        let key = new_key();
        let statement = serde_json::json!({"_type": "https://in-toto.io/Statement/v1"});
        let envelope: serde_json::Value =
            serde_json::from_slice(&envelope(&key, &statement)).unwrap();
        assert_eq!(envelope["payloadType"], IN_TOTO_PAYLOAD_TYPE);
        let payload = base64::engine::general_purpose::STANDARD
            .decode(envelope["payload"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&payload).unwrap(),
            statement
        );
        let der = base64::engine::general_purpose::STANDARD
            .decode(envelope["signatures"][0]["sig"].as_str().unwrap())
            .unwrap();
        let signature = Signature::from_der(&der).unwrap();
        let public = *key.verifying_key();
        public
            .verify(&pae(IN_TOTO_PAYLOAD_TYPE, &payload), &signature)
            .unwrap();
        // Not over the bare payload: a verifier must use the PAE.
        assert!(public.verify(&payload, &signature).is_err());
        assert_eq!(pae("t", b"ab"), b"DSSEv1 1 t 2 ab".to_vec());
    }

    #[test]
    fn the_payload_and_tag_follow_cosign() {
        let payload: serde_json::Value =
            serde_json::from_slice(&payload("r.example/acme/app", "sha256:0123")).unwrap();
        assert_eq!(
            payload["critical"]["type"],
            "cosign container image signature"
        );
        assert_eq!(
            payload["critical"]["image"]["docker-manifest-digest"],
            "sha256:0123"
        );
        assert_eq!(
            payload["critical"]["identity"]["docker-reference"],
            "r.example/acme/app"
        );
        assert_eq!(signature_tag("sha256:0123"), "sha256-0123.sig");
    }

    #[test]
    fn an_org_keeps_one_key_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("db")).unwrap();
        let sealing =
            crate::store::secrets::SecretKey::load_or_create(&dir.path().join("key")).unwrap();
        let secrets = store.secrets(&sealing).unwrap();
        let first = org_key(&secrets, "acme").unwrap();
        let again = org_key(&secrets, "acme").unwrap();
        assert_eq!(public_key_pem(&first), public_key_pem(&again));
        let other = org_key(&secrets, "other").unwrap();
        assert_ne!(public_key_pem(&first), public_key_pem(&other));
        // Not among the organization's secrets.
        assert!(secrets.names("acme").unwrap().is_empty());
    }
}
