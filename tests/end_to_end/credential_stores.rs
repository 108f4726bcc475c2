//! Per-organization credential stores: an organization the operator routes
//! to the first-party `file-credentials` plugin gets its secrets from a
//! mounted `<org>.json` (read on every use, read-only through the API);
//! every other organization keeps the encrypted local store.

use std::time::Duration;

use hyper::Method;
use kiln_tests::*;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(120);

fn write_org_file(dir: &std::path::Path, token: &str) {
    std::fs::write(
        dir.join("default.json"),
        serde_json::to_vec(&json!({
            "gitCredentials": { "*": { "username": "ci", "token": "git-token-from-file" } },
            "buildSecrets": { "API_TOKEN": token },
        }))
        .unwrap(),
    )
    .unwrap();
}

/// A server whose organization `default` keeps its secrets in
/// `file-credentials`, reading `dir` (mounted at /credentials).
async fn serve_default_from_file_credentials(dir: &std::path::Path) -> TestServer {
    let dir = dir.to_path_buf();
    TestServer::start_with(move |config| {
        config
            .credential_orgs
            .insert("default".into(), "file-credentials".into());
        config.credentials_dir = Some(dir);
    })
    .await
}

#[tokio::test]
async fn an_org_on_file_credentials_reads_its_mounted_file_and_cannot_write_it() {
    let mounted = tempfile::tempdir().unwrap();
    write_org_file(mounted.path(), "first-value-7d1e");
    let t = serve_default_from_file_credentials(mounted.path()).await;

    let listed = t.get("/v1/secrets").await;
    assert_eq!(listed.status, 200);
    let listed = listed.json();
    assert_eq!(listed["buildSecrets"]["API_TOKEN"], "***", "{listed:#}");
    assert_eq!(listed["gitCredentials"]["*"]["password"], "***");
    assert!(!listed.to_string().contains("first-value"));

    let refused = t
        .save_secrets(&json!({"buildSecrets": {"X": "y-value"}}))
        .await;
    assert_eq!(refused.status, 409);
    assert!(
        refused.error_message().contains("read-only"),
        "{}",
        refused.error_message()
    );

    // A build uses the file's value, masked; a rotated value is used by
    // the next build without a restart.
    let marker = unique_name("file-creds");
    let dockerfile = format!(
        "FROM {REGISTRY}/base/busybox:1\nARG API_TOKEN\nARG EXPECTED\nRUN echo \"{marker} got $API_TOKEN\" && test \"$API_TOKEN\" = \"$EXPECTED\"\n"
    );
    for expected in ["first-value-7d1e", "rotated-value-9a2c"] {
        write_org_file(mounted.path(), expected);
        let mut request = dockerfile_request(&unique_name("file-creds"), &dockerfile);
        request["secretBuildArgs"] = json!(["API_TOKEN"]);
        request["buildArgs"] = json!({ "EXPECTED": expected });
        request["noCache"] = json!(true);
        let id = t.create_build(&request).await;
        let record = t.wait_finished(&id, LIMIT).await;
        let log = t.log_text(&id).await;
        assert_eq!(
            record["status"], "BUILD_STATUS_SUCCEEDED",
            "{record:#}\n{log}"
        );
        assert!(log.contains(&format!("{marker} got ***")), "{log}");
        assert!(!log.contains(expected), "{log}");
    }

    // A failure quotes the failing step; the record masks the value too.
    let mut failing = dockerfile_request(
        &unique_name("file-creds"),
        &format!("FROM {REGISTRY}/base/busybox:1\nARG API_TOKEN\nRUN echo \"{marker} has $API_TOKEN\" && false\n"),
    );
    failing["secretBuildArgs"] = json!(["API_TOKEN"]);
    failing["noCache"] = json!(true);
    let id = t.create_build(&failing).await;
    let record = t.wait_finished(&id, LIMIT).await;
    assert_eq!(record["failure"]["reason"], "RUN_FAILED", "{record:#}");
    let text = record.to_string();
    assert!(text.contains(&format!("{marker} has ***")), "{text}");
    assert!(!text.contains("rotated-value-9a2c"), "{text}");

    // Another organization keeps the local, writable store.
    let other = t.server.create_org_with_token("other").unwrap();
    let saved = t
        .request_as(
            Some(&other),
            Method::PUT,
            "/v1/secrets",
            Some(serde_json::to_vec(&json!({"buildSecrets": {"X": "y-value"}})).unwrap()),
        )
        .await;
    assert_eq!(saved.status, 200, "{}", saved.error_message());
}

#[tokio::test]
async fn routing_an_org_to_a_plugin_that_is_not_a_store_stops_the_start() {
    let data = tempfile::tempdir().unwrap();
    let mut config = kiln_server::config::ServerConfig::new(data.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config
        .credential_orgs
        .insert("default".into(), "buildkit".into());
    let error = kiln_server::Server::start(config)
        .await
        .err()
        .expect("the start is refused")
        .to_string();
    assert!(error.contains("not a credential store"), "{error}");
}

#[tokio::test]
async fn issue_19_an_org_brings_its_own_signing_key_through_its_credential_store() {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    // The operator's key, made outside Kiln (as `openssl genpkey` would).
    let own = kiln_trust::SigningKey::from_bytes(&[0x5au8; 32].into()).unwrap();
    let private_pem = own.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let public_pem = kiln_trust::cosign::public_key_pem(&own);
    let mounted = tempfile::tempdir().unwrap();
    let write_key = |key: &str| {
        std::fs::write(
            mounted.path().join("default.json"),
            serde_json::to_vec(&json!({ "signingKey": key })).unwrap(),
        )
        .unwrap()
    };
    write_key(&private_pem);
    let t = serve_default_from_file_credentials(mounted.path()).await;

    // The published key is the organization's own, and its images are
    // signed with it: an implementation that is not Kiln's verifies them
    // with the key the operator holds.
    let published = t.get("/v1/orgs/default/signing-key").await;
    assert_eq!(published.status, 200, "{}", published.error_message());
    assert_eq!(std::str::from_utf8(&published.body).unwrap(), public_pem);
    let name = unique_name("own-key");
    let id = t.create_build(&hello_request(&name)).await;
    let build = t.wait_succeeded(&id, LIMIT).await;
    assert_eq!(build["attachments"][0]["kind"], "signature", "{build}");
    let digest = build["digest"].as_str().unwrap();
    let (verified, report) =
        crate::signing::verify(&format!("default/{name}"), digest, &public_pem);
    assert!(verified, "{report}");
    // Not a key that Kiln made: another organization's does not verify it.
    let other = t.server.create_org_with_token("own-key-other").unwrap();
    let other_key = t
        .as_token(&other)
        .get("/v1/orgs/own-key-other/signing-key")
        .await;
    assert_ne!(other_key.body, published.body);

    // A store whose key is not one says so (and not what it holds);
    // the next build is pushed unsigned, the log saying why.
    write_key("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n");
    let refused = t.get("/v1/orgs/default/signing-key").await;
    assert_eq!(refused.status, 409);
    let message = refused.error_message();
    assert!(
        message.contains("`signing/key` in its credential store `file-credentials`")
            && message.contains("not an ECDSA P-256 private key")
            && !message.contains("bm90IGEga2V5"),
        "{message}"
    );
    let id = t
        .create_build(&hello_request(&unique_name("own-key")))
        .await;
    let build = t.wait_succeeded(&id, LIMIT).await;
    assert!(build.get("attachments").is_none(), "{build}");
    let log = t.log_text(&id).await;
    assert!(log.contains("pushed without it"), "{log}");
}
