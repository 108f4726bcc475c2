//! Builds from git: real repositories served over loopback by `git daemon`
//! (`git://`) and by `git http-backend` with basic auth (smart HTTP), fetched
//! by the host with gix into a per-organization mirror.

use std::time::Duration;

use kiln_tests::git::{git, GitDaemon, GitHttp, RepoRoot, WorkRepo};
use kiln_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(180);

/// A repository with a deep history, two branches, an annotated tag and a
/// sub-directory context. Answers (first commit, tagged commit).
fn sample_repo(root: &RepoRoot, name: &str) -> (WorkRepo, String, String) {
    let repo = root.repo(name);
    repo.write(
        "Dockerfile",
        "FROM local/busybox:1\nCOPY message.txt /message.txt\nRUN cat /message.txt && echo built\n",
    );
    // Each repository's content is its own: BuildKit shares identical
    // steps that run at the same time, output and all, across builds.
    let unique = |text: &str| format!("{text} ({name})\n");
    repo.write("message.txt", &unique("message-0 on main"));
    let first = repo.commit("first");
    // A deep history: a shallow fetch must not bring it.
    for i in 1..=60 {
        repo.write("history.txt", &format!("line {i}\n"));
        repo.commit(&format!("history {i}"));
    }
    repo.write("message.txt", &unique("tagged message"));
    let tagged = repo.commit("release");
    repo.run(&["tag", "-a", "v1.0", "-m", "release 1.0"]);
    repo.write("message.txt", &unique("main message"));
    repo.write(
        "services/api/Dockerfile",
        "FROM local/busybox:1\nCOPY api.txt /api.txt\nRUN cat /api.txt && echo built\n",
    );
    repo.write("services/api/api.txt", &unique("api service context"));
    repo.commit("main tip");
    repo.run(&["checkout", "-q", "-b", "feature"]);
    repo.write("message.txt", &unique("feature message"));
    repo.commit("feature work");
    repo.run(&["checkout", "-q", "main"]);
    (repo, first, tagged)
}

fn git_build(name: &str, source: Value) -> Value {
    json!({ "name": name, "gitSource": source, "noCache": true })
}

async fn build_ok(t: &TestServer, body: &Value) -> (Value, String) {
    let id = t.create_build(body).await;
    let record = t.wait_finished(&id, LIMIT).await;
    let log = t.log_text(&id).await;
    assert_eq!(
        record["status"], "BUILD_STATUS_SUCCEEDED",
        "{record:#}\n{log}"
    );
    (record, log)
}

async fn build_failed(t: &TestServer, body: &Value, reason: &str) -> (Value, String) {
    let id = t.create_build(body).await;
    let record = t.wait_finished(&id, LIMIT).await;
    let log = t.log_text(&id).await;
    assert_eq!(record["status"], "BUILD_STATUS_FAILED", "{record:#}\n{log}");
    assert_eq!(record["failure"]["reason"], reason, "{record:#}\n{log}");
    (record, log)
}

/// The commits a mirror holds, counted by git itself.
fn mirror_commit_count(t: &TestServer, url: &str) -> usize {
    let mirror = kiln_server::git::GitFetcher::new(t.data_dir.path(), Default::default())
        .mirror_path("default", url);
    git(
        &mirror,
        &["rev-list", "--all", "--count", "--no-object-names"],
    )
    .parse()
    .unwrap()
}

async fn image_labels(image: &str) -> std::collections::HashMap<String, String> {
    pull(image).await;
    docker()
        .inspect_image(image)
        .await
        .unwrap()
        .config
        .and_then(|c| c.labels)
        .unwrap_or_default()
}

#[tokio::test]
async fn branches_tags_commits_and_subdirectories_build_from_git_daemon() {
    let root = RepoRoot::new();
    let (repo, first, tagged) = sample_repo(&root, "app");
    let daemon = GitDaemon::start(&root).await;
    let url = daemon.url("app");
    let t = TestServer::start().await;
    let name = unique_name("git");

    // The default reference is `main`; the fetch is shallow.
    let (record, log) = build_ok(&t, &git_build(&name, json!({ "url": url }))).await;
    assert!(log.contains("main message"), "{log}");
    let main_tip = repo.run(&["rev-parse", "main"]);
    let source = &record["source"]["git"];
    assert_eq!(source["commit"], main_tip.as_str(), "{record:#}");
    assert_eq!(source["referenceKind"], "branch");
    assert_eq!(source["branch"], "main");
    assert_eq!(source["fullRef"], "refs/heads/main");
    assert_eq!(mirror_commit_count(&t, &url), 1, "a depth-1 fetch");
    let image = record["imageRefs"][0].as_str().unwrap();
    let labels = image_labels(image).await;
    assert_eq!(
        labels["org.opencontainers.image.revision"], main_tip,
        "{labels:?}"
    );
    assert_eq!(labels["org.opencontainers.image.source"], url);

    // The same commit again: nothing new to fetch.
    let (_, log) = build_ok(&t, &git_build(&name, json!({ "url": url }))).await;
    assert!(log.contains("nothing new to fetch"), "{log}");

    // A branch.
    let (record, log) = build_ok(
        &t,
        &git_build(&name, json!({ "url": url, "reference": "feature" })),
    )
    .await;
    assert!(log.contains("feature message"), "{log}");
    assert_eq!(record["source"]["git"]["branch"], "feature");

    // An annotated tag: its commit, labelled with the version.
    let (record, log) = build_ok(
        &t,
        &git_build(&name, json!({ "url": url, "reference": "v1.0" })),
    )
    .await;
    assert!(log.contains("tagged message"), "{log}");
    let source = &record["source"]["git"];
    assert_eq!(source["referenceKind"], "tag");
    assert_eq!(source["commit"], tagged.as_str());
    assert!(source.get("branch").is_none(), "{record:#}");
    let labels = image_labels(record["imageRefs"][0].as_str().unwrap()).await;
    assert_eq!(labels["org.opencontainers.image.version"], "v1.0");

    // A full commit id, then an abbreviated one deep in the history.
    let (record, log) = build_ok(
        &t,
        &git_build(&name, json!({ "url": url, "reference": tagged })),
    )
    .await;
    assert!(log.contains("tagged message"), "{log}");
    assert_eq!(record["source"]["git"]["referenceKind"], "commit");
    let (record, log) = build_ok(
        &t,
        &git_build(&name, json!({ "url": url, "reference": &first[..9] })),
    )
    .await;
    assert!(log.contains("message-0 on main"), "{log}");
    assert_eq!(record["source"]["git"]["commit"], first.as_str());

    // A sub-directory as the context.
    let (_, log) = build_ok(
        &t,
        &git_build(
            &name,
            json!({ "url": url, "reference": "main", "contextDir": "services/api" }),
        ),
    )
    .await;
    assert!(log.contains("api service context"), "{log}");

    // ListBuilds by branch.
    let listed = t
        .get(&format!("/v1/builds?name={name}&branch=feature"))
        .await;
    let builds = listed.json()["builds"].as_array().unwrap().clone();
    assert_eq!(builds.len(), 1, "{builds:#?}");
    assert_eq!(builds[0]["source"]["git"]["branch"], "feature");
    let listed = t.get(&format!("/v1/builds?name={name}&branch=main")).await;
    assert_eq!(listed.json()["builds"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_new_commit_is_fetched_into_the_warm_mirror() {
    let root = RepoRoot::new();
    let (repo, _, _) = sample_repo(&root, "warm");
    let daemon = GitDaemon::start(&root).await;
    let url = daemon.url("warm");
    let t = TestServer::start().await;
    let name = unique_name("git-warm");
    build_ok(&t, &git_build(&name, json!({ "url": url }))).await;
    repo.write("message.txt", "second commit message\n");
    let second = repo.commit("second");
    let (record, log) = build_ok(&t, &git_build(&name, json!({ "url": url }))).await;
    assert!(log.contains("second commit message"), "{log}");
    assert_eq!(record["source"]["git"]["commit"], second.as_str());
    assert!(!log.contains("nothing new to fetch"), "{log}");
    // Two builds of one repository at once share the mirror safely.
    let a = t
        .create_build(&git_build(&name, json!({ "url": url })))
        .await;
    let b = t
        .create_build(&git_build(
            &name,
            json!({ "url": url, "reference": "feature" }),
        ))
        .await;
    for id in [a, b] {
        let record = t.wait_finished(&id, LIMIT).await;
        assert_eq!(record["status"], "BUILD_STATUS_SUCCEEDED", "{record:#}");
    }
}

/// Every file of the image's `/app`: `file <path> <content> <mode>` lines.
const LIST_APP: &str = "FROM local/busybox:1\nCOPY app /app\nRUN cd /app && for f in $(find . -type f | sort); do echo \"file $f $(cat $f) $(stat -c %a $f)\"; done\n";

#[tokio::test]
async fn issue_18_a_warm_build_writes_only_what_changed_and_builds_the_new_tree() {
    let root = RepoRoot::new();
    let repo = root.repo("kept");
    repo.write("Dockerfile", LIST_APP);
    repo.write("app/a/x", "x-v1");
    repo.write("app/a/y", "y");
    repo.write("app/b/z", "z");
    repo.write("app/d/inside", "inside");
    repo.write("app/e", "e");
    for i in 0..50 {
        repo.write(&format!("app/many/f{i}"), &format!("f{i}"));
    }
    repo.commit("first");
    let daemon = GitDaemon::start(&root).await;
    let url = daemon.url("kept");
    let t = TestServer::start().await;
    let name = unique_name("git-kept");
    let (_, log) = build_ok(&t, &git_build(&name, json!({ "url": url }))).await;
    assert!(log.contains("file ./a/y y 644"), "{log}");
    assert!(!log.contains("unchanged since the last build"), "{log}");
    let mirror = kiln_server::git::GitFetcher::new(t.data_dir.path(), Default::default())
        .mirror_path("default", &url);
    let kept = kiln_server::git::kept::exports_of(&mirror);
    assert_eq!(
        std::fs::read_dir(&kept).unwrap().count(),
        1,
        "the build kept its context beside the mirror"
    );

    // Changed, removed, re-moded, added, a directory that became a file
    // and a file that became a directory.
    repo.write("app/a/x", "x-v2");
    repo.run(&["rm", "-q", "app/a/y", "app/d/inside", "app/e"]);
    repo.write("app/d", "d-is-a-file");
    repo.write("app/e/inner", "inner");
    repo.write("app/c/w", "w");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        repo.path.join("app/b/z"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    repo.commit("second");
    let (_, log) = build_ok(&t, &git_build(&name, json!({ "url": url }))).await;
    assert!(log.contains("unchanged since the last build"), "{log}");
    for line in [
        "file ./a/x x-v2 644",
        "file ./b/z z 755",
        "file ./c/w w 644",
        "file ./d d-is-a-file 644",
        "file ./e/inner inner 644",
        "file ./many/f49 f49 644",
    ] {
        assert!(log.contains(line), "{line:?} missing:\n{log}");
    }
    for gone in ["file ./a/y", "file ./d/inside", "file ./e e", "x-v1"] {
        assert!(
            !log.contains(gone),
            "{gone:?} is still in the image:\n{log}"
        );
    }
    let files = log.lines().filter(|l| l.contains(" file ./")).count();
    assert_eq!(files, 55, "{log}");

    // A build at another context directory keeps its own context; the
    // repository's one stays for the next build of the whole tree.
    repo.write(
        "app/Dockerfile",
        "FROM local/busybox:1\nCOPY a /a\nRUN cat /a/x\n",
    );
    repo.commit("third");
    build_ok(
        &t,
        &git_build(&name, json!({ "url": url, "contextDir": "app" })),
    )
    .await;
    assert_eq!(std::fs::read_dir(&kept).unwrap().count(), 2);
}

#[tokio::test]
async fn git_failures_say_what_to_fix() {
    let root = RepoRoot::new();
    let (_repo, _, _) = sample_repo(&root, "errs");
    let daemon = GitDaemon::start(&root).await;
    let url = daemon.url("errs");
    let t = TestServer::start().await;
    let name = unique_name("git-err");

    let (record, _) = build_failed(
        &t,
        &git_build(&name, json!({ "url": url, "reference": "no-such-branch" })),
        "GIT_REFERENCE_NOT_FOUND",
    )
    .await;
    let message = record["failure"]["message"].as_str().unwrap();
    assert!(message.contains("no-such-branch"), "{message}");
    assert!(
        message.contains("feature") && message.contains("main"),
        "{message}"
    );

    let (record, _) = build_failed(
        &t,
        &git_build(&name, json!({ "url": daemon.url("missing") })),
        "GIT_REPOSITORY_NOT_FOUND",
    )
    .await;
    assert!(record["failure"]["hint"]
        .as_str()
        .unwrap()
        .contains("gitSource.url"));

    let (record, _) = build_failed(
        &t,
        &git_build(&name, json!({ "url": url, "contextDir": "services/nope" })),
        "CONTEXT_DIR_NOT_FOUND",
    )
    .await;
    assert!(record["failure"]["message"]
        .as_str()
        .unwrap()
        .contains("services/nope"));

    // Bad requests never become builds.
    for (source, needle) in [
        (json!({ "url": "ftp://127.0.0.1/r.git" }), "scheme"),
        (
            json!({ "url": "https://bot:hunter2@example.com/r.git" }),
            "password",
        ),
        (json!({ "url": url, "reference": "a..b" }), "reference"),
        (json!({ "url": url, "reference": "bad ref" }), "reference"),
        (json!({ "url": url, "contextDir": "../etc" }), "contextDir"),
        (json!({ "url": url, "branch": "main" }), "branch"),
    ] {
        let answer = t
            .post_json("/v1/builds", &git_build(&name, source.clone()))
            .await;
        assert_eq!(answer.status, 400, "{source}");
        let message = answer.error_message();
        assert!(message.contains(needle), "{source}: {message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
}

#[tokio::test]
async fn hosts_the_operator_did_not_grant_are_refused() {
    let root = RepoRoot::new();
    sample_repo(&root, "granted");
    let daemon = GitDaemon::start(&root).await;
    let t = TestServer::start_with(|config| {
        config.plugin_grants.insert(
            "git".into(),
            kiln_server::config::FileConfig::parse_grant("git = [\"git.example.com\"]\n"),
        );
    })
    .await;
    let (record, _) = build_failed(
        &t,
        &git_build(
            &unique_name("git-host"),
            json!({ "url": daemon.url("granted") }),
        ),
        "GIT_HOST_NOT_PERMITTED",
    )
    .await;
    let message = record["failure"]["message"].as_str().unwrap();
    assert!(message.contains("127.0.0.1"), "{message}");
}

/// Issue 12: with the default grant, a build could make the host fetch
/// from its own loopback, and the different failures told open ports from
/// closed ones. Non-public addresses are now refused before any connection,
/// with one answer whatever listens there.
#[tokio::test]
async fn issue_12_git_sources_cannot_reach_loopback_or_private_networks() {
    let root = RepoRoot::new();
    sample_repo(&root, "internal");
    let daemon = GitDaemon::start(&root).await;
    let t = TestServer::start_with(|config| config.network = Default::default()).await;
    let mut answers = Vec::new();
    for url in [
        daemon.url("internal"),                        // something listens
        "http://127.0.0.1:1/internal.git".to_string(), // nothing listens
        "git://localhost:9/internal.git".to_string(),
        "https://[::ffff:127.0.0.1]/internal.git".to_string(),
        "http://169.254.169.254/latest/meta-data.git".to_string(),
        "http://10.0.0.1/internal.git".to_string(),
    ] {
        let (record, log) = build_failed(
            &t,
            &git_build(&unique_name("git-private"), json!({ "url": url })),
            "GIT_HOST_NOT_PERMITTED",
        )
        .await;
        let message = record["failure"]["message"].as_str().unwrap().to_string();
        assert!(
            message.contains("--allow-private-network"),
            "the message says how an operator allows it: {message}\n{log}"
        );
        answers.push(message);
    }
    assert_eq!(
        answers[0], answers[1],
        "an open and a closed port must answer alike"
    );
    // Nothing was fetched: no mirror was even created.
    assert!(
        !t.data_dir
            .path()
            .join("git-mirrors")
            .join("default")
            .exists()
            || std::fs::read_dir(t.data_dir.path().join("git-mirrors").join("default"))
                .unwrap()
                .next()
                .is_none()
    );

    // A host name over HTTP is resolved again when the transport connects,
    // through the policy's own resolver (a DNS answer that changes between
    // the check and the connection is caught there): refused by default,
    // fetched once the operator allows loopback.
    let http = GitHttp::start(&root, "tester", "unused-password").await;
    let by_name = http.url("internal").replace("127.0.0.1", "localhost");
    build_failed(
        &t,
        &git_build(&unique_name("git-private"), json!({ "url": by_name })),
        "GIT_HOST_NOT_PERMITTED",
    )
    .await;
    let loopback = TestServer::start_with(|config| {
        config.network = kiln_server::net::NetworkPolicy::allowing([
            "127.0.0.0/8".parse().unwrap(),
            "::1".parse().unwrap(),
        ]);
    })
    .await;
    build_ok(
        &loopback,
        &git_build(&unique_name("git-private"), json!({ "url": by_name })),
    )
    .await;

    // The operator allows loopback: the same repository builds.
    let allowed = TestServer::start_with(|config| {
        config.network = kiln_server::net::NetworkPolicy::allowing(["127.0.0.1".parse().unwrap()]);
    })
    .await;
    build_ok(
        &allowed,
        &git_build(
            &unique_name("git-private"),
            json!({ "url": daemon.url("internal") }),
        ),
    )
    .await;
}

#[tokio::test]
async fn private_repositories_over_http_need_the_orgs_git_credentials() {
    const TOKEN: &str = "glpat-private-token-4c1b9e";
    let root = RepoRoot::new();
    let repo = root.repo("private/app");
    repo.write(
        "Dockerfile",
        "FROM local/busybox:1\nCOPY secret-plan.txt /plan.txt\nRUN cat /plan.txt && echo built\n",
    );
    repo.write("secret-plan.txt", "private repository content\n");
    repo.commit("private");
    let public = root.repo("public/app");
    public.write(
        "Dockerfile",
        "FROM local/busybox:1\nRUN echo public-build-ran && echo built\n",
    );
    public.commit("public");
    let server = GitHttp::start(&root, "tester", TOKEN).await;
    let t = TestServer::start().await;
    let name = unique_name("git-http");

    // Public over smart HTTP, no credentials needed.
    let (_, log) = build_ok(
        &t,
        &git_build(&name, json!({ "url": server.url("public/app") })),
    )
    .await;
    assert!(log.contains("public-build-ran"), "{log}");

    let private = json!({ "url": server.url("private/app") });
    let (record, _) =
        build_failed(&t, &git_build(&name, private.clone()), "GIT_AUTH_REQUIRED").await;
    assert!(record["failure"]["message"]
        .as_str()
        .unwrap()
        .contains("gitCredentials"));

    let save = |token: &'static str| json!({ "gitCredentials": { "127.0.0.1": { "username": "tester", "token": token } } });
    let answer = t.save_secrets(&save("wrong-token-value")).await;
    assert_eq!(answer.status, 200);
    let (record, _) = build_failed(&t, &git_build(&name, private.clone()), "GIT_AUTH_FAILED").await;
    assert!(record["failure"]["hint"]
        .as_str()
        .unwrap()
        .contains("read_repository"));

    let answer = t.save_secrets(&save(TOKEN)).await;
    assert_eq!(answer.status, 200);
    let id = t.create_build(&git_build(&name, private)).await;
    let record = t.wait_finished(&id, LIMIT).await;
    let log = t.log_text(&id).await;
    assert_eq!(
        record["status"], "BUILD_STATUS_SUCCEEDED",
        "{record:#}\n{log}"
    );
    assert!(log.contains("private repository content"), "{log}");
    let record_text = t.get(&format!("/v1/builds/{id}")).await.body;
    for text in [log.as_bytes(), &record_text[..]] {
        assert!(
            !text.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
            "the token leaked"
        );
    }
}

#[tokio::test]
async fn submodules_are_checked_out_when_asked() {
    let root = RepoRoot::new();
    let lib = root.repo("lib");
    lib.write("lib.txt", "library from a submodule\n");
    lib.commit("lib");
    let app = root.repo("super");
    app.write(
        "Dockerfile",
        "FROM local/busybox:1\nCOPY . /src\nRUN cat /src/vendor/lib/lib.txt && echo built\n",
    );
    app.run(&[
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        "../lib",
        "vendor/lib",
    ]);
    app.commit("with submodule");
    let daemon = GitDaemon::start(&root).await;
    let t = TestServer::start().await;
    let name = unique_name("git-sub");
    let (record, log) = build_ok(
        &t,
        &git_build(
            &name,
            json!({ "url": daemon.url("super"), "submodules": true }),
        ),
    )
    .await;
    assert!(log.contains("library from a submodule"), "{log}");
    assert_eq!(record["source"]["git"]["submodules"], true);
    // Without the flag the directory is there but empty: the COPY'd file is missing.
    let (_, log) = build_failed(
        &t,
        &git_build(&name, json!({ "url": daemon.url("super") })),
        "RUN_FAILED",
    )
    .await;
    assert!(log.contains("lib.txt"), "{log}");
}
