//! Issue 19 (signatures and provenance): every pushed image is signed with
//! its organization's key in cosign's key-based format and carries a signed
//! SLSA v1 provenance statement, and both verify with an implementation
//! that is not Kiln's (Python `cryptography`,
//! tests/signing/verify_cosign_signature.py).

use std::time::Duration;

use kiln_tests::*;
use serde_json::json;

const CRYPTOGRAPHY: &[&str] = &["cryptography==50.0.2"];

/// Run the verifier for `repository@digest` with the PEM `key`.
pub(crate) fn verify(repository: &str, digest: &str, key: &str) -> (bool, serde_json::Value) {
    let python = python_venv("signing", CRYPTOGRAPHY);
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key.pem");
    std::fs::write(&key_file, key).unwrap();
    let output = std::process::Command::new(python)
        .arg(workspace().join("tests/signing/verify_cosign_signature.py"))
        .args([REGISTRY, repository, digest])
        .arg(&key_file)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.success(), report)
}

#[tokio::test]
async fn issue_19_pushed_images_carry_a_cosign_signature_that_verifies_elsewhere() {
    let t = TestServer::start().await;
    let secret = "provenance-must-not-show-this";
    let saved = t
        .save_secrets(&json!({"buildSecrets": {"SIGNING_TEST": secret}}))
        .await;
    assert_eq!(saved.status, 200);
    let name = unique_name("signed");
    let mut request = hello_request(&name);
    request["secrets"] = json!(["SIGNING_TEST"]);
    request["buildArgs"] = json!({"GREETING": "signed and attested"});
    let build_id = t.create_build(&request).await;
    let build = t.wait_succeeded(&build_id, Duration::from_secs(180)).await;
    let digest = build["digest"].as_str().unwrap().to_string();
    let repository = format!("default/{name}");
    let attachment = &build["attachments"][0];
    // The log says why an image went unsigned ("pushed without it").
    if attachment["kind"] != "signature" {
        let log = t.log_text(&build_id).await;
        panic!("the first attachment is not the signature: {build}\nthe build's log:\n{log}");
    }
    assert_eq!(
        attachment["reference"],
        format!("{REGISTRY}/{repository}:{}.sig", digest.replace(':', "-")).as_str()
    );
    // The attachment's digest is what the registry holds under the tag.
    let (status, pushed) =
        registry_manifest(&repository, &format!("{}.sig", digest.replace(':', "-"))).await;
    assert_eq!(status, 200);
    assert_eq!(pushed.as_deref(), attachment["digest"].as_str());
    assert!(t.log_text(&build_id).await.contains("signed "));

    // Both are OCI 1.1 referrers of the image too: the registry here
    // (Distribution 2.8) has no referrers API, so they are listed under
    // the referrers tag, and each names the image as its subject.
    let signature_digest = attachment["digest"].as_str().unwrap();
    let attestations_digest = build["attachments"][1]["digest"].as_str().unwrap();
    let key = t.get("/v1/orgs/default/signing-key").await;
    assert_eq!(key.status, 200);
    assert_eq!(key.headers["content-type"], "application/x-pem-file");
    let pem = String::from_utf8(key.body.to_vec()).unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    // The same key on every call (made once, kept sealed).
    assert_eq!(t.get("/v1/orgs/default/signing-key").await.body, key.body);
    assert_eq!(t.get("/v1/orgs/nobody/signing-key").await.status, 404);

    let (verified, report) = verify(&repository, &digest, &pem);
    assert!(verified, "{report}");
    assert_eq!(report["tampered_verified"], false, "{report}");
    assert_eq!(report["referrers_from"], "tag", "{report}");
    let referrers = report["referrers"].as_array().unwrap();
    for (digest, artifact_type) in [
        (
            signature_digest,
            "application/vnd.dev.cosign.simplesigning.v1+json",
        ),
        (attestations_digest, "application/vnd.dsse.envelope.v1+json"),
    ] {
        let found = referrers
            .iter()
            .find(|r| r["digest"] == digest)
            .unwrap_or_else(|| panic!("{digest} among the referrers: {report}"));
        assert_eq!(found["artifactType"], artifact_type, "{report}");
        assert_eq!(found["subject_matches"], true, "{report}");
    }
    assert_eq!(referrers.len(), 2, "{report}");

    // The provenance: a signed SLSA v1 statement about this digest, naming
    // the request (secrets by name only), the context's sha256 and the
    // plugins that built it.
    let provenance = &build["attachments"][1];
    assert_eq!(provenance["kind"], "provenance", "{build}");
    assert_eq!(
        provenance["reference"],
        format!("{REGISTRY}/{repository}:{}.att", digest.replace(':', "-")).as_str()
    );
    let attestation = &report["attestations"][0];
    assert_eq!(attestation["verified"], true, "{report}");
    assert_eq!(attestation["subject_matches"], true, "{report}");
    assert_eq!(
        attestation["predicateType"],
        "https://slsa.dev/provenance/v1"
    );
    let statement = &attestation["statement"];
    let definition = &statement["predicate"]["buildDefinition"];
    let parameters = &definition["externalParameters"];
    assert_eq!(parameters["name"], name.as_str());
    assert_eq!(
        parameters["request"]["buildArgs"]["GREETING"],
        "signed and attested"
    );
    assert_eq!(parameters["request"]["secrets"], json!(["SIGNING_TEST"]));
    assert!(
        !attestation["envelope"].as_str().unwrap().contains(secret)
            && !statement.to_string().contains(secret),
        "a secret value in the provenance"
    );
    let zip = zip_dir(&workspace().join("examples/hello"));
    let zip_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&zip));
    let dependencies = definition["resolvedDependencies"].as_array().unwrap();
    assert_eq!(
        dependencies[0]["digest"]["sha256"],
        zip_sha256.as_str(),
        "{statement}"
    );
    // The base image (`ARG BASE=…` / `FROM ${BASE}`) with the digest its
    // registry holds.
    let (_, base_digest) = registry_manifest("base/busybox", "1").await;
    let base = dependencies
        .iter()
        .find(|d| d["name"] == "base image")
        .unwrap_or_else(|| panic!("a base image in {statement}"));
    assert_eq!(
        base["uri"],
        format!("pkg:docker/{REGISTRY}/base/busybox@1").as_str()
    );
    assert_eq!(
        base["digest"]["sha256"],
        base_digest.unwrap().trim_start_matches("sha256:"),
        "{statement}"
    );
    let plugins = t.get("/v1/plugins").await.json();
    for id in ["inline-zip", "buildkit"] {
        let loaded = plugins["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .unwrap_or_else(|| panic!("{id} in {plugins}"));
        assert!(
            dependencies
                .iter()
                .any(|d| d["name"] == id && d["digest"]["sha256"] == loaded["sha256"]),
            "{id} with its sha256 in {statement}"
        );
    }
    assert_eq!(
        statement["predicate"]["runDetails"]["metadata"]["invocationId"],
        build_id.as_str()
    );

    // Another organization's key does not verify it, and that organization
    // cannot read this one's key.
    let other_token = t.server.create_org_with_token("signing-other").unwrap();
    let other = t.as_token(&other_token);
    assert_eq!(other.get("/v1/orgs/default/signing-key").await.status, 404);
    let other_key = other.get("/v1/orgs/signing-other/signing-key").await;
    assert_eq!(other_key.status, 200);
    assert_ne!(other_key.body, key.body);
    let (verified, report) = verify(
        &repository,
        &digest,
        std::str::from_utf8(&other_key.body).unwrap(),
    );
    assert!(!verified, "{report}");
    assert_eq!(
        report["failed"][0], "signature does not verify with the key",
        "{report}"
    );
}

#[tokio::test]
async fn issue_19_signing_can_be_turned_off() {
    let t = TestServer::start_with(|c| c.sign_images = false).await;
    let name = unique_name("unsigned");
    let build_id = t.create_build(&hello_request(&name)).await;
    let build = t.wait_succeeded(&build_id, Duration::from_secs(180)).await;
    assert!(build.get("attachments").is_none(), "{build}");
    let digest = build["digest"].as_str().unwrap();
    let (status, _) = registry_manifest(
        &format!("default/{name}"),
        &format!("{}.sig", digest.replace(':', "-")),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn issue_19_an_organization_can_turn_signing_off_for_itself() {
    let t = TestServer::start().await;
    let quiet_token = t.server.create_org_with_token("quiet").unwrap();
    let quiet = t.as_token(&quiet_token);
    assert_eq!(
        t.get("/v1/orgs/quiet/signing").await.json(),
        json!({"enabled": true})
    );
    let set = t
        .request_as(
            Some(&t.token),
            hyper::Method::PUT,
            "/v1/orgs/quiet/signing",
            Some(br#"{"enabled": false}"#.to_vec()),
        )
        .await;
    assert_eq!(set.status, 200, "{}", String::from_utf8_lossy(&set.body));
    assert_eq!(
        t.get("/v1/orgs/quiet/signing").await.json(),
        json!({"enabled": false})
    );
    // Only the admin token changes it; a bad body says what it should be.
    let refused = quiet
        .request_as(
            Some(&quiet_token),
            hyper::Method::PUT,
            "/v1/orgs/quiet/signing",
            Some(br#"{"enabled": true}"#.to_vec()),
        )
        .await;
    assert_eq!(refused.status, 403);
    let bad = t
        .request_as(
            Some(&t.token),
            hyper::Method::PUT,
            "/v1/orgs/quiet/signing",
            Some(br#"{"enabled": "no"}"#.to_vec()),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.error_message().contains("enabled"),
        "{}",
        bad.error_message()
    );

    let name = unique_name("quiet");
    let build_id = quiet.create_build(&hello_request(&name)).await;
    let build = quiet
        .wait_succeeded(&build_id, Duration::from_secs(180))
        .await;
    assert!(build.get("attachments").is_none(), "{build}");
    // The default organization is still signed.
    assert_eq!(
        t.get("/v1/orgs/default/signing").await.json(),
        json!({"enabled": true})
    );
    let signed = t.create_build(&hello_request(&unique_name("loud"))).await;
    let signed = t.wait_succeeded(&signed, Duration::from_secs(180)).await;
    assert_eq!(signed["attachments"][0]["kind"], "signature", "{signed}");
}

/// Issue 19's flake: a build pushes its signature and its attestations at
/// once, and on a registry without the referrers API each adds itself to
/// the subject's referrers index by reading, extending and writing it
/// back. Two such updates at once lost one entry (the signature, once in
/// CI). Eight referrers pushed at once must all be listed.
#[tokio::test]
async fn issue_19_referrers_pushed_at_once_are_all_listed() {
    use kiln_trust::registry::{push_manifest, referrers, Blob, NewManifest};
    let repository = format!("{REGISTRY}/issue19/race-{}", uuid::Uuid::new_v4().simple());
    let blob = |bytes: String| Blob {
        media_type: "application/vnd.oci.image.config.v1+json",
        bytes: bytes.into_bytes(),
        annotations: Default::default(),
    };
    let subject = NewManifest {
        config: blob(
            r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
                .into(),
        ),
        layers: Vec::new(),
        artifact_type: None,
        subject: None,
        annotations: Default::default(),
    };
    let subject = push_manifest(&repository, "v1", &subject, None)
        .await
        .unwrap();
    let pushes = (0..8).map(|i| {
        let repository = repository.clone();
        let subject = subject.digest.clone();
        async move {
            let referrer = NewManifest {
                config: blob(format!("{{\"referrer\":{i}}}")),
                layers: Vec::new(),
                artifact_type: Some(format!("application/vnd.kiln.test.{i}")),
                subject: Some(subject),
                annotations: Default::default(),
            };
            push_manifest(&repository, &format!("referrer-{i}"), &referrer, None)
                .await
                .unwrap()
        }
    });
    let pushed = futures_util::future::join_all(pushes).await;
    let listed = referrers(&format!("{repository}@{}", subject.digest), None)
        .await
        .unwrap();
    for referrer in &pushed {
        assert!(
            listed
                .iter()
                .any(|entry| entry["digest"] == referrer.digest),
            "{} missing from the referrers index: {listed:#?}",
            referrer.digest
        );
    }
    assert_eq!(listed.len(), 8, "{listed:#?}");
}
