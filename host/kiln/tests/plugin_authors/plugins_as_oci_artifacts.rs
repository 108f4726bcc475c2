//! Issue 19: plugins shipped as signed OCI artifacts. A publisher pushes a
//! built plugin with `kiln plugin push`; an operator serves it by
//! reference (`[plugins.<id>] source`, a `sha256` pin, `trusted_keys`);
//! a wrong pin or an untrusted signature stops the start, naming the
//! plugin. The layout is the Wasm ecosystem's: `wkg` (the `wkg` crate's
//! CLI, which scripts/test.sh installs) pulls what Kiln pushed unchanged,
//! and a component `wkg` pushed loads in Kiln.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kiln_tests::*;
use p256::pkcs8::{EncodePrivateKey, LineEnding};

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .unwrap()
}

fn succeeded(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The `wkg` the test script installs (on PATH, or KILN_WKG).
fn wkg(args: &[&str]) -> Output {
    let binary = std::env::var("KILN_WKG").unwrap_or_else(|_| "wkg".into());
    Command::new(&binary)
        .args(["oci"])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {binary} ({e}): scripts/test.sh installs it (cargo install wkg --version 0.16.1 --locked)")
        })
}

/// A publisher's key pair, written as PEM files `NAME.pem` and `NAME.pub`.
fn key_pair(dir: &Path, name: &str, seed: u8) -> (PathBuf, PathBuf) {
    let key = kiln_trust::SigningKey::from_bytes(&[seed; 32].into()).unwrap();
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub"));
    std::fs::write(
        &private,
        key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    std::fs::write(&public, kiln_trust::cosign::public_key_pem(&key)).unwrap();
    (private, public)
}

/// `kiln serve` with `config` must refuse to start: its error output.
fn serve_refuses(work: &Path, config: &str) -> String {
    let data = tempfile::tempdir_in(work).unwrap();
    let config_file = data.path().join("kiln.toml");
    std::fs::write(&config_file, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["serve", "--listen", "127.0.0.1:0", "--registry", REGISTRY])
        .arg("--data-dir")
        .arg(data.path())
        .arg("--config")
        .arg(&config_file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("kiln serve started with {config}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn issue_19_a_signed_plugin_artifact_is_served_by_reference_and_checked() {
    let recipe = workspace().join("examples/recipe-builder");
    build_plugin_crate(&recipe);
    let component_path = recipe.join("target/wasm32-wasip2/release/recipe_builder.wasm");
    let component = std::fs::read(&component_path).unwrap();
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&component));
    let work = tempfile::tempdir().unwrap();
    let (publisher, publisher_pub) = key_pair(work.path(), "publisher", 0x21);
    let (_, stranger_pub) = key_pair(work.path(), "stranger", 0x22);
    let repository = format!("{REGISTRY}/plugins/{}", unique_name("recipe-builder"));
    let reference = format!("{repository}:0.1.0");

    // Publish. The pin is the artifact's digest: it covers the component
    // and the plugin.toml (whose permissions `grant = "asked"` accepts).
    let pushed = succeeded(
        &kiln(&[
            "plugin",
            "push",
            recipe.to_str().unwrap(),
            &reference,
            "--key",
            publisher.to_str().unwrap(),
        ]),
        "kiln plugin push",
    );
    let digest = pushed
        .split_once(&format!("pushed {reference} (sha256:"))
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(hex, _)| hex.to_string())
        .unwrap_or_else(|| panic!("no digest in {pushed}"));
    assert!(
        pushed.contains(&format!("sha256 = \"{digest}\""))
            && pushed.contains(&format!("component sha256: {sha256}"))
            && pushed.contains("[plugins.recipe-builder]")
            && pushed.contains(".sig"),
        "{pushed}"
    );

    // The ecosystem's tool reads it unchanged; a component it pushed
    // (no plugin.toml) is served too.
    let by_wkg = work.path().join("by-wkg.wasm");
    succeeded(
        &wkg(&[
            "pull",
            "--insecure",
            REGISTRY,
            &reference,
            "-o",
            by_wkg.to_str().unwrap(),
        ]),
        "wkg oci pull",
    );
    assert!(
        std::fs::read(&by_wkg).unwrap() == component,
        "wkg pulled other bytes"
    );
    let bare = format!("{repository}-bare:1.0.0");
    let wkg_pushed = succeeded(
        &wkg(&[
            "push",
            "--insecure",
            REGISTRY,
            &bare,
            component_path.to_str().unwrap(),
        ]),
        "wkg oci push",
    );
    let bare_digest = wkg_pushed
        .lines()
        .find_map(|l| l.strip_prefix("digest: sha256:"))
        .unwrap_or_else(|| panic!("no digest in {wkg_pushed}"))
        .trim()
        .to_string();

    let config = work.path().join("kiln.toml");
    let grants = format!(
        "[plugins.recipe-builder]\nsource = \"{reference}\"\nsha256 = \"{digest}\"\ntrusted_keys = [\"publisher.pub\"]\ngrant = \"asked\"\n\n\
         [plugins.wkg-recipe]\nsource = \"{bare}\"\nsha256 = \"sha256:{bare_digest}\"\nengine = [\"buildkit-build\"]\n"
    );
    std::fs::write(&config, &grants).unwrap();
    let server = KilnProcess::spawn(
        env!("CARGO_BIN_EXE_kiln").as_ref(),
        &work.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let plugins = server.get("/v1/plugins").await.json();
    let listed = |id: &str| {
        plugins["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} in {plugins}"))
    };
    let served = listed("recipe-builder");
    assert_eq!(served["sha256"], sha256.as_str());
    let origin = served["origin"].as_str().unwrap();
    assert!(
        origin.starts_with(&format!("{repository}@sha256:"))
            && origin.ends_with("signed by publisher.pub"),
        "{served}"
    );
    // The bare component: its world read from the component, provided
    // under its id, granted exactly the grant's list.
    let bare_served = listed("wkg-recipe");
    assert_eq!(
        bare_served["kinds"]["builder"],
        serde_json::json!(["wkg-recipe"]),
        "{bare_served}"
    );
    assert_eq!(bare_served["world"], "Builder", "{bare_served}");
    assert_eq!(
        bare_served["grantedPermissions"]["engine"],
        serde_json::json!(["buildkit-build"]),
        "{bare_served}"
    );

    // It builds, through the CLI as a user would.
    let name = unique_name("oci-recipe");
    let built = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["build"])
        .arg(workspace().join("examples/recipe-app"))
        .args(["-t", &name, "--builder", "recipe", "--no-cache"])
        .env("KILN_SERVER", server.server_url())
        .env("KILN_TOKEN", &server.token)
        .output()
        .unwrap();
    let log = succeeded(&built, "kiln build --builder recipe");
    assert!(log.contains("[recipe-builder] recipe: 2 steps"), "{log}");
    let image = format!("{REGISTRY}/default/{name}:latest");
    assert_eq!(run_image(&image).await.trim(), "Hello from a recipe!");
    drop(server);

    // A pin the artifact does not match, or a signature by no trusted
    // key, stops the start, naming the plugin.
    let wrong_pin = "ab".repeat(32);
    let refused = serve_refuses(
        work.path(),
        &format!("[plugins.recipe-builder]\nsource = \"{reference}\"\nsha256 = \"{wrong_pin}\"\ngrant = \"asked\"\n"),
    );
    assert!(
        refused.contains("plugin recipe-builder")
            && refused.contains(&format!(
                "the artifact's digest is sha256:{digest}, but the pin says sha256:{wrong_pin}"
            )),
        "{refused}"
    );
    let refused = serve_refuses(
        work.path(),
        &format!(
            "[plugins.recipe-builder]\nsource = \"{reference}\"\ntrusted_keys = [\"{}\"]\ngrant = \"asked\"\n",
            stranger_pub.display()
        ),
    );
    assert!(
        refused.contains("plugin recipe-builder")
            && refused.contains("is not signed by a trusted key")
            && refused.contains("none of the 1 signatures"),
        "{refused}"
    );
    // wkg pushes without a signature: trusting keys refuses it.
    let refused = serve_refuses(
        work.path(),
        &format!(
            "[plugins.wkg-recipe]\nsource = \"{bare}\"\ntrusted_keys = [\"{}\"]\n",
            publisher_pub.display()
        ),
    );
    assert!(
        refused.contains("plugin wkg-recipe") && refused.contains("published unsigned"),
        "{refused}"
    );

    // `kiln plugin pull` writes a plugin directory the runtime loads.
    let pulled_dir = work.path().join("pulled");
    let pulled = succeeded(
        &kiln(&[
            "plugin",
            "pull",
            &reference,
            "--dir",
            pulled_dir.to_str().unwrap(),
            "--key",
            publisher_pub.to_str().unwrap(),
            "--sha256",
            &digest,
        ]),
        "kiln plugin pull",
    );
    assert!(pulled.contains("signed by:"), "{pulled}");
    assert!(std::fs::read(pulled_dir.join("recipe-builder.wasm")).unwrap() == component);
    let checked = succeeded(
        &kiln(&["plugin", "check", pulled_dir.to_str().unwrap()]),
        "kiln plugin check",
    );
    assert!(checked.contains(&format!("sha256: {sha256}")), "{checked}");
}
