//! The third-party-style example plugins in `examples/`, built in their own
//! directories and loaded through `--plugin-dir` with the operator's grant,
//! exactly as the README tells an operator to.

use std::process::Command;
use std::time::Duration;

use kiln_tests::*;

#[tokio::test]
async fn the_recipe_builder_builds_a_yaml_recipe_and_refuses_a_bad_one() {
    let examples = workspace().join("examples");
    build_plugin_crate(&examples.join("recipe-builder"));
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("kiln.toml");
    std::fs::write(&config, "[plugins.recipe-builder]\ngrant = \"asked\"\n").unwrap();
    let server = KilnProcess::spawn(
        env!("CARGO_BIN_EXE_kiln").as_ref(),
        &work.path().join("data"),
        &[
            "--plugin-dir",
            examples.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let name = unique_name("recipe");
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "build",
            examples.join("recipe-app").to_str().unwrap(),
            "-t",
            &name,
            "--builder",
            "recipe",
            "--no-cache",
        ])
        .env("KILN_SERVER", server.server_url())
        .env("KILN_TOKEN", &server.token)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("[recipe-builder] recipe: 2 steps"),
        "{stdout}"
    );
    let image = format!("{REGISTRY}/default/{name}:latest");
    assert_eq!(run_image(&image).await.trim(), "Hello from a recipe!");

    // `kiln plugins list` shows it with what it provides, was granted and asked.
    let listed = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["plugins", "list"])
        .env("KILN_SERVER", server.server_url())
        .env("KILN_TOKEN", &server.token)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&listed.stdout);
    let row = table
        .lines()
        .find(|l| l.starts_with("recipe-builder "))
        .unwrap_or_else(|| panic!("no recipe-builder row:\n{table}"));
    assert!(
        row.contains("builder recipe")
            && row.contains("engine=buildkit-build (asked engine=buildkit-build)")
            && row.contains("64 MiB, 10 s"),
        "{row}"
    );

    let bad = zip_entries(&[(
        "kiln-recipe.yaml",
        b"base: 127.0.0.1:5000/base/busybox:1\nsteps:\n  - run: ls\nentrypoint: [sh]\n",
        0o644,
    )]);
    let request = serde_json::json!({ "name": unique_name("bad-recipe"), "zippedCode": base64(&bad), "builder": "recipe" });
    let build_id = server.create_build(&request).await;
    let record = server
        .wait_finished(&build_id, Duration::from_secs(60))
        .await;
    assert_eq!(record["failure"]["reason"], "PLUGIN_ERROR", "{record:#}");
    let message = record["failure"]["message"].as_str().unwrap();
    assert!(
        message.contains("unknown field `entrypoint`") && message.contains("line 4"),
        "{message}"
    );
}

/// A loopback HTTP server that answers `GET /app.tar.gz` with `archive`
/// and anything else with 404, until the test ends.
async fn serve_archive(archive: Vec<u8>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let archive = std::sync::Arc::new(archive);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let archive = archive.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&request);
                let (status, body): (&str, &[u8]) = if head.starts_with("GET /app.tar.gz ") {
                    ("200 OK", &archive)
                } else {
                    ("404 Not Found", b"not here")
                };
                let header = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/gzip\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(header.as_bytes()).await;
                let _ = socket.write_all(body).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test]
async fn the_http_archive_source_downloads_from_granted_hosts_only() {
    let examples = workspace().join("examples");
    build_plugin_crate(&examples.join("http-archive-source"));
    let hello = examples.join("hello");
    let files: Vec<(String, Vec<u8>, u32)> = ["Dockerfile", "hello.sh"]
        .iter()
        .map(|n| {
            use std::os::unix::fs::PermissionsExt;
            let p = hello.join(n);
            (
                n.to_string(),
                std::fs::read(&p).unwrap(),
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            )
        })
        .collect();
    let entries: Vec<TarEntry> = files
        .iter()
        .map(|(n, d, m)| TarEntry::File(n, d, *m))
        .collect();
    let port = serve_archive(gzip(&tar_entries(&entries))).await;

    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("kiln.toml");
    std::fs::write(
        &config,
        "[plugins.http-archive-source]\ngrant = \"asked\"\n",
    )
    .unwrap();
    let server = KilnProcess::spawn(
        env!("CARGO_BIN_EXE_kiln").as_ref(),
        &work.path().join("data"),
        &[
            "--plugin-dir",
            examples.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let plugins = server.get("/v1/plugins").await.json();
    let source = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "http-archive-source")
        .unwrap_or_else(|| panic!("not loaded: {plugins:#}"))
        .clone();
    assert_eq!(
        source["grantedPermissions"]["http"],
        serde_json::json!(["127.0.0.1"])
    );

    let name = unique_name("downloaded");
    let build_id = server
        .create_build(&serde_json::json!({ "name": name, "contextUrl": format!("http://127.0.0.1:{port}/app.tar.gz") }))
        .await;
    let record = server
        .wait_finished(&build_id, Duration::from_secs(120))
        .await;
    assert_eq!(
        record["status"],
        "BUILD_STATUS_SUCCEEDED",
        "{record:#}\n{}",
        server.log_text(&build_id).await
    );
    assert_eq!(record["source"]["kind"], "http");
    assert_eq!(
        run_image(record["imageRefs"][0].as_str().unwrap())
            .await
            .trim(),
        "Hello from Kiln!"
    );

    // Same server, a host it was not granted: the host refuses the request.
    let build_id = server
        .create_build(&serde_json::json!({ "name": unique_name("denied"), "contextUrl": format!("http://localhost:{port}/app.tar.gz") }))
        .await;
    let record = server
        .wait_finished(&build_id, Duration::from_secs(60))
        .await;
    assert_eq!(record["status"], "BUILD_STATUS_FAILED", "{record:#}");
    let message = record["failure"]["message"].as_str().unwrap();
    assert!(message.contains("not granted http access"), "{message}");
}
