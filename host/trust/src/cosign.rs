//! cosign's key-based formats, both ways: signing and attaching (the
//! server), and checking (`kiln verify`, [`crate::verify`]).
//!
//! * A signature's payload is a *simple signing* document naming the
//!   repository and the manifest digest ([`payload`]); the signature is
//!   ECDSA P-256 over SHA-256 of the payload, ASN.1 DER, base64. Both go to
//!   the image's repository under the tag `sha256-<hex>.sig`: an OCI
//!   manifest whose layer is the payload
//!   (`application/vnd.dev.cosign.simplesigning.v1+json`) with the signature
//!   in its `dev.cosignproject.cosign/signature` annotation.
//! * An attestation is an in-toto statement in a DSSE envelope signed over
//!   DSSE's pre-authentication encoding, pushed under `sha256-<hex>.att` as
//!   `cosign attest` does.
//!
//! So `cosign verify --key` and `cosign verify-attestation --key` accept
//! what Kiln attaches.

use base64::Engine as _;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, LineEnding};

use crate::registry::{self, Blob, Credentials, RegistryError};

/// The media type of a simple signing payload.
pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation carrying a payload's signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The media type of a DSSE envelope, as cosign attaches attestations.
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// An in-toto statement's payload type inside an envelope.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The annotation naming an attestation layer's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The public key as PEM (SubjectPublicKeyInfo), what `cosign verify --key`
/// reads.
pub fn public_key_pem(key: &SigningKey) -> String {
    key.verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("a P-256 public key encodes")
}

/// A P-256 private key from PEM: PKCS#8 (`BEGIN PRIVATE KEY`, what
/// `openssl genpkey` writes) or SEC1 (`BEGIN EC PRIVATE KEY`).
pub fn private_key_from_pem(pem: &str) -> Result<SigningKey, String> {
    if let Ok(key) = SigningKey::from_pkcs8_pem(pem) {
        return Ok(key);
    }
    p256::SecretKey::from_sec1_pem(pem)
        .map(SigningKey::from)
        .map_err(|_| {
            "it is not an ECDSA P-256 private key in PEM (PKCS#8 `BEGIN PRIVATE KEY` or SEC1 `BEGIN EC PRIVATE KEY`); make one with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`".to_string()
        })
}

/// A private key from a PEM file ([`private_key_from_pem`]); the error
/// names the file.
pub fn private_key_from_file(path: &std::path::Path) -> Result<SigningKey, String> {
    private_key_from_pem(&read_key_file(path)?)
        .map_err(|e| format!("the key {}: {e}", path.display()))
}

/// A public key from a PEM file ([`public_key_from_pem`]); the error names
/// the file.
pub fn public_key_from_file(path: &std::path::Path) -> Result<VerifyingKey, String> {
    public_key_from_pem(&read_key_file(path)?)
        .map_err(|e| format!("the key {}: {e}", path.display()))
}

fn read_key_file(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the key {}: {e}", path.display()))
}

/// A public key from PEM (SubjectPublicKeyInfo, as cosign writes
/// `cosign.pub`).
pub fn public_key_from_pem(pem: &str) -> Result<VerifyingKey, String> {
    VerifyingKey::from_public_key_pem(pem.trim())
        .map_err(|e| format!("not a PEM ECDSA P-256 public key ({e})"))
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

/// `message`'s signature: ECDSA P-256 over SHA-256, ASN.1 DER, base64.
pub fn sign(key: &SigningKey, message: &[u8]) -> String {
    let signature: Signature = key.sign(message);
    BASE64.encode(signature.to_der().as_bytes())
}

/// Whether `signature` (base64 ASN.1 DER, as [`sign`] writes) is `key`'s
/// over `message`.
pub fn signature_verifies(key: &VerifyingKey, message: &[u8], signature: &str) -> bool {
    let Ok(der) = BASE64.decode(signature.trim()) else {
        return false;
    };
    Signature::from_der(&der).is_ok_and(|signature| key.verify(message, &signature).is_ok())
}

/// The tag cosign keeps an image's signatures under.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replace(':', "-"))
}

/// The tag cosign keeps an image's attestations under.
pub fn attestation_tag(digest: &str) -> String {
    format!("{}.att", digest.replace(':', "-"))
}

/// DSSE's pre-authentication encoding: what is signed, so the payload
/// type cannot be swapped under a signature.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
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
        "payload": BASE64.encode(&payload),
        "signatures": [{"keyid": "", "sig": signature}],
    }))
    .expect("an envelope serializes")
}

/// Why an envelope was not accepted.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("it is not a DSSE envelope: {0}")]
    Malformed(String),
    #[error("its payload type is {0:?}, not an in-toto statement")]
    PayloadType(String),
    #[error("no signature in it verifies with the key")]
    Unsigned,
}

/// The in-toto statement in `envelope`, when one of its signatures is
/// `key`'s over the pre-authentication encoding.
pub fn open_envelope(
    key: &VerifyingKey,
    envelope: &[u8],
) -> Result<serde_json::Value, EnvelopeError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Envelope {
        payload_type: String,
        payload: String,
        signatures: Vec<EnvelopeSignature>,
    }
    #[derive(serde::Deserialize)]
    struct EnvelopeSignature {
        sig: String,
    }
    let envelope: Envelope =
        serde_json::from_slice(envelope).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(EnvelopeError::PayloadType(envelope.payload_type));
    }
    let payload = BASE64
        .decode(&envelope.payload)
        .map_err(|e| EnvelopeError::Malformed(format!("its payload is not base64: {e}")))?;
    let signed = pae(&envelope.payload_type, &payload);
    if !envelope
        .signatures
        .iter()
        .any(|s| signature_verifies(key, &signed, &s.sig))
    {
        return Err(EnvelopeError::Unsigned);
    }
    serde_json::from_slice(&payload)
        .map_err(|e| EnvelopeError::Malformed(format!("its statement is not JSON: {e}")))
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
    credentials: Option<Credentials<'_>>,
) -> Result<Attached, RegistryError> {
    let payload = payload(repository, digest);
    let signature = sign(key, &payload);
    let layer = Blob {
        media_type: PAYLOAD_MEDIA_TYPE,
        annotations: [(SIGNATURE_ANNOTATION.to_string(), signature)].into(),
        bytes: payload,
    };
    push_one_layer(
        repository,
        &signature_tag(digest),
        layer,
        Some(digest),
        credentials,
    )
    .await
}

/// An attestation ready to attach: a signed DSSE envelope and the
/// predicate type of the statement inside.
pub struct SignedAttestation {
    pub envelope: Vec<u8>,
    pub predicate_type: String,
}

impl SignedAttestation {
    /// The layer it is attached as: its digest names it in the record.
    fn layer(&self) -> Blob {
        Blob {
            media_type: DSSE_MEDIA_TYPE,
            // cosign's attestation layers carry an empty signature
            // annotation (the signature is inside the envelope) and the
            // predicate type.
            annotations: [
                (SIGNATURE_ANNOTATION.to_string(), String::new()),
                (
                    PREDICATE_TYPE_ANNOTATION.to_string(),
                    self.predicate_type.clone(),
                ),
            ]
            .into(),
            bytes: self.envelope.clone(),
        }
    }
}

/// Push `attestations` beside `repository@digest`, as `cosign attest`
/// does: one DSSE layer each, under the `sha256-<digest>.att` tag.
pub async fn attach_attestations<'a>(
    repository: &str,
    digest: &str,
    attestations: impl IntoIterator<Item = &'a SignedAttestation>,
    credentials: Option<Credentials<'_>>,
) -> Result<Attached, RegistryError> {
    let layers = attestations
        .into_iter()
        .map(SignedAttestation::layer)
        .collect();
    push_layers(
        repository,
        &attestation_tag(digest),
        layers,
        Some(digest),
        credentials,
    )
    .await
}

/// Push `layer` as the one layer of an OCI manifest tagged `tag`.
pub async fn push_one_layer(
    repository: &str,
    tag: &str,
    layer: Blob,
    about: Option<&str>,
    credentials: Option<Credentials<'_>>,
) -> Result<Attached, RegistryError> {
    push_layers(repository, tag, vec![layer], about, credentials).await
}

/// Push `layers` as an OCI manifest tagged `tag`, with the config cosign
/// writes for such images (each layer, uncompressed, is one diff).
///
/// `about` is the digest of the image in `repository` they are attached
/// to: the manifest also names it as its `subject` (typed by its first
/// layer), so OCI 1.1 clients find it among the image's referrers as well
/// as cosign finds it by tag.
pub async fn push_layers(
    repository: &str,
    tag: &str,
    layers: Vec<Blob>,
    about: Option<&str>,
    credentials: Option<Credentials<'_>>,
) -> Result<Attached, RegistryError> {
    let artifact_type = about
        .and(layers.first())
        .map(|layer| layer.media_type.to_string());
    let config = Blob {
        media_type: "application/vnd.oci.image.config.v1+json",
        annotations: Default::default(),
        bytes: serde_json::to_vec(&serde_json::json!({
            "architecture": "",
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(Blob::digest).collect::<Vec<_>>()},
            "config": {},
        }))
        .expect("the config serializes"),
    };
    let manifest = registry::NewManifest {
        config,
        layers,
        artifact_type,
        subject: about.map(str::to_string),
        annotations: Default::default(),
    };
    let pushed = registry::push_manifest(repository, tag, &manifest, credentials).await?;
    Ok(Attached {
        reference: format!("{repository}:{tag}"),
        digest: pushed.digest,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh key (tests only: the server makes and seals its own).
    pub(crate) fn test_key(seed: u8) -> SigningKey {
        let mut bytes = [seed; 32];
        bytes[0] = 1;
        SigningKey::from_bytes(&bytes.into()).unwrap()
    }

    #[test]
    fn a_signature_verifies_with_the_published_key_and_not_for_other_bytes() {
        let key = test_key(7);
        let payload = payload("127.0.0.1:5000/acme/app", "sha256:abc");
        let signature = sign(&key, &payload);
        let pem = public_key_pem(&key);
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
        let public = public_key_from_pem(&pem).unwrap();
        assert!(signature_verifies(&public, &payload, &signature));
        let other = super::payload("127.0.0.1:5000/acme/app", "sha256:abd");
        assert!(!signature_verifies(&public, &other, &signature));
        let stranger = *test_key(8).verifying_key();
        assert!(!signature_verifies(&stranger, &payload, &signature));
        assert!(!signature_verifies(&public, &payload, "not base64!"));
        assert!(
            public_key_from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
                .is_err()
        );
    }

    #[test]
    fn an_envelope_signs_the_pre_authentication_encoding() {
        let key = test_key(3);
        let statement = serde_json::json!({"_type": "https://in-toto.io/Statement/v1"});
        let sealed = envelope(&key, &statement);
        let public = *key.verifying_key();
        assert_eq!(open_envelope(&public, &sealed).unwrap(), statement);
        assert_eq!(
            open_envelope(test_key(4).verifying_key(), &sealed),
            Err(EnvelopeError::Unsigned)
        );
        // The signature is over the PAE, not the bare payload.
        let mut parsed: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
        let payload = BASE64.decode(parsed["payload"].as_str().unwrap()).unwrap();
        parsed["signatures"][0]["sig"] = sign(&key, &payload).into();
        assert_eq!(
            open_envelope(&public, &serde_json::to_vec(&parsed).unwrap()),
            Err(EnvelopeError::Unsigned)
        );
        // Another payload type under the same signature is refused.
        parsed["payloadType"] = "text/plain".into();
        assert!(matches!(
            open_envelope(&public, &serde_json::to_vec(&parsed).unwrap()),
            Err(EnvelopeError::PayloadType(_))
        ));
        assert_eq!(pae("t", b"ab"), b"DSSEv1 1 t 2 ab".to_vec());
    }

    #[test]
    fn the_payload_and_tags_follow_cosign() {
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
        assert_eq!(attestation_tag("sha256:0123"), "sha256-0123.att");
    }
}
