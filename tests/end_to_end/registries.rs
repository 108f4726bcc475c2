//! Per-organization registries (issue 16): an organization the operator
//! gave its own registry pushes there — to a second local registry behind
//! htpasswd auth — with its own credentials, and nowhere else.

use std::time::Duration;

use hyper::{Method, StatusCode};
use kiln_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(180);

async fn put(api: &Api, path: &str, body: &Value) -> Answer {
    api.request_as(
        Some(&api.token),
        Method::PUT,
        path,
        Some(serde_json::to_vec(body).unwrap()),
    )
    .await
}

#[tokio::test]
async fn issue_16_an_organizations_images_go_to_its_own_registry_with_its_credentials() {
    let t = TestServer::start().await;
    let own = TestRegistry::start(RegistryMode::BasicAuth).await;
    let org = unique_name("team").replace('_', "-");
    let team = t.as_token(&t.server.create_org_with_token(&org).unwrap());
    let path = format!("/v1/orgs/{org}/registry");
    let target = json!({"host": own.addr, "namespace": "team-a/images"});

    // Only the operator moves an organization; an unknown one is 404.
    assert_eq!(
        put(&team, &path, &target).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        put(&t, "/v1/orgs/no-such-org/registry", &target)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    for (bad, needle) in [
        (json!({"host": "bad host", "namespace": "x"}), "`host`"),
        (json!({"host": "a..b", "namespace": "x"}), "`host`"),
        (
            json!({"host": "r.example.com:99999", "namespace": "x"}),
            "`host`",
        ),
        (
            json!({"host": "r.example.com", "namespace": "Team"}),
            "`namespace`",
        ),
        (
            json!({"host": "r.example.com", "namespace": "a//b"}),
            "`namespace`",
        ),
        (json!({"host": "r.example.com"}), "namespace"),
        (
            json!({"host": "r.example.com", "namespace": "a", "tls": true}),
            "tls",
        ),
    ] {
        let answer = put(&t, &path, &bad).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            answer.error_message().contains(needle),
            "{bad}: {}",
            answer.error_message()
        );
    }
    let default_target = t.get(&path).await.json();
    assert_eq!(default_target, json!({"host": REGISTRY, "namespace": org}));
    let set = put(&t, &path, &target).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.error_message());
    assert_eq!(t.get(&path).await.json(), target);
    let orgs = t.get("/v1/orgs").await.json();
    let listed = orgs["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == org.as_str())
        .unwrap();
    assert_eq!(listed["registry"], target);
    t.assert_documented("Org", listed).await;

    // Without the organization's credential for that registry: refused.
    let name = unique_name("own-registry");
    let unauthorized = team.create_build(&hello_request(&name)).await;
    let record = team.wait_finished(&unauthorized, LIMIT).await;
    assert_eq!(record["status"], "BUILD_STATUS_FAILED", "{record:#}");
    assert_eq!(
        record["failure"]["reason"], "PUSH_UNAUTHORIZED",
        "{record:#}"
    );

    // With it: pushed there, under the namespace, and nowhere else.
    let saved = team
        .save_secrets(&json!({"registryCredentials": {own.addr.clone(): {"username": "kiln", "password": "secret"}}}))
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.error_message());
    let build_id = team.create_build(&hello_request(&name)).await;
    let record = team.wait_succeeded(&build_id, LIMIT).await;
    let image_ref = record["imageRefs"][0].as_str().unwrap();
    assert_eq!(
        image_ref,
        format!("{}/team-a/images/{name}:latest", own.addr)
    );
    let repository = format!("team-a/images/{name}");
    let (status, digest) =
        registry_manifest_at(&own.addr, Some(("kiln", "secret")), &repository, "latest").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(digest.as_deref(), record["digest"].as_str());
    let (anonymous, _) = registry_manifest_at(&own.addr, None, &repository, "latest").await;
    assert_eq!(anonymous, StatusCode::UNAUTHORIZED);
    let (status, _) = registry_manifest(&format!("{org}/{name}"), "latest").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "nothing in the server's registry"
    );

    // A private base in that registry is pulled with the same credential.
    let derived = team
        .create_build(&dockerfile_request(
            &unique_name("on-private-base"),
            &format!("FROM {image_ref}\nRUN echo derived > /derived.txt\n"),
        ))
        .await;
    let record = team.wait_succeeded(&derived, LIMIT).await;
    assert!(
        record["imageRefs"][0]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/team-a/images/", own.addr)),
        "{record:#}"
    );

    // Another organization still pushes to the server's registry.
    let other = t.create_build(&hello_request(&name)).await;
    let record = t.wait_succeeded(&other, LIMIT).await;
    assert_eq!(
        record["imageRefs"][0],
        format!("{REGISTRY}/default/{name}:latest")
    );
    let (status, _) = registry_manifest_at(
        &own.addr,
        Some(("kiln", "secret")),
        &format!("default/{name}"),
        "latest",
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "nothing of `default` in team-a's registry"
    );

    // Back to the server's registry: the next build goes there.
    let reset = t
        .request_as(Some(&t.token), Method::DELETE, &path, None)
        .await;
    assert_eq!(reset.status, StatusCode::NO_CONTENT);
    let back = team.create_build(&hello_request(&name)).await;
    let record = team.wait_succeeded(&back, LIMIT).await;
    assert_eq!(
        record["imageRefs"][0],
        format!("{REGISTRY}/{org}/{name}:latest")
    );
}
