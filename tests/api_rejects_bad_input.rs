//! Bad requests get a clear error and create nothing.

use hyper::{Method, StatusCode};
use kiln_tests::*;
use serde_json::json;

async fn assert_no_builds(t: &TestServer) {
    let list = t.get("/v1/builds").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json()["builds"], json!([]), "no record was created");
}

#[tokio::test]
async fn requests_without_a_valid_token_are_401() {
    let t = TestServer::start().await;
    let body = serde_json::to_vec(&hello_request("hello")).unwrap();
    for token in [None, Some("not-a-token"), Some("")] {
        let answer = t
            .request_as(token, Method::POST, "/v1/builds", Some(body.clone()))
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "token {token:?}");
        assert_eq!(answer.headers["www-authenticate"], "Bearer");
        assert!(
            answer.error_message().to_lowercase().contains("token")
                || answer.error_message().contains("Authorization"),
            "{}",
            answer.error_message()
        );
        let get = t.request_as(token, Method::GET, "/v1/builds", None).await;
        assert_eq!(get.status, StatusCode::UNAUTHORIZED);
    }
    assert_no_builds(&t).await;
}

#[tokio::test]
async fn malformed_and_invalid_requests_are_400_with_a_fix() {
    let t = TestServer::start().await;
    let valid = hello_request("hello");
    let with = |key: &str, value: serde_json::Value| {
        let mut body = valid.clone();
        body[key] = value;
        serde_json::to_vec(&body).unwrap()
    };
    let oversized_zip = {
        // Incompressible bytes, stored: a zip over 4 MiB packed.
        let mut noise = vec![0u8; (4 << 20) + 4096];
        let mut x: u64 = 0x9E3779B97F4A7C15;
        for byte in noise.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *byte = x as u8;
        }
        zip_entries(&[
            ("Dockerfile", b"FROM scratch\n", 0o644),
            ("noise.bin", &noise, 0o644),
        ])
    };
    assert!(oversized_zip.len() > 4 << 20);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "malformed JSON",
            b"{\"name\": \"hello\", ".to_vec(),
            "not a valid CreateBuild",
        ),
        (
            "unknown field",
            with("colour", json!("blue")),
            "unknown field `colour`",
        ),
        (
            "invalid tag",
            with("tags", json!(["ok", "not a tag!"])),
            "tag \"not a tag!\" is not valid",
        ),
        (
            "invalid name",
            with("name", json!("Hello World")),
            "not a valid image name",
        ),
        (
            "zippedCode over 4 MiB",
            with("zippedCode", json!(base64(&oversized_zip))),
            "limited to 4 MiB",
        ),
        (
            "not base64",
            with("zippedCode", json!("%%%")),
            "not valid base64",
        ),
        (
            "not a zip",
            with("zippedCode", json!(base64(b"plain text"))),
            "not a zip archive",
        ),
        (
            "dockerfile escaping",
            with("dockerfile", json!("../Dockerfile")),
            "inside the build context",
        ),
        (
            "no context",
            {
                let mut body = valid.clone();
                body.as_object_mut().unwrap().remove("zippedCode");
                serde_json::to_vec(&body).unwrap()
            },
            "give exactly one of",
        ),
        (
            "two contexts",
            with("contextId", json!("ctx-1")),
            "exactly one build context",
        ),
        (
            "unknown builder",
            with("builder", json!("nope")),
            "not available here",
        ),
        (
            "bad build arg",
            with("buildArgs", json!({"1BAD": "x"})),
            "build arg name",
        ),
        ("bad platform", with("platform", json!("amd64")), "os/arch"),
        (
            "bad profile",
            with("profile", json!("huge")),
            "not one of small, medium, large, xlarge",
        ),
    ];
    for (what, body, expected) in cases {
        let answer = t
            .request_as(
                Some(&t.token.clone()),
                Method::POST,
                "/v1/builds",
                Some(body),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        let message = answer.error_message();
        assert!(
            message.contains(expected),
            "{what}: {message:?} should contain {expected:?}"
        );
        assert_eq!(answer.json()["error"]["status"], "INVALID_ARGUMENT");
    }
    assert_no_builds(&t).await;
}

#[tokio::test]
async fn another_organizations_build_does_not_exist() {
    let t = TestServer::start().await;
    let build_id = t.create_build(&hello_request(&unique_name("mine"))).await;
    let other = t.server.create_org_with_token("other").unwrap();
    for path in [
        format!("/v1/builds/{build_id}"),
        format!("/v1/builds/{build_id}/logs?fromStart=true"),
    ] {
        let answer = t.request_as(Some(&other), Method::GET, &path, None).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
    }
    let cancel = t
        .request_as(
            Some(&other),
            Method::POST,
            &format!("/v1/builds/{build_id}:cancel"),
            None,
        )
        .await;
    assert_eq!(cancel.status, StatusCode::NOT_FOUND);
    let list = t
        .request_as(Some(&other), Method::GET, "/v1/builds", None)
        .await;
    assert_eq!(list.json()["builds"], json!([]));
    // The owner still sees it.
    assert_eq!(
        t.get(&format!("/v1/builds/{build_id}")).await.status,
        StatusCode::OK
    );
}
