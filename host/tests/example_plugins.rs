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
