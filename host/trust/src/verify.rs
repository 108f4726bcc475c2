//! Checking an image the way `kiln verify` does: its signature, its
//! attestations and what they say about it, with a public key the caller
//! trusts. Everything is read from the registry by digest and checked
//! against that digest; nothing the registry says is believed unchecked.

use p256::ecdsa::VerifyingKey;
use serde_json::Value;

use crate::cosign::{self, EnvelopeError};
use crate::registry::{Credentials, Reference, RegistryError};

/// SLSA provenance v1.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// An SPDX document as an in-toto predicate.
pub const SPDX_PREDICATE: &str = "https://spdx.dev/Document";
/// A CycloneDX document as an in-toto predicate.
pub const CYCLONEDX_PREDICATE: &str = "https://cyclonedx.org/bom";

/// Signature payloads and envelopes are small; anything larger is not one
/// of Kiln's (nor cosign's) and is not read.
const ATTACHMENT_LIMIT: u64 = 16 << 20;

/// Why an image did not verify. Each names the image and says what to
/// look at.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{image} is not signed: the registry has nothing under {tag}; it was pushed by something other than Kiln, or signing is off for its organization (`kiln org signing ORG --on`)")]
    NotSigned { image: String, tag: String },
    #[error("{image}: no signature under {tag} verifies with the key ({checked} checked): it was signed with another key (which organization's key did you use?) or its payload was altered")]
    BadSignature {
        image: String,
        tag: String,
        checked: usize,
    },
    #[error("{image}: the signature is valid but signs {signed}, not this image")]
    SignsOtherImage { image: String, signed: String },
    #[error("{image} has no attestations (nothing under {tag}): its provenance cannot be checked")]
    NoAttestations { image: String, tag: String },
    #[error("{image}: the attestation layer {layer} is not trustworthy: {reason}")]
    BadAttestation {
        image: String,
        layer: String,
        reason: EnvelopeError,
    },
    #[error("{image}: the attestation {predicate_type} is about {subjects}, not this image")]
    AttestsOtherImage {
        image: String,
        predicate_type: String,
        subjects: String,
    },
    #[error("{image} has no SLSA provenance among its attestations ({found})")]
    NoProvenance { image: String, found: String },
}

/// What a verified image carries.
#[derive(Debug, Clone)]
pub struct Verified {
    /// `host/path@sha256:…`.
    pub image: String,
    pub digest: String,
    /// The reference the signature names (`docker-reference`).
    pub signed_identity: String,
    /// The SLSA provenance statement.
    pub provenance: Provenance,
    /// Every verified attestation's statement, the provenance included.
    pub attestations: Vec<Value>,
}

/// The facts of a provenance statement a person checks first.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    pub builder_id: String,
    pub build_type: String,
    /// The build's id on the server that built it.
    pub invocation_id: String,
    pub started_on: Option<String>,
    pub finished_on: Option<String>,
    /// `uri` and `kind:value` digests of each resolved dependency.
    pub dependencies: Vec<(String, Vec<String>)>,
}

impl Provenance {
    fn from_statement(statement: &Value) -> Self {
        let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
        let predicate = &statement["predicate"];
        let run = &predicate["runDetails"];
        let dependencies = predicate["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|dependency| {
                let digests = dependency["digest"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(kind, value)| format!("{kind}:{}", value.as_str().unwrap_or_default()))
                    .collect();
                (text(&dependency["uri"]), digests)
            })
            .collect();
        Provenance {
            builder_id: text(&run["builder"]["id"]),
            build_type: text(&predicate["buildDefinition"]["buildType"]),
            invocation_id: text(&run["metadata"]["invocationId"]),
            started_on: run["metadata"]["startedOn"].as_str().map(str::to_string),
            finished_on: run["metadata"]["finishedOn"].as_str().map(str::to_string),
            dependencies,
        }
    }
}

/// An SBOM attestation's summary: its format and packages per ecosystem
/// (the purl type: `deb`, `npm`, `cargo`…; `other` without a purl).
#[derive(Debug, Clone, PartialEq)]
pub struct SbomSummary {
    pub format: String,
    pub packages: usize,
    pub by_ecosystem: Vec<(String, usize)>,
}

impl Verified {
    /// The SBOM's summary, when an SPDX or CycloneDX attestation is attached.
    pub fn sbom(&self) -> Option<SbomSummary> {
        let statement = self.attestations.iter().find(|s| {
            matches!(
                s["predicateType"].as_str(),
                Some(SPDX_PREDICATE | CYCLONEDX_PREDICATE)
            )
        })?;
        let predicate = &statement["predicate"];
        let (format, purls): (String, Vec<Option<&str>>) =
            if statement["predicateType"] == SPDX_PREDICATE {
                let packages = predicate["packages"].as_array().map(Vec::as_slice);
                (
                    predicate["spdxVersion"]
                        .as_str()
                        .unwrap_or("SPDX")
                        .to_string(),
                    packages
                        .unwrap_or_default()
                        .iter()
                        // The image itself is the package the document
                        // describes, not one it contains.
                        .filter(|package| package["primaryPackagePurpose"] != "CONTAINER")
                        .map(|package| {
                            package["externalRefs"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .find(|r| r["referenceType"] == "purl")
                                .and_then(|r| r["referenceLocator"].as_str())
                        })
                        .collect(),
                )
            } else {
                let components = predicate["components"].as_array().map(Vec::as_slice);
                (
                    format!(
                        "CycloneDX-{}",
                        predicate["specVersion"].as_str().unwrap_or("?")
                    ),
                    components
                        .unwrap_or_default()
                        .iter()
                        .map(|component| component["purl"].as_str())
                        .collect(),
                )
            };
        let mut by_ecosystem = std::collections::BTreeMap::<String, usize>::new();
        for purl in &purls {
            let ecosystem = purl
                .and_then(|p| p.strip_prefix("pkg:"))
                .and_then(|p| p.split('/').next())
                .unwrap_or("other");
            *by_ecosystem.entry(ecosystem.to_string()).or_default() += 1;
        }
        Some(SbomSummary {
            format,
            packages: purls.len(),
            by_ecosystem: by_ecosystem.into_iter().collect(),
        })
    }
}

/// An image's digest and what is attached to it, read from the registry
/// (each blob checked against its digest) but not yet checked against a
/// key: [`Attachments::verify`] does that.
#[derive(Debug, Clone)]
pub struct Attachments {
    /// `host/path@sha256:…`.
    pub image: String,
    pub digest: String,
    /// Where the signatures and attestations are (`host/path:sha256-….sig`),
    /// and whether the registry has them.
    pub signature_tag: String,
    pub attestation_tag: String,
    /// Each simple signing payload and the signature annotated on it.
    pub signatures: Vec<(Vec<u8>, Option<String>)>,
    /// Each attestation layer's digest and its DSSE envelope; `None` when
    /// nothing is under the attestation tag.
    pub envelopes: Option<Vec<(String, Vec<u8>)>>,
}

/// Read `reference` (`host/path:tag` or `…@sha256:…`)'s digest and its
/// signatures and attestations.
pub async fn fetch(
    reference: &str,
    credentials: Option<Credentials<'_>>,
) -> Result<Attachments, VerifyError> {
    let parsed = Reference::parse(reference)?;
    let repository = parsed.repository();
    let mut session = parsed.pull_session(credentials);
    let digest = session.manifest(&parsed.wanted).await?.digest;
    let signature_tag = cosign::signature_tag(&digest);
    let attestation_tag = cosign::attestation_tag(&digest);
    let mut signatures = Vec::new();
    let signed = session.manifest_if_present(&signature_tag).await?;
    for layer in signed.iter().flat_map(|m| &m.manifest.layers) {
        if layer.media_type == cosign::PAYLOAD_MEDIA_TYPE {
            let payload = session.blob(&layer.digest, ATTACHMENT_LIMIT).await?;
            let signature = layer.annotations.get(cosign::SIGNATURE_ANNOTATION).cloned();
            signatures.push((payload, signature));
        }
    }
    let envelopes = match session.manifest_if_present(&attestation_tag).await? {
        None => None,
        Some(attested) => {
            let mut envelopes = Vec::new();
            for layer in &attested.manifest.layers {
                let bytes = session.blob(&layer.digest, ATTACHMENT_LIMIT).await?;
                envelopes.push((layer.digest.clone(), bytes));
            }
            Some(envelopes)
        }
    };
    Ok(Attachments {
        image: format!("{repository}@{digest}"),
        digest,
        signature_tag: format!("{repository}:{signature_tag}"),
        attestation_tag: format!("{repository}:{attestation_tag}"),
        signatures,
        envelopes,
    })
}

/// Verify `reference` with `key`: [`fetch`], then [`Attachments::verify`].
pub async fn verify_image(
    reference: &str,
    key: &VerifyingKey,
    credentials: Option<Credentials<'_>>,
) -> Result<Verified, VerifyError> {
    fetch(reference, credentials).await?.verify(key)
}

impl Attachments {
    /// The build id the provenance *claims* (unverified): only for asking a
    /// server which organization's key to check with, never to trust.
    pub fn claimed_build_id(&self) -> Option<String> {
        use base64::Engine as _;
        self.envelopes.iter().flatten().find_map(|(_, bytes)| {
            let envelope: Value = serde_json::from_slice(bytes).ok()?;
            let payload = base64::engine::general_purpose::STANDARD
                .decode(envelope["payload"].as_str()?)
                .ok()?;
            let statement: Value = serde_json::from_slice(&payload).ok()?;
            (statement["predicateType"] == SLSA_PROVENANCE_V1)
                .then(|| Provenance::from_statement(&statement).invocation_id)
        })
    }

    /// Whether anything is under the signature tag at all: what to say
    /// before looking for a key.
    pub fn ensure_signed(&self) -> Result<(), VerifyError> {
        if self.signatures.is_empty() {
            return Err(VerifyError::NotSigned {
                image: self.image.clone(),
                tag: self.signature_tag.clone(),
            });
        }
        Ok(())
    }

    /// Check everything with `key`: at least one signature is `key`'s and
    /// signs this digest; every attestation is `key`'s and about this
    /// digest; an SLSA provenance is among them.
    pub fn verify(&self, key: &VerifyingKey) -> Result<Verified, VerifyError> {
        let image = &self.image;
        let signed_identity = self.check_signatures(key)?;
        let envelopes = self
            .envelopes
            .as_ref()
            .ok_or_else(|| VerifyError::NoAttestations {
                image: image.clone(),
                tag: self.attestation_tag.clone(),
            })?;
        let hex = self.digest.trim_start_matches("sha256:");
        let mut attestations = Vec::new();
        for (layer, bytes) in envelopes {
            let statement = cosign::open_envelope(key, bytes).map_err(|reason| {
                VerifyError::BadAttestation {
                    image: image.clone(),
                    layer: layer.clone(),
                    reason,
                }
            })?;
            let subjects = statement["subject"].as_array().cloned().unwrap_or_default();
            if !subjects.iter().any(|s| s["digest"]["sha256"] == hex) {
                return Err(VerifyError::AttestsOtherImage {
                    image: image.clone(),
                    predicate_type: statement["predicateType"]
                        .as_str()
                        .unwrap_or("?")
                        .to_string(),
                    subjects: subjects
                        .iter()
                        .map(|s| {
                            format!("sha256:{}", s["digest"]["sha256"].as_str().unwrap_or("?"))
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            attestations.push(statement);
        }
        let provenance = attestations
            .iter()
            .find(|s| s["predicateType"] == SLSA_PROVENANCE_V1)
            .map(Provenance::from_statement)
            .ok_or_else(|| VerifyError::NoProvenance {
                image: image.clone(),
                found: attestations
                    .iter()
                    .map(|s| s["predicateType"].as_str().unwrap_or("?").to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        Ok(Verified {
            image: image.clone(),
            digest: self.digest.clone(),
            signed_identity,
            provenance,
            attestations,
        })
    }

    /// Check only the signature: one of them is `key`'s and signs this
    /// digest (what a plugin artifact's publisher is trusted by).
    pub fn verify_signature(&self, key: &VerifyingKey) -> Result<(), VerifyError> {
        self.check_signatures(key).map(drop)
    }

    /// At least one signature must be `key`'s and sign this digest;
    /// answers the identity it names.
    fn check_signatures(&self, key: &VerifyingKey) -> Result<String, VerifyError> {
        self.ensure_signed()?;
        let mut signs_other = None;
        for (payload, signature) in &self.signatures {
            let Some(signature) = signature else {
                continue;
            };
            if !cosign::signature_verifies(key, payload, signature) {
                continue;
            }
            let payload: Value = serde_json::from_slice(payload).unwrap_or_default();
            let critical = &payload["critical"];
            let signed = critical["image"]["docker-manifest-digest"]
                .as_str()
                .unwrap_or_default();
            if signed == self.digest && critical["type"] == "cosign container image signature" {
                return Ok(critical["identity"]["docker-reference"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string());
            }
            signs_other = Some(signed.to_string());
        }
        Err(match signs_other {
            Some(signed) => VerifyError::SignsOtherImage {
                image: self.image.clone(),
                signed,
            },
            None => VerifyError::BadSignature {
                image: self.image.clone(),
                tag: self.signature_tag.clone(),
                checked: self.signatures.len(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::cosign::tests::test_key;

    const DIGEST: &str = "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    /// What Kiln attaches to `DIGEST`, signed with `key`.
    fn attached(key: &p256::ecdsa::SigningKey) -> Attachments {
        let repository = "127.0.0.1:5000/acme/app";
        let payload = cosign::payload(repository, DIGEST);
        let signature = cosign::sign(key, &payload);
        let statement = json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": repository, "digest": {"sha256": DIGEST.trim_start_matches("sha256:")}}],
            "predicateType": SLSA_PROVENANCE_V1,
            "predicate": {"runDetails": {"builder": {"id": "kiln://node"}, "metadata": {"invocationId": "b-7"}}},
        });
        Attachments {
            image: format!("{repository}@{DIGEST}"),
            digest: DIGEST.into(),
            signature_tag: "sig".into(),
            attestation_tag: "att".into(),
            signatures: vec![(payload, Some(signature))],
            envelopes: Some(vec![(
                "sha256:layer".into(),
                cosign::envelope(key, &statement),
            )]),
        }
    }

    #[test]
    fn what_kiln_attaches_verifies_with_its_key_only() {
        let key = test_key(5);
        let attachments = attached(&key);
        let verified = attachments.verify(key.verifying_key()).unwrap();
        assert_eq!(verified.signed_identity, "127.0.0.1:5000/acme/app");
        assert_eq!(verified.provenance.invocation_id, "b-7");
        assert_eq!(attachments.claimed_build_id().as_deref(), Some("b-7"));
        let stranger = test_key(6);
        assert!(matches!(
            attachments.verify(stranger.verifying_key()),
            Err(VerifyError::BadSignature { checked: 1, .. })
        ));
    }

    #[test]
    fn tampering_with_any_part_fails_verification() {
        let key = test_key(5);
        let public = key.verifying_key();
        // A payload altered under its signature.
        let mut altered = attached(&key);
        altered.signatures[0].0 =
            cosign::payload("127.0.0.1:5000/acme/app", &DIGEST.replace("00", "11"));
        assert!(matches!(
            altered.verify(public),
            Err(VerifyError::BadSignature { .. })
        ));
        // A valid signature of another image, copied here.
        let mut copied = attached(&key);
        let other = DIGEST.replace("ff", "ee");
        let payload = cosign::payload("127.0.0.1:5000/acme/app", &other);
        copied.signatures = vec![(payload.clone(), Some(cosign::sign(&key, &payload)))];
        match copied.verify(public) {
            Err(VerifyError::SignsOtherImage { signed, .. }) => assert_eq!(signed, other),
            answer => panic!("{answer:?}"),
        }
        // No signature at all, or none annotated.
        let mut unsigned = attached(&key);
        unsigned.signatures.clear();
        assert!(matches!(
            unsigned.verify(public),
            Err(VerifyError::NotSigned { .. })
        ));
        let mut bare = attached(&key);
        bare.signatures[0].1 = None;
        assert!(matches!(
            bare.verify(public),
            Err(VerifyError::BadSignature { .. })
        ));
        // An attestation about another image, or an envelope altered.
        let mut elsewhere = attached(&key);
        let statement =
            json!({"subject": [{"digest": {"sha256": "ee"}}], "predicateType": SLSA_PROVENANCE_V1});
        elsewhere.envelopes = Some(vec![("l".into(), cosign::envelope(&key, &statement))]);
        assert!(matches!(
            elsewhere.verify(public),
            Err(VerifyError::AttestsOtherImage { .. })
        ));
        let mut forged = attached(&key);
        let envelopes = forged.envelopes.as_mut().unwrap();
        let mut envelope: Value = serde_json::from_slice(&envelopes[0].1).unwrap();
        use base64::Engine as _;
        envelope["payload"] = base64::engine::general_purpose::STANDARD
            .encode(serde_json::to_vec(&statement).unwrap())
            .into();
        envelopes[0].1 = serde_json::to_vec(&envelope).unwrap();
        assert!(matches!(
            forged.verify(public),
            Err(VerifyError::BadAttestation {
                reason: EnvelopeError::Unsigned,
                ..
            })
        ));
        // No attestations, or none of them provenance.
        let mut unattested = attached(&key);
        unattested.envelopes = None;
        assert!(matches!(
            unattested.verify(public),
            Err(VerifyError::NoAttestations { .. })
        ));
        let mut sbom_only = attached(&key);
        let statement = json!({"subject": [{"digest": {"sha256": DIGEST.trim_start_matches("sha256:")}}], "predicateType": SPDX_PREDICATE});
        sbom_only.envelopes = Some(vec![("l".into(), cosign::envelope(&key, &statement))]);
        match sbom_only.verify(public) {
            Err(VerifyError::NoProvenance { found, .. }) => assert_eq!(found, SPDX_PREDICATE),
            answer => panic!("{answer:?}"),
        }
    }

    #[test]
    fn the_provenance_summary_reads_slsa_v1() {
        let statement = json!({
            "predicateType": SLSA_PROVENANCE_V1,
            "predicate": {
                "buildDefinition": {
                    "buildType": "https://kiln.dev/provenance/dockerfile-build/v1",
                    "resolvedDependencies": [
                        {"uri": "git+https://git.example/app.git@main", "digest": {"gitCommit": "0123"}},
                        {"uri": "kiln-plugin:buildkit@0.1.0", "digest": {"sha256": "ab"}},
                    ],
                },
                "runDetails": {
                    "builder": {"id": "https://kiln.example"},
                    "metadata": {"invocationId": "b-1", "finishedOn": "2026-12-03T00:00:00Z"},
                },
            },
        });
        let provenance = Provenance::from_statement(&statement);
        assert_eq!(provenance.builder_id, "https://kiln.example");
        assert_eq!(provenance.invocation_id, "b-1");
        assert_eq!(provenance.started_on, None);
        assert_eq!(
            provenance.dependencies[0],
            (
                "git+https://git.example/app.git@main".to_string(),
                vec!["gitCommit:0123".to_string()]
            )
        );
    }

    #[test]
    fn an_sbom_is_summarized_per_ecosystem() {
        let purl =
            |p: &str| json!({"externalRefs": [{"referenceType": "purl", "referenceLocator": p}]});
        let verified = Verified {
            image: "r.example/app@sha256:00".into(),
            digest: "sha256:00".into(),
            signed_identity: "r.example/app".into(),
            provenance: Provenance::from_statement(&json!({})),
            attestations: vec![json!({
                "predicateType": SPDX_PREDICATE,
                "predicate": {"spdxVersion": "SPDX-2.3", "packages": [
                    purl("pkg:deb/debian/bash@5.2"), purl("pkg:deb/debian/zlib1g@1.3"),
                    purl("pkg:npm/left-pad@1.3.0"), json!({"name": "no purl"}),
                    json!({"name": "the image", "primaryPackagePurpose": "CONTAINER"}),
                ]},
            })],
        };
        let summary = verified.sbom().unwrap();
        assert_eq!(summary.format, "SPDX-2.3");
        assert_eq!(summary.packages, 4);
        assert_eq!(
            summary.by_ecosystem,
            vec![("deb".into(), 2), ("npm".into(), 1), ("other".into(), 1)]
        );
        let without = Verified {
            attestations: Vec::new(),
            ..verified
        };
        assert_eq!(without.sbom(), None);
    }
}
