//! UploadBuildContext and builds by `contextId`: tar, tar.gz and zip,
//! content-addressed, per organization, size-limited; hostile archives
//! refused inside the sandbox; `.dockerignore` honored for every source.

use std::time::Duration;

use kiln_tests::*;
use serde_json::json;
use sha2::{Digest, Sha256};

const LIMIT: Duration = Duration::from_secs(120);

fn hello_files() -> Vec<(String, Vec<u8>, u32)> {
    let dir = workspace().join("examples/hello");
    ["Dockerfile", "hello.sh", "README.md"]
        .iter()
        .map(|name| {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.join(name);
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            (name.to_string(), std::fs::read(&path).unwrap(), mode)
        })
        .collect()
}

fn hello_tar() -> Vec<u8> {
    let files = hello_files();
    let entries: Vec<TarEntry> = files
        .iter()
        .map(|(n, d, m)| TarEntry::File(n, d, *m))
        .collect();
    tar_entries(&entries)
}

#[tokio::test]
async fn an_uploaded_tar_gz_builds_by_context_id_and_the_same_bytes_give_the_same_id() {
    let t = TestServer::start().await;
    let archive = gzip(&hello_tar());
    let answer = t.upload(archive.clone()).await;
    assert_eq!(
        answer.status,
        201,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let uploaded = answer.json();
    let sha = hex::encode(Sha256::digest(&archive));
    assert_eq!(uploaded["sha256"], sha);
    assert_eq!(uploaded["sizeBytes"], archive.len());
    assert_eq!(uploaded["format"], "tar.gz");
    let context_id = uploaded["contextId"].as_str().unwrap().to_string();
    assert_eq!(
        t.upload(archive).await.json()["contextId"],
        context_id.as_str()
    );
    assert_eq!(
        t.get(&format!("/v1/contexts/{context_id}")).await.status,
        200
    );

    let name = unique_name("uploaded");
    let build_id = t
        .create_build(&json!({ "name": name, "contextId": context_id }))
        .await;
    let record = t.wait_succeeded(&build_id, LIMIT).await;
    assert_eq!(record["source"]["kind"], "upload");
    assert_eq!(record["source"]["contextId"], context_id.as_str());
    let image = record["imageRefs"][0].as_str().unwrap();
    assert_eq!(
        run_image(image).await.trim(),
        "Hello from Kiln!",
        "the executable bit survived"
    );
}

#[tokio::test]
async fn plain_tar_and_zip_uploads_are_recognised() {
    let t = TestServer::start().await;
    let tar = t.upload(hello_tar()).await;
    assert_eq!(tar.status, 201);
    assert_eq!(tar.json()["format"], "tar");
    let zip = t.upload(zip_dir(&workspace().join("examples/hello"))).await;
    assert_eq!(zip.status, 201);
    assert_eq!(zip.json()["format"], "zip");
    let build_id = t
        .create_build(
            &json!({ "name": unique_name("zipup"), "contextId": zip.json()["contextId"] }),
        )
        .await;
    assert_eq!(
        t.wait_finished(&build_id, LIMIT).await["status"],
        "BUILD_STATUS_SUCCEEDED"
    );
}

#[tokio::test]
async fn another_organizations_upload_does_not_exist() {
    let t = TestServer::start().await;
    let id = t.upload(hello_tar()).await.json()["contextId"]
        .as_str()
        .unwrap()
        .to_string();
    let other = t.as_token(&t.server.create_org_with_token("other").unwrap());
    assert_eq!(other.get(&format!("/v1/contexts/{id}")).await.status, 404);
    let answer = other
        .post_json("/v1/builds", &json!({ "name": "stolen", "contextId": id }))
        .await;
    assert_eq!(answer.status, 400);
    assert!(answer
        .error_message()
        .contains("does not exist for this organization"));
}

#[tokio::test]
async fn oversized_and_non_archive_uploads_are_refused_and_leave_nothing() {
    let t = TestServer::start_with(|c| c.max_upload_bytes = 1 << 20).await;
    let big = vec![7u8; (1 << 20) + 1];
    let answer = t.upload(big).await;
    assert_eq!(answer.status, 413);
    assert!(
        answer
            .error_message()
            .contains("upload limit of 1048576 bytes"),
        "{}",
        answer.error_message()
    );
    let answer = t.upload(b"just some text, not an archive".to_vec()).await;
    assert_eq!(answer.status, 400);
    assert!(answer.error_message().contains("not a tar, tar.gz or zip"));
    let tmp = t.data_dir.path().join("contexts/tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "partial uploads left behind: {left:?}");
    let blobs = t.data_dir.path().join("contexts/blobs");
    let kept: Vec<_> = std::fs::read_dir(&blobs)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(kept.is_empty(), "refused uploads were kept: {kept:?}");
}

async fn build_of_archive(t: &TestServer, archive: Vec<u8>) -> serde_json::Value {
    let answer = t.upload(archive).await;
    assert_eq!(
        answer.status,
        201,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let build_id = t
        .create_build(&json!({
            "name": unique_name("archive"),
            "contextId": answer.json()["contextId"],
            // A RUN's output is only in the log when it really runs.
            "noCache": true,
        }))
        .await;
    t.wait_finished(&build_id, LIMIT).await
}

#[tokio::test]
async fn links_inside_the_context_work_and_links_out_of_it_are_refused() {
    let t = TestServer::start().await;
    let dockerfile = format!(
        "FROM {REGISTRY}/base/busybox:1\nCOPY . /ctx\nRUN test -L /ctx/current && cat /ctx/current\n"
    );
    let good = tar_entries(&[
        TarEntry::File("Dockerfile", dockerfile.as_bytes(), 0o644),
        TarEntry::File("app/config.yml", b"linked-config-content\n", 0o644),
        TarEntry::Symlink("current", "app/config.yml"),
    ]);
    let record = build_of_archive(&t, good).await;
    assert_eq!(record["status"], "BUILD_STATUS_SUCCEEDED", "{record:#}");
    assert!(t
        .log_text(record["buildId"].as_str().unwrap())
        .await
        .contains("linked-config-content"));

    for target in ["../../../../etc/passwd", "/etc/passwd"] {
        let bad = tar_entries(&[
            TarEntry::File("Dockerfile", dockerfile.as_bytes(), 0o644),
            TarEntry::Symlink("sneaky", target),
        ]);
        let record = build_of_archive(&t, bad).await;
        assert_eq!(record["status"], "BUILD_STATUS_FAILED", "{record:#}");
        assert_eq!(record["failure"]["reason"], "CONTEXT_INVALID");
        let message = record["failure"]["message"].as_str().unwrap();
        assert!(
            message.contains("sneaky") && message.contains(target),
            "{message}"
        );
    }
}

#[tokio::test]
async fn device_files_and_archive_bombs_are_refused() {
    let t = TestServer::start_with(|c| c.max_context_bytes = 1 << 20).await;
    let device = tar_entries(&[
        TarEntry::File("Dockerfile", b"FROM scratch\n", 0o644),
        TarEntry::CharDevice("dev/kmsg"),
    ]);
    let record = build_of_archive(&t, device).await;
    assert_eq!(record["failure"]["reason"], "CONTEXT_INVALID", "{record:#}");
    assert!(record["failure"]["message"]
        .as_str()
        .unwrap()
        .contains("character device"));

    let zeros = vec![0u8; 16 << 20];
    let bomb = gzip(&tar_entries(&[
        TarEntry::File("Dockerfile", b"FROM scratch\n", 0o644),
        TarEntry::File("zeros.bin", &zeros, 0o644),
    ]));
    assert!(bomb.len() < 256 * 1024, "{} bytes packed", bomb.len());
    let record = build_of_archive(&t, bomb).await;
    assert_eq!(record["failure"]["reason"], "CONTEXT_INVALID", "{record:#}");
    assert!(record["failure"]["message"]
        .as_str()
        .unwrap()
        .contains("archive bomb"));
}

/// The files a build saw, printed by its RUN step, one `seen:<path>` per line.
async fn files_seen(t: &TestServer, request: serde_json::Value) -> Vec<String> {
    let build_id = t.create_build(&request).await;
    let record = t.wait_finished(&build_id, LIMIT).await;
    assert_eq!(record["status"], "BUILD_STATUS_SUCCEEDED", "{record:#}");
    let mut seen: Vec<String> = t
        .log(&build_id)
        .await
        .iter()
        .filter_map(|l| l["line"].as_str())
        .filter_map(|l| l.split_whitespace().last())
        .filter_map(|w| w.strip_prefix("seen:"))
        .map(str::to_string)
        .collect();
    seen.sort();
    seen
}

#[tokio::test]
async fn dockerignore_is_honored_for_inline_and_uploaded_contexts() {
    let t = TestServer::start().await;
    let dockerfile = format!(
        "FROM {REGISTRY}/base/busybox:1\nCOPY . /ctx\nRUN cd /ctx && find . -type f | sed 's|^./|seen:|'\n"
    );
    let ignore =
        "# build outputs and secrets stay out\nnode_modules\n*.env\ndocs/**\n!docs/keep.md\n";
    let files: Vec<(&str, &[u8])> = vec![
        ("Dockerfile", dockerfile.as_bytes()),
        (".dockerignore", ignore.as_bytes()),
        ("src/app.js", b"x"),
        ("node_modules/dep/index.js", b"x"),
        ("prod.env", b"TOKEN=1"),
        ("config/dev.env", b"keep: not at the root"),
        ("docs/guide.md", b"x"),
        ("docs/keep.md", b"x"),
    ];
    let expected = vec![
        ".dockerignore",
        "Dockerfile",
        "config/dev.env",
        "docs/keep.md",
        "src/app.js",
    ];
    let zip_entries_list: Vec<(&str, &[u8], u32)> =
        files.iter().map(|(n, d)| (*n, *d, 0o644)).collect();
    let inline = json!({
        "name": unique_name("ignored"),
        "noCache": true,
        "zippedCode": base64(&zip_entries(&zip_entries_list)),
    });
    assert_eq!(files_seen(&t, inline).await, expected);

    let tar: Vec<TarEntry> = files
        .iter()
        .map(|(n, d)| TarEntry::File(n, d, 0o644))
        .collect();
    let id = t.upload(gzip(&tar_entries(&tar))).await.json()["contextId"].clone();
    let uploaded = json!({ "name": unique_name("ignored"), "noCache": true, "contextId": id });
    assert_eq!(files_seen(&t, uploaded).await, expected);
}

/// Regression (#11): `wizard:detect` materializes a context the way a
/// build does (one step for both), so it sees the links the host creates
/// and refuses the ones a build refuses. It used to skip the host's half:
/// a site whose `index.html` is a link was "nothing detected", and a link
/// out of the context went unnoticed.
#[tokio::test]
async fn issue_11_detect_sees_the_context_a_build_sees() {
    let t = TestServer::start().await;
    let detect = async |archive: Vec<u8>| {
        let uploaded = t.upload(archive).await;
        assert_eq!(uploaded.status, 201, "{}", uploaded.error_message());
        let id = uploaded.json()["contextId"].as_str().unwrap().to_string();
        t.post_json(
            "/v1/wizard:detect",
            &json!({ "contextId": id, "monorepo": false }),
        )
        .await
    };
    let linked = tar_entries(&[
        TarEntry::File("site/index.html", b"<h1>linked</h1>\n", 0o644),
        TarEntry::Symlink("index.html", "site/index.html"),
    ]);
    let answer = detect(linked).await;
    assert_eq!(answer.status, 200, "{}", answer.error_message());
    assert_eq!(
        answer.json()["projects"][0]["stack"],
        "static",
        "{}",
        answer.json()
    );

    let escaping = tar_entries(&[
        TarEntry::File("index.html", b"<h1>hi</h1>\n", 0o644),
        TarEntry::Symlink("sneaky", "/etc/passwd"),
    ]);
    let answer = detect(escaping).await;
    assert_eq!(
        answer.status,
        400,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let message = answer.error_message();
    assert!(
        message.contains("sneaky") && message.contains("/etc/passwd"),
        "{message}"
    );
}
