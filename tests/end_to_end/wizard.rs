//! The Dockerfile wizard end to end: contexts without a Dockerfile are
//! detected, explained, generated and built — a static site, a shell app
//! and a Python app really run here, on base images made from Debian
//! packages (scripts/setup.sh) and named through the base-image config —
//! and `POST /v1/wizard:detect` answers without building, monorepos
//! included. (Every stack's generated Dockerfile is checked in
//! `plugins/wizard`'s own tests.)

use std::time::Duration;

use kiln_tests::git::{GitDaemon, RepoRoot};
use kiln_tests::*;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(180);

fn fixture(name: &str) -> std::path::PathBuf {
    workspace().join("examples/wizard").join(name)
}

/// A server whose wizard uses the base images scripts/setup.sh made.
pub(crate) async fn server() -> TestServer {
    TestServer::start_with(|config| {
        for (stack, image) in [
            ("static", format!("{REGISTRY}/base/static:1")),
            ("python", format!("{REGISTRY}/base/python:1")),
            ("shell", format!("{REGISTRY}/base/busybox:1")),
        ] {
            config.wizard_base_images.insert(stack.into(), image);
        }
    })
    .await
}

async fn build_dir(
    t: &TestServer,
    dir: &str,
    builder: Option<&str>,
) -> (serde_json::Value, String) {
    let mut request = json!({
        "name": unique_name(&format!("wizard-{dir}")),
        "zippedCode": base64(&zip_dir(&fixture(dir))),
        "noCache": true,
    });
    if let Some(builder) = builder {
        request["builder"] = json!(builder);
    }
    let id = t.create_build(&request).await;
    let record = t.wait_finished(&id, LIMIT).await;
    let log = t.log_text(&id).await;
    (record, log)
}

#[tokio::test]
async fn a_static_site_without_a_dockerfile_is_detected_built_and_served() {
    let t = server().await;
    let (record, log) = build_dir(&t, "static", None).await;
    assert_eq!(
        record["status"], "BUILD_STATUS_SUCCEEDED",
        "{record:#}\n{log}"
    );
    assert!(
        log.contains("no Dockerfile; the Dockerfile wizard takes over"),
        "{log}"
    );
    assert!(log.contains("wizard: detected static"), "{log}");
    assert_eq!(record["wizard"]["stack"], "static", "{record:#}");
    assert_eq!(record["wizard"]["generated"], true);
    assert!(record["wizard"]["reasons"][0]
        .as_str()
        .unwrap()
        .contains("index.html"));
    let page = serve_and_get(record["imageRefs"][0].as_str().unwrap(), 8080).await;
    assert!(
        page.contains("Hello from a wizard-built static site!"),
        "{page}"
    );
}

#[tokio::test]
async fn a_shell_app_and_a_python_app_build_and_run() {
    let t = server().await;
    let (record, log) = build_dir(&t, "shell", Some("wizard")).await;
    assert_eq!(
        record["status"], "BUILD_STATUS_SUCCEEDED",
        "{record:#}\n{log}"
    );
    assert_eq!(record["wizard"]["stack"], "shell");
    let output = run_image(record["imageRefs"][0].as_str().unwrap()).await;
    assert!(
        output.contains("Hello from a wizard-built shell app!"),
        "{output}"
    );

    let (record, log) = build_dir(&t, "python-stdlib", None).await;
    assert_eq!(
        record["status"], "BUILD_STATUS_SUCCEEDED",
        "{record:#}\n{log}"
    );
    assert_eq!(record["wizard"]["stack"], "python");
    assert_eq!(record["wizard"]["tool"], "stdlib");
    let page = serve_and_get(record["imageRefs"][0].as_str().unwrap(), 8000).await;
    assert!(
        page.contains("Hello from a wizard-built Python app!"),
        "{page}"
    );
}

#[tokio::test]
async fn nothing_to_detect_is_still_dockerfile_not_found() {
    let t = server().await;
    let (record, _) = build_dir(&t, "empty", None).await;
    assert_eq!(
        record["failure"]["reason"], "DOCKERFILE_NOT_FOUND",
        "{record:#}"
    );
    let message = record["failure"]["message"].as_str().unwrap();
    assert!(message.contains("wizard found nothing"), "{message}");
    assert!(message.contains("`Dockerfile` not found"), "{message}");
    assert!(message.contains("package.json"), "{message}");
}

#[tokio::test]
async fn detect_answers_without_building_and_lists_monorepo_projects() {
    let t = server().await;
    let answer = t
        .post_json(
            "/v1/wizard:detect",
            &json!({ "zippedCode": base64(&zip_dir(&fixture("monorepo-pnpm"))) }),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.error_message());
    let projects = answer.json()["projects"].as_array().unwrap().clone();
    let summary: Vec<(String, String)> = projects
        .iter()
        .map(|p| {
            (
                p["contextDir"].as_str().unwrap().to_string(),
                p["stack"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("".to_string(), "node".to_string()),
            ("packages/api".into(), "node".into()),
            ("packages/web".into(), "static".into())
        ]
    );
    assert!(projects[2]["dockerfile"]
        .as_str()
        .unwrap()
        .contains(&format!("FROM {REGISTRY}/base/static:1")));
    assert!(projects[0]["reasons"][1]
        .as_str()
        .unwrap()
        .contains("pnpm-lock.yaml"));
    // Nothing was built.
    let builds = t.get("/v1/builds").await.json();
    assert!(builds["builds"].as_array().unwrap().is_empty());

    // A sub-project is built by its contextDir: from the same zip ...
    let zipped = base64(&zip_dir(&fixture("monorepo-pnpm")));
    let id = t
        .create_build(&json!({
            "name": unique_name("wizard-mono-zip"),
            "zippedCode": zipped,
            "contextDir": "packages/web",
        }))
        .await;
    let record = t.wait_finished(&id, LIMIT).await;
    let log = t.log_text(&id).await;
    assert_eq!(
        record["status"], "BUILD_STATUS_SUCCEEDED",
        "{record:#}\n{log}"
    );
    assert_eq!(record["request"]["contextDir"], "packages/web");
    assert_eq!(record["wizard"]["stack"], "static", "{record:#}");
    assert!(
        log.contains("the directory packages/web is the build context"),
        "{log}"
    );
    let id = t
        .create_build(&json!({
            "name": unique_name("wizard-mono-zip"),
            "zippedCode": zipped,
            "contextDir": "packages/nope",
        }))
        .await;
    let record = t.wait_finished(&id, LIMIT).await;
    assert_eq!(
        record["failure"]["reason"], "CONTEXT_DIR_NOT_FOUND",
        "{record:#}"
    );
    let refused = t
        .post_json(
            "/v1/builds",
            &json!({"name": "x", "zippedCode": zipped, "contextDir": "../up"}),
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(refused.error_message().contains("contextDir"));

    // ... or from git.
    let root = RepoRoot::new();
    let repo = root.repo("mono");
    std::process::Command::new("cp")
        .args(["-r", &format!("{}/.", fixture("monorepo-pnpm").display())])
        .arg(&repo.path)
        .status()
        .unwrap();
    repo.commit("monorepo");
    let daemon = GitDaemon::start(&root).await;
    // Detection from git sees the repository as a build checks it out:
    // the same projects as the zip of the same tree.
    let from_git = t
        .post_json(
            "/v1/wizard:detect",
            &json!({"gitSource": {"url": daemon.url("mono")}}),
        )
        .await;
    assert_eq!(
        from_git.status,
        200,
        "{}",
        String::from_utf8_lossy(&from_git.body)
    );
    assert_eq!(
        from_git.json()["projects"],
        serde_json::Value::Array(projects.clone())
    );
    for (body, needle) in [
        (
            json!({"gitSource": {"url": daemon.url("missing")}}),
            "cannot be checked out",
        ),
        (
            json!({"gitSource": {"url": daemon.url("mono"), "reference": "no-such-branch"}}),
            "no-such-branch",
        ),
        (
            json!({"gitSource": {"url": daemon.url("mono")}, "contextId": "x"}),
            "exactly one context",
        ),
    ] {
        let refused = t.post_json("/v1/wizard:detect", &body).await;
        assert_eq!(refused.status, 400, "{body}");
        assert!(
            refused.error_message().contains(needle),
            "{}",
            refused.error_message()
        );
    }
    let id = t
        .create_build(&json!({
            "name": unique_name("wizard-mono"),
            "gitSource": { "url": daemon.url("mono"), "contextDir": "packages/web" },
        }))
        .await;
    let record = t.wait_finished(&id, LIMIT).await;
    assert_eq!(
        record["status"],
        "BUILD_STATUS_SUCCEEDED",
        "{record:#}\n{}",
        t.log_text(&id).await
    );
    assert_eq!(record["wizard"]["stack"], "static");

    for (body, needle) in [
        (json!({}), "exactly one context"),
        (
            json!({"zippedCode": base64(&zip_dir(&fixture("static"))), "path": "../x"}),
            "path",
        ),
        (json!({"zippedCode": "bm90IGEgemlw"}), "zip"),
        (json!({"contextId": "nope"}), "contextId"),
    ] {
        let answer = t.post_json("/v1/wizard:detect", &body).await;
        assert_eq!(answer.status, 400, "{body}");
        assert!(
            answer.error_message().contains(needle),
            "{}",
            answer.error_message()
        );
    }
}
