//! The BuildService over gRPC, driven by a client that is not Kiln's:
//! Python grpcio with stubs generated from the published proto by
//! grpcio-tools (tests/grpc/build_service_client.py). What it saw is
//! compared here with what the REST API answers for the same builds.

use std::time::Duration;

use hyper::Method;
use kiln_tests::*;
use serde_json::{json, Value};

fn time(text: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
        .to_utc()
}

#[tokio::test]
async fn a_python_grpc_client_uses_every_rpc_with_the_rest_apis_rules() {
    let t = TestServer::start().await;
    let other_token = t.server.create_org_with_token("grpc-other").unwrap();
    let python = tokio::task::spawn_blocking(|| python_venv("grpc", GRPC_PYTHON_PACKAGES))
        .await
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(600),
        tokio::process::Command::new(python)
            .arg(workspace().join("tests/grpc/build_service_client.py"))
            .arg(t.server.addr().to_string())
            .arg(&t.token)
            .arg(&other_token)
            .arg(workspace())
            .arg(work.path())
            .output(),
    )
    .await
    .expect("the client finishes within 10 minutes")
    .unwrap();
    assert!(
        output.status.success(),
        "the Python client failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));

    // The followed log is the REST log, line for line.
    let hello = &report["hello"];
    let build_id = hello["build_id"].as_str().unwrap();
    let rest_log = t.log(build_id).await;
    let grpc_log = hello["lines"].as_array().unwrap();
    assert!(grpc_log.len() > 5, "{grpc_log:?}");
    assert_eq!(rest_log.len(), grpc_log.len());
    for (rest, grpc) in rest_log.iter().zip(grpc_log) {
        assert_eq!(rest["seq"], grpc["seq"]);
        assert_eq!(rest["stream"], grpc["stream"]);
        assert_eq!(rest["line"], grpc["line"]);
        assert_eq!(
            time(rest["time"].as_str().unwrap()),
            time(grpc["time"].as_str().unwrap())
        );
    }
    // The build is the REST build, and its image was pushed.
    let rest_build = t.build(build_id).await;
    assert_eq!(rest_build["status"], "BUILD_STATUS_SUCCEEDED");
    assert_eq!(rest_build["number"], hello["number"]);
    assert_eq!(rest_build["digest"], hello["digest"]);
    assert_eq!(rest_build["imageRefs"], hello["image_refs"]);
    assert_eq!(
        rest_build["metrics"]["durationMs"],
        hello["metrics"]["duration_ms"]
    );
    assert_eq!(rest_build["request"]["secrets"], json!(["GRPC_SECRET"]));
    let name = rest_build["name"].as_str().unwrap();
    let (status, digest) = registry_manifest(&format!("default/{name}"), "v1").await;
    assert_eq!(status, 200);
    assert_eq!(digest.as_deref(), hello["digest"].as_str());

    // The 100 MB upload is the context REST shows.
    let upload = &report["upload"];
    let context = t
        .get(&format!(
            "/v1/contexts/{}",
            upload["context_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(context.status, 200);
    assert_eq!(context.json()["sha256"], upload["sha256"]);
    assert_eq!(context.json()["sizeBytes"], upload["bytes"]);
    eprintln!(
        "gRPC upload: {} bytes in {:.2} s ({:.0} MB/s, the Python client's pace)",
        upload["bytes"],
        upload["secs"].as_f64().unwrap(),
        upload["bytes"].as_f64().unwrap() / upload["secs"].as_f64().unwrap() / 1e6
    );

    // Every refusal says what REST says for the same request.
    let rest_no_token = t.request_as(None, Method::GET, "/v1/builds", None).await;
    assert_eq!(rest_no_token.status, 401);
    assert_eq!(report["no_token"], rest_no_token.error_message().as_str());
    let bad = t.as_token("not-a-kiln-token");
    assert_eq!(
        report["bad_token"],
        bad.get("/v1/builds").await.error_message().as_str()
    );
    let other = t.as_token(&other_token);
    let rest_cross = other.get(&format!("/v1/builds/{build_id}")).await;
    assert_eq!(rest_cross.status, 404);
    assert_eq!(
        report["cross_org"]["get"],
        rest_cross.error_message().as_str()
    );
    assert_eq!(
        report["cross_org"]["get"],
        format!("build {build_id} not found").as_str()
    );
    assert_eq!(
        report["cross_org"]["missing"],
        "build no-such-build not found"
    );
    let zip = zip_dir(&workspace().join("examples/hello"));
    let rest_bad_name = t
        .post_json(
            "/v1/builds",
            &json!({"name": "Not A Name", "zippedCode": base64(&zip)}),
        )
        .await;
    assert_eq!(rest_bad_name.status, 400);
    assert_eq!(report["bad_name"], rest_bad_name.error_message().as_str());
    let rest_page = t.get("/v1/builds?pageSize=5000").await;
    assert_eq!(report["page_too_big"], rest_page.error_message().as_str());
    let cancelled = report["cancel"]["build_id"].as_str().unwrap();
    let rest_cancel = t
        .post_json(&format!("/v1/builds/{cancelled}:cancel"), &json!({}))
        .await;
    assert_eq!(rest_cancel.status, 409);
    assert_eq!(report["cancel_again"], rest_cancel.error_message().as_str());
    assert_eq!(t.build(cancelled).await["status"], "BUILD_STATUS_CANCELLED");
    let rest_short = t
        .save_secrets(&json!({"buildSecrets": {"SHORT": "ab"}}))
        .await;
    assert_eq!(rest_short.status, 400);
    assert_eq!(
        report["too_short_secret"],
        rest_short.error_message().as_str()
    );
    let zip_too_big = report["zip_too_big"].as_str().unwrap();
    assert!(
        zip_too_big.contains("inline contexts are limited to 4 MiB"),
        "{zip_too_big}"
    );
    let message_too_big = report["message_too_big"].as_str().unwrap();
    assert!(
        message_too_big.contains("the limit is: 8388608 bytes"),
        "{message_too_big}"
    );
    for field in ["two_contexts", "bad_tag", "empty_upload"] {
        assert!(
            !report[field].as_str().unwrap().is_empty(),
            "{field}: {report}"
        );
    }

    // Generic tools find the service by reflection.
    let methods: Vec<&str> = report["reflection"]["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(
        methods,
        [
            "CreateBuild",
            "UploadBuildContext",
            "StreamBuildLogs",
            "GetBuild",
            "ListBuilds",
            "CancelBuild",
            "SaveBuildSecrets",
            "GetBuildSecrets"
        ]
    );
    let services = report["reflection"]["services"].to_string();
    assert!(services.contains("grpc.health.v1.Health"), "{services}");
}

/// A gRPC log stream ends UNAUTHENTICATED when the token it was opened
/// with is revoked, as a REST stream ends with its `error` event.
#[tokio::test]
async fn issue_16_a_followed_grpc_log_ends_unauthenticated_when_its_token_is_revoked() {
    use futures_util::StreamExt;
    use kiln_server::grpc::proto;
    let t = TestServer::start().await;
    let issued = t
        .request_as(
            Some(&t.token),
            Method::POST,
            "/v1/orgs/default/tokens",
            None,
        )
        .await;
    assert_eq!(issued.status, 201);
    let issued = issued.json();
    let token = issued["token"].as_str().unwrap().to_string();
    let token_id = issued["tokenId"].as_str().unwrap();
    let dockerfile = format!(
        "FROM {REGISTRY}/base/busybox:1\nRUN for i in $(seq 1 120); do echo tick-$i; sleep 0.5; done\n"
    );
    let build_id = t
        .create_build(&dockerfile_request(
            &unique_name("grpc-revoke"),
            &dockerfile,
        ))
        .await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", t.server.addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = proto::build_service_client::BuildServiceClient::new(channel);
    let mut request = tonic::Request::new(proto::StreamBuildLogsRequest {
        build_id: build_id.clone(),
        from_start: true,
        after_seq: None,
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let mut lines = client
        .stream_build_logs(request)
        .await
        .unwrap()
        .into_inner();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let line = tokio::time::timeout_at(deadline, lines.next())
            .await
            .expect("ticks arrive")
            .expect("the stream is open")
            .unwrap();
        if line.line.contains("tick-2") {
            break;
        }
    }
    let revoked = t
        .request_as(
            Some(&t.token),
            Method::DELETE,
            &format!("/v1/orgs/default/tokens/{token_id}"),
            None,
        )
        .await;
    assert_eq!(revoked.status, 204);
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), lines.next())
            .await
            .expect("the stream ends soon after the revocation")
        {
            Some(Ok(_)) => continue,
            Some(Err(status)) => break status,
            None => panic!("the stream ended without saying why"),
        }
    };
    assert_eq!(ended.code(), tonic::Code::Unauthenticated);
    assert!(ended.message().contains("revoked"), "{}", ended.message());
    // The build goes on; only the stream ended.
    assert_eq!(t.build(&build_id).await["status"], "BUILD_STATUS_RUNNING");
    let cancelled = t
        .post_json(&format!("/v1/builds/{build_id}:cancel"), &json!({}))
        .await;
    assert_eq!(cancelled.status, 200);
}
