//! Issue 19: `kiln verify IMAGE [--key FILE]` checks an image's signature
//! and provenance against the real registry, with the server's key for the
//! organization (and the server confirming the build) or with a key file
//! alone, and refuses an image or a signature that was tampered with.

use std::process::{Command, Output};
use std::time::Duration;

use kiln_tests::*;
use kiln_trust::cosign;
use kiln_trust::registry::{Blob, Session};

fn kiln(server: &str, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["verify"])
        .args(args)
        .env("KILN_SERVER", server)
        .env("KILN_TOKEN", token)
        .output()
        .expect("run kiln")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `args` must fail, saying `expected`.
fn refused(output: Output, expected: &str) {
    assert!(!output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("verification failed") && stderr.contains(expected),
        "wanted {expected:?} in: {stderr}"
    );
}

#[tokio::test]
async fn issue_19_kiln_verify_accepts_a_signed_build_and_refuses_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let server = KilnProcess::spawn(env!("CARGO_BIN_EXE_kiln").as_ref(), dir.path(), &[]);
    let url = server.server_url().to_string();
    let name = unique_name("verified");
    let build_id = server.create_build(&hello_request(&name)).await;
    let build = server
        .wait_finished(&build_id, Duration::from_secs(180))
        .await;
    assert_eq!(build["status"], "BUILD_STATUS_SUCCEEDED", "{build:#}");
    let image = build["imageRefs"][0].as_str().unwrap().to_string();
    let digest = build["digest"].as_str().unwrap().to_string();
    let repository = format!("{REGISTRY}/default/{name}");

    // With the server: its key for the organization, and the build it names.
    let verified = kiln(&url, &server.token, &[&image]);
    assert!(verified.status.success(), "{}", text(&verified));
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(
        stdout.starts_with(&format!("Verified {repository}@{digest}\n")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("signs {repository}\n")),
        "{stdout}"
    );
    assert!(stdout.contains("organization default's key on"), "{stdout}");
    assert!(
        stdout.contains(&format!("build {build_id}"))
            && stdout.contains("built by    this server: #"),
        "{stdout}"
    );
    assert!(stdout.contains("kiln-plugin:buildkit@"), "{stdout}");
    // busybox has no package database: an SBOM of nothing, but an SBOM.
    assert!(
        stdout.contains("sbom        SPDX-2.3, 0 packages\n"),
        "{stdout}"
    );
    // The signature and the attestations, as OCI 1.1 referrers.
    assert!(
        stdout.contains("referrers   2 (application/vnd.dev.cosign.simplesigning.v1+json, application/vnd.dsse.envelope.v1+json)\n")
            || stdout.contains("referrers   2 (application/vnd.dsse.envelope.v1+json, application/vnd.dev.cosign.simplesigning.v1+json)\n"),
        "{stdout}"
    );
    let json = kiln(&url, &server.token, &["--output", "json", &image]);
    assert!(json.status.success(), "{}", text(&json));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["verified"], true);
    assert_eq!(report["digest"], digest.as_str());
    assert_eq!(report["build"]["buildId"], build_id.as_str());
    assert_eq!(report["provenance"]["invocationId"], build_id.as_str());

    // With a key file alone: no server is asked (this one is unreachable).
    let key = server.get("/v1/orgs/default/signing-key").await;
    assert_eq!(key.status, 200);
    let key_file = dir.path().join("default.pub");
    std::fs::write(&key_file, &key.body).unwrap();
    let key_arg = key_file.to_str().unwrap();
    let offline = kiln("http://127.0.0.1:9", "unused", &["--key", key_arg, &image]);
    assert!(offline.status.success(), "{}", text(&offline));
    assert!(String::from_utf8_lossy(&offline.stdout).contains(&format!("the key in {key_arg}")));

    // Another organization's key does not verify it, and that
    // organization's token cannot have the server vouch for it.
    let created = server
        .post_json("/v1/orgs", &serde_json::json!({"name": "verify-other"}))
        .await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let issued = server
        .post_json("/v1/orgs/verify-other/tokens", &serde_json::json!({}))
        .await;
    let other_token = issued.json()["token"].as_str().unwrap().to_string();
    let other = Api::new(&url, &other_token);
    let other_key = other.get("/v1/orgs/verify-other/signing-key").await;
    let other_file = dir.path().join("other.pub");
    std::fs::write(&other_file, &other_key.body).unwrap();
    refused(
        kiln(
            &url,
            &server.token,
            &["--key", other_file.to_str().unwrap(), &image],
        ),
        "verifies with the key",
    );
    refused(
        kiln(&url, &other_token, &[&image]),
        "does not have for your organization",
    );

    // A payload altered under the original signature.
    let (host, path) = repository.split_once('/').unwrap();
    let mut session = Session::new(host, path, None, "pull");
    let signatures = session
        .manifest(&cosign::signature_tag(&digest))
        .await
        .unwrap();
    let signature = signatures.manifest.layers[0].annotations[cosign::SIGNATURE_ANNOTATION].clone();
    let altered = Blob {
        media_type: cosign::PAYLOAD_MEDIA_TYPE,
        bytes: cosign::payload(&format!("{REGISTRY}/default/elsewhere"), &digest),
        annotations: [(cosign::SIGNATURE_ANNOTATION.to_string(), signature.clone())].into(),
    };
    cosign::push_one_layer(
        &repository,
        &cosign::signature_tag(&digest),
        altered,
        None,
        None,
    )
    .await
    .unwrap();
    refused(
        kiln(&url, &server.token, &["--key", key_arg, &image]),
        "no signature under",
    );
    // Put back, it verifies again.
    let original = Blob {
        media_type: cosign::PAYLOAD_MEDIA_TYPE,
        bytes: cosign::payload(&repository, &digest),
        annotations: [(cosign::SIGNATURE_ANNOTATION.to_string(), signature)].into(),
    };
    cosign::push_one_layer(
        &repository,
        &cosign::signature_tag(&digest),
        original,
        None,
        None,
    )
    .await
    .unwrap();
    let again = kiln(&url, &server.token, &["--key", key_arg, &image]);
    assert!(again.status.success(), "{}", text(&again));

    // Another image pushed under the same tag is not the signed one; the
    // signed one is still what its digest names.
    let (_, tag) = image.rsplit_once(':').unwrap();
    let impostor = Blob {
        media_type: "application/vnd.oci.image.layer.v1.tar",
        bytes: b"not what was built".to_vec(),
        annotations: Default::default(),
    };
    cosign::push_one_layer(&repository, tag, impostor, None, None)
        .await
        .unwrap();
    refused(kiln(&url, &server.token, &[&image]), "is not signed");
    let by_digest = format!("{repository}@{digest}");
    let pinned = kiln(&url, &server.token, &[&by_digest]);
    assert!(pinned.status.success(), "{}", text(&pinned));

    // Bad input says what is wrong.
    let bad = kiln(&url, &server.token, &["app:v1"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("name the registry too"),
        "{}",
        text(&bad)
    );
}
