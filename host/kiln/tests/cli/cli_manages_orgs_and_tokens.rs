//! The operator manages organizations and tokens on a running server with
//! the admin token, through the `kiln` CLI and the API.

use std::process::Command;

use kiln_tests::*;
use serde_json::json;

fn kiln(server: &str, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env("KILN_SERVER", server)
        .env("KILN_TOKEN", token)
        .output()
        .expect("run kiln")
}

#[tokio::test]
async fn the_admin_creates_an_org_and_a_token_that_then_works_alone() {
    let dir = tempfile::tempdir().unwrap();
    let server = KilnProcess::spawn(env!("CARGO_BIN_EXE_kiln").as_ref(), dir.path(), &[]);
    let url = server.server_url().to_string();

    let created = kiln(&url, &server.token, &["org", "create", "team-a"]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    assert!(String::from_utf8_lossy(&created.stdout).contains("team-a"));

    let issued = kiln(&url, &server.token, &["token", "create", "--org", "team-a"]);
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    let team_token = String::from_utf8_lossy(&issued.stdout).trim().to_string();
    assert!(team_token.starts_with("kiln_"), "{team_token}");
    let stderr = String::from_utf8_lossy(&issued.stderr).to_string();
    let token_id = stderr
        .split_whitespace()
        .nth(2)
        .expect("the token id is printed")
        .to_string();

    // The new token sees its own (empty) organization, and builds there.
    let team = Api::new(&url, &team_token);
    let list = team.get("/v1/builds").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["builds"], json!([]));
    let build_id = team
        .create_build(&hello_request(&unique_name("team")))
        .await;
    let record = team
        .wait_finished(&build_id, std::time::Duration::from_secs(120))
        .await;
    assert_eq!(record["status"], "BUILD_STATUS_SUCCEEDED", "{record:#}");
    let image = record["imageRefs"][0].as_str().unwrap();
    assert!(image.starts_with(&format!("{REGISTRY}/team-a/")), "{image}");

    // The operator gives team-a its own registry (issue 16), and takes it back.
    let show = |args: &[&str]| {
        let out = kiln(&url, &server.token, args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(show(&["org", "registry", "team-a"])
        .contains(&format!("images go to {REGISTRY}/team-a/<name>:<tag>")));
    let moved = show(&[
        "org",
        "registry",
        "team-a",
        "--host",
        "harbor.example.com",
        "--namespace",
        "team-a/apps",
    ]);
    assert!(
        moved.contains("images go to harbor.example.com/team-a/apps/<name>:<tag>"),
        "{moved}"
    );
    assert!(show(&["org", "list"]).contains("team-a\tharbor.example.com/team-a/apps"));
    assert!(show(&["org", "registry", "team-a", "--reset"])
        .contains(&format!("images go to {REGISTRY}/team-a/<name>:<tag>")));
    // Signing (issue 19): on by default, off and on again per organization.
    assert!(
        show(&["org", "signing", "team-a"]).contains("team-a: images are signed, with provenance")
    );
    assert!(show(&["org", "signing", "team-a", "--off"]).contains("team-a: images are not signed"));
    assert!(show(&["org", "signing", "team-a"]).contains("not signed"));
    assert!(show(&["org", "signing", "team-a", "--on"]).contains("signed, with provenance"));

    // It is no admin token.
    let refused = kiln(&url, &team_token, &["org", "create", "team-b"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("admin token"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // The default organization does not see team-a's build.
    assert_eq!(
        server.get(&format!("/v1/builds/{build_id}")).await.status,
        404
    );

    // Revoked, it no longer works.
    let revoked = kiln(
        &url,
        &server.token,
        &["token", "revoke", "--org", "team-a", &token_id],
    );
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    assert_eq!(team.get("/v1/builds").await.status, 401);

    // Duplicates and bad names are refused with a reason.
    let again = kiln(&url, &server.token, &["org", "create", "team-a"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let bad = kiln(&url, &server.token, &["org", "create", "Team A"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not valid"));
}

#[test]
fn an_unreachable_server_or_missing_token_is_explained() {
    let out = kiln("http://127.0.0.1:9", "kiln_x", &["org", "list"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach the Kiln server at http://127.0.0.1:9"),
        "{stderr}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["org", "list"])
        .env_remove("KILN_TOKEN")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --token or set KILN_TOKEN"));
}

/// Issue 12: `kiln admin gc --dry-run` says what garbage collection would
/// remove, by kind, and removes nothing; an organization's token may not.
#[tokio::test]
async fn issue_12_the_admin_sees_what_gc_would_remove_before_it_does() {
    let dir = tempfile::tempdir().unwrap();
    let server = KilnProcess::spawn(env!("CARGO_BIN_EXE_kiln").as_ref(), dir.path(), &[]);
    let url = server.server_url().to_string();
    let stray = dir.path().join("workspaces/left-by-a-crash");
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join("file"), b"0123456789").unwrap();
    std::fs::File::open(&stray)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3 * 60 * 60))
        .unwrap();

    let dry = kiln(&url, &server.token, &["admin", "gc", "--dry-run", "--list"]);
    let out = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(out.contains("would remove"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["leftover", "1", "10"]),
        "{out}"
    );
    assert!(out.contains("workspaces/left-by-a-crash"), "{out}");
    assert!(out.contains("nothing was removed"), "{out}");
    assert!(stray.exists());

    let done = kiln(&url, &server.token, &["admin", "gc"]);
    let out = String::from_utf8_lossy(&done.stdout);
    assert!(done.status.success(), "{out}");
    assert!(out.contains("removed"), "{out}");
    assert!(!stray.exists());

    let issued = kiln(
        &url,
        &server.token,
        &["token", "create", "--org", "default"],
    );
    let tenant = String::from_utf8_lossy(&issued.stdout).trim().to_string();
    let refused = kiln(&url, &tenant, &["admin", "gc", "--dry-run"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("admin"), "{err}");
}
