//! `kiln plugin new`: a plugin crate that builds as it is, with its
//! `plugin.toml` pointing at the build output, so the directory can be
//! dropped into a `--plugin-dir` once built.

use std::path::{Path, PathBuf};

use super::PluginKind;

/// Why a scaffold could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("plugin name `{0}` is not valid: use lowercase letters, digits and `-` (it is the plugin id)")]
    BadName(String),
    #[error("{0} exists and is not empty; pick another name or remove it")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Write a new plugin crate `name` under `parent`; returns its directory.
pub fn new_plugin(
    parent: &Path,
    name: &str,
    kind: PluginKind,
    sdk_path: Option<&Path>,
) -> Result<PathBuf, ScaffoldError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-');
    if !valid {
        return Err(ScaffoldError::BadName(name.into()));
    }
    let dir = parent.join(name);
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(ScaffoldError::Exists(dir));
    }
    let crate_name = name.replace('-', "_");
    let feature = match kind {
        PluginKind::Builder => "builder",
        PluginKind::ContextSource => "context-source",
        PluginKind::CredentialStore => "credential-store",
        PluginKind::Detector => "detector",
        PluginKind::Notifier => "notifier",
        PluginKind::Attestor => "attestor",
    };
    // The contract version that brought the world.
    let api = match kind {
        PluginKind::Notifier => "0.2.0",
        PluginKind::Attestor => "0.3.0",
        _ => "0.1.0",
    };
    // By version, so a scaffold written by an installed `kiln` builds
    // anywhere; `--sdk-path` (a checkout's `sdk/`) for working against
    // unreleased changes. Never the directory this binary was compiled in.
    let (sdk, kit) = match sdk_path {
        Some(path) => (
            format!(
                "kiln-sdk = {{ path = {:?}, features = [\"{feature}\"] }}",
                path.display().to_string()
            ),
            format!(
                "kiln-plugin-test = {{ path = {:?} }}",
                path.join("test-kit").display().to_string()
            ),
        ),
        None => (
            format!("kiln-sdk = {{ version = \"0.1\", features = [\"{feature}\"] }}"),
            "kiln-plugin-test = \"0.1\"".to_string(),
        ),
    };
    let cargo_toml = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
{sdk}

# `cargo test` runs the plugin in the real Kiln runtime with fake host
# capabilities (tests/plugin.rs); nothing else is needed.
[dev-dependencies]
{kit}
tempfile = "3"
tokio = {{ version = "1", features = ["macros", "rt-multi-thread"] }}

# `cargo test` compiles the kit's wasmtime once; without debug info for
# dependencies that is faster and takes a fraction of the disk.
[profile.dev.package."*"]
debug = false

# Small components load fast.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true

# A plugin builds on its own, even inside another workspace's directory.
[workspace]
"#
    );
    let (kinds, permissions, source, test) = match kind {
        PluginKind::Builder => (
            format!("builder = [\"{name}\"]"),
            "# The host's BuildKit build; pushes only this build's own images.\nengine = [\"buildkit-build\"]",
            BUILDER_TEMPLATE,
            BUILDER_TEST,
        ),
        PluginKind::ContextSource => (
            format!("context-source = [\"{name}\"]"),
            "",
            SOURCE_TEMPLATE,
            SOURCE_TEST,
        ),
        PluginKind::CredentialStore => (
            "credential-store = true".to_string(),
            "",
            STORE_TEMPLATE,
            STORE_TEST,
        ),
        PluginKind::Detector => (
            "detector = true".to_string(),
            "",
            DETECTOR_TEMPLATE,
            DETECTOR_TEST,
        ),
        PluginKind::Notifier => (
            "notifier = true".to_string(),
            "# To send over HTTP, ask for the hosts (or \"*\": whichever the operator grants).\n# http = [\"*\"]",
            NOTIFIER_TEMPLATE,
            NOTIFIER_TEST,
        ),
        PluginKind::Attestor => (
            "attestor = true".to_string(),
            "# Nothing: it reads the image's filesystem, mounted read-only at /rootfs.",
            ATTESTOR_TEMPLATE,
            ATTESTOR_TEST,
        ),
    };
    let manifest = format!(
        r#"schema_version = 1
# The plugin id and version are Cargo.toml's [package] name and version.
api = "{api}"
description = "TODO: what {name} does"
authors = []
# Built by `cargo build --release --target wasm32-wasip2`.
component = "target/wasm32-wasip2/release/{crate_name}.wasm"

[kinds]
{kinds}

[permissions]
{permissions}

[limits]
memory_mib = 64
time_secs = 30
"#
    );
    let readme = format!(
        "# {name}\n\nA Kiln plugin.\n\n```sh\ncargo build --release --target wasm32-wasip2\ncargo test            # runs it in the Kiln runtime with fake host capabilities\nkiln plugin check .\nkiln serve --plugin-dir .. --config kiln.toml   # with [plugins.{name}] grant = \"asked\"\n```\n"
    );
    let files: [(&str, String); 6] = [
        ("Cargo.toml", cargo_toml),
        ("plugin.toml", manifest),
        ("src/lib.rs", source.replace("{name}", name)),
        ("tests/plugin.rs", test.replace("{name}", name)),
        ("README.md", readme),
        (".gitignore", "/target\n".into()),
    ];
    for (relative, contents) in files {
        let path = dir.join(relative);
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(path.parent().unwrap())?;
            std::fs::write(&path, contents)
        };
        write().map_err(|source| ScaffoldError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(dir)
}

const BUILDER_TEMPLATE: &str = r#"//! The `{name}` builder: builds the context's Dockerfile with the host's
//! BuildKit engine and pushes the build's images.

use kiln_sdk::builder::engine::{buildkit_build, BuildkitRequest};
use kiln_sdk::builder::{BuildOutput, BuildRequest, Builder, PluginError};

struct Plugin;

impl Builder for Plugin {
    fn build(request: BuildRequest) -> Result<BuildOutput, PluginError> {
        kiln_sdk::log::info(&format!("{name}: building {}", request.dockerfile));
        Ok(buildkit_build(&BuildkitRequest::from(&request))?.into())
    }
}

kiln_sdk::export_builder!(Plugin);
"#;

const BUILDER_TEST: &str = r#"//! `cargo test`: the plugin runs in the real Kiln runtime; the engine is
//! a fake that records what the builder asked for.

use kiln_plugin_test::{BuildCall, EngineCall, PluginHarness};

#[tokio::test]
async fn builds_the_dockerfile_into_the_builds_own_images() {
    let harness = PluginHarness::build_and_load(env!("CARGO_MANIFEST_DIR")).unwrap();
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("Dockerfile"), "FROM scratch\n").unwrap();

    let built = harness.build(BuildCall::default(), context.path()).await.unwrap();

    let output = built.result.expect("the build succeeds");
    assert_eq!(output.image_refs, BuildCall::default().image_refs);
    let [EngineCall::BuildkitBuild(request)] = built.engine.as_slice() else {
        panic!("expected one BuildKit build, got {:?}", built.engine);
    };
    assert_eq!(request.dockerfile, "Dockerfile");
    assert_eq!(request.tags, BuildCall::default().image_refs);
}
"#;

const SOURCE_TEMPLATE: &str = r#"//! The `{name}` context source: fills `/context` for a build whose
//! `contextUrl` is `{name}://...`.

use kiln_sdk::source::{ContextInfo, ContextSource, PluginError, SourceSpec};

struct Plugin;

impl ContextSource for Plugin {
    fn materialize(spec: SourceSpec) -> Result<ContextInfo, PluginError> {
        let url = spec
            .options
            .iter()
            .find(|kv| kv.key == "url")
            .map(|kv| kv.value.clone())
            .ok_or_else(|| PluginError::InvalidInput("no url given".into()))?;
        kiln_sdk::log::info(&format!("{name}: materializing {url}"));
        let dockerfile = "FROM scratch\n";
        std::fs::write("/context/Dockerfile", dockerfile)
            .map_err(|e| PluginError::Internal(format!("cannot write the Dockerfile: {e}")))?;
        Ok(ContextInfo {
            files: 1,
            bytes: dockerfile.len() as u64,
            file_modes: Vec::new(),
            symlinks: Vec::new(),
            summary: format!("wrote a Dockerfile for {url}"),
        })
    }
}

kiln_sdk::export_context_source!(Plugin);
"#;

const SOURCE_TEST: &str = r#"//! `cargo test`: the plugin runs in the real Kiln runtime and fills a
//! temporary context.

use kiln_plugin_test::PluginHarness;

#[tokio::test]
async fn writes_a_dockerfile_into_the_context() {
    let harness = PluginHarness::build_and_load(env!("CARGO_MANIFEST_DIR")).unwrap();

    let run = harness.materialize(&[("url", "{name}://example")], None).await.unwrap();

    let info = run.result.expect("the context is materialized");
    assert_eq!(info.files, 1);
    let dockerfile = std::fs::read_to_string(run.context.path().join("Dockerfile")).unwrap();
    assert!(dockerfile.starts_with("FROM "), "{dockerfile}");
}

#[tokio::test]
async fn a_missing_url_is_the_callers_mistake() {
    let harness = PluginHarness::build_and_load(env!("CARGO_MANIFEST_DIR")).unwrap();
    let run = harness.materialize(&[], None).await.unwrap();
    assert!(matches!(run.result, Err(kiln_plugin_test::PluginError::InvalidInput(_))));
}
"#;

const STORE_TEMPLATE: &str = r#"//! The `{name}` credential store: read-only credentials from the directory
//! the operator mounts for it (`[credentials] directory = ...`, seen here as
//! `/credentials`): one file per organization, `KEY=VALUE` lines, where the
//! host asks for keys such as `registry/HOST`, `git/HOST` and `build/NAME`.

use kiln_sdk::credentials::{CredentialStore, PluginError, Secret};

struct Plugin;

/// The organization's `KEY=VALUE` lines; no file means no credentials.
fn read(org: &str) -> Result<Vec<(String, String)>, PluginError> {
    if org.is_empty() || !org.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(PluginError::InvalidInput(format!("organization {org:?} is not valid")));
    }
    let text = match std::fs::read_to_string(format!("/credentials/{org}")) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(PluginError::Internal(format!("cannot read /credentials/{org}: {e}"))),
    };
    Ok(text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
        .collect())
}

impl CredentialStore for Plugin {
    fn get(org: String, key: String) -> Result<Option<Secret<Vec<u8>>>, PluginError> {
        let found = read(&org)?.into_iter().find(|(k, _)| *k == key);
        Ok(found.map(|(_, value)| Secret::new(value.into_bytes())))
    }

    fn list_keys(org: String) -> Result<Vec<String>, PluginError> {
        Ok(read(&org)?.into_iter().map(|(key, _)| key).collect())
    }
}

kiln_sdk::export_credential_store!(Plugin);
"#;

const STORE_TEST: &str = r#"//! `cargo test`: the plugin runs in the real Kiln runtime with a temporary
//! directory mounted at `/credentials`.

use kiln_plugin_test::{PluginError, PluginHarness};

#[tokio::test]
async fn serves_an_organizations_credentials_read_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("acme"), "registry/ghcr.io=token-1\n").unwrap();
    let harness = PluginHarness::build_and_load(env!("CARGO_MANIFEST_DIR"))
        .unwrap()
        .with_credentials_dir(dir.path());

    let value = harness.get("acme", "registry/ghcr.io").await.unwrap().result.unwrap();
    assert_eq!(value.as_deref(), Some(&b"token-1"[..]));
    let keys = harness.list_keys("acme").await.unwrap().result.unwrap();
    assert_eq!(keys, vec!["registry/ghcr.io".to_string()]);
    let none = harness.get("other-org", "registry/ghcr.io").await.unwrap().result.unwrap();
    assert_eq!(none, None);

    let put = harness.put("acme", "build/X", b"y").await.unwrap().result;
    assert!(matches!(put, Err(PluginError::Denied(_))), "{put:?}");
}
"#;

const NOTIFIER_TEMPLATE: &str = r#"//! The `{name}` notifier: told once per delivery attempt of each build
//! event an organization subscribed it to (`POST /v1/webhooks {notifier:
//! {plugin: "{name}", options}}`).

use kiln_sdk::notifier::{Delivered, Notifier, NotifyError, NotifyRequest};

struct Plugin;

impl Notifier for Plugin {
    fn notify(request: NotifyRequest) -> Result<Delivered, NotifyError> {
        let event = &request.event;
        let line = format!(
            "{} #{} {} ({})",
            event.name, event.number, event.status, event.event_type
        );
        // TODO: send it somewhere. Outgoing HTTP is `wasi:http` (the `wasi`
        // crate), to the hosts the operator grants; Kiln's `http-post`
        // plugin is a worked example. Answer `NotifyError::Retry` for what
        // another attempt could fix (a timeout, a 5xx), `GiveUp` otherwise.
        kiln_sdk::log::info(&line);
        Ok(Delivered {
            status: None,
            summary: line,
        })
    }
}

kiln_sdk::export_notifier!(Plugin);
"#;

const NOTIFIER_TEST: &str = r#"//! `cargo test`: the plugin runs in the real Kiln runtime.

use kiln_plugin_test::{NotifyCall, PluginHarness};

#[tokio::test]
async fn a_finished_build_is_delivered() {
    let harness = PluginHarness::build_and_load(env!("CARGO_MANIFEST_DIR")).unwrap();

    let notified = harness.notify(NotifyCall::default()).await.unwrap();

    let delivered = notified.result.unwrap();
    assert_eq!(delivered.summary, "app #3 SUCCEEDED (build.succeeded)");
    assert!(notified.log.iter().any(|l| l.text.contains("app #3 SUCCEEDED")));
}
"#;

const ATTESTOR_TEMPLATE: &str = r#"//! The `{name}` attestor: says what is in every pushed image. The host
//! mounts the image's filesystem read-only at `/rootfs`, then signs the
//! answer and attaches it beside the image as an in-toto attestation.

use std::path::Path;

use kiln_sdk::attestor::{AttestRequest, Attestation, Attestor, PluginError};

struct Plugin;

impl Attestor for Plugin {
    fn attest(request: AttestRequest) -> Result<Attestation, PluginError> {
        // TODO: say something useful. This one reports the image's
        // `/etc/os-release` ID, as a predicate of its own type.
        let os_release = std::fs::read_to_string(Path::new(&request.rootfs).join("etc/os-release"))
            .unwrap_or_default();
        let id = os_release
            .lines()
            .find_map(|line| line.strip_prefix("ID="))
            .unwrap_or("unknown")
            .trim_matches('"')
            .to_string();
        Ok(Attestation {
            predicate_type: "https://example.com/{name}/v1".into(),
            predicate: format!("{{\"os\": \"{id}\", \"digest\": \"{}\"}}", request.image.digest),
            summary: format!("os {id}"),
        })
    }
}

kiln_sdk::export_attestor!(Plugin);
"#;

const ATTESTOR_TEST: &str = r#"//! `cargo test`: the plugin runs in the real Kiln runtime on a temporary
//! image filesystem.

use kiln_plugin_test::{AttestCall, PluginHarness};

#[tokio::test]
async fn an_image_is_attested() {
    let harness = PluginHarness::build_and_load(env!("CARGO_MANIFEST_DIR")).unwrap();
    let rootfs = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(rootfs.path().join("etc")).unwrap();
    std::fs::write(rootfs.path().join("etc/os-release"), "ID=debian\n").unwrap();

    let attested = harness.attest(rootfs.path(), AttestCall::default()).await.unwrap();

    let attestation = attested.result.unwrap();
    assert_eq!(attestation.summary, "os debian");
    assert!(attestation.predicate.contains("\"os\": \"debian\""));
}
"#;

const DETECTOR_TEMPLATE: &str = r#"//! The `{name}` detector: says what a directory of the context holds and
//! the Dockerfile it would be built with (`POST /v1/wizard:detect`,
//! `kiln init`). The context is mounted read-only at `/context`.

use std::path::Path;

use kiln_sdk::detector::{DetectRequest, Detector, PluginError, Project};

struct Plugin;

impl Detector for Plugin {
    fn detect(request: DetectRequest) -> Result<Vec<Project>, PluginError> {
        let dir = Path::new("/context").join(&request.path);
        // TODO: recognize your stack. This one knows a directory by its
        // `Dockerfile` only.
        let Ok(dockerfile) = std::fs::read_to_string(dir.join("Dockerfile")) else {
            return Ok(Vec::new());
        };
        Ok(vec![Project {
            path: request.path,
            stack: "dockerfile".into(),
            tool: String::new(),
            reasons: vec!["Dockerfile found: it is used as is".into()],
            has_dockerfile: true,
            dockerfile,
            dockerignore: String::new(),
            port: None,
        }])
    }
}

kiln_sdk::export_detector!(Plugin);
"#;

const DETECTOR_TEST: &str = r#"//! `cargo test`: the plugin runs in the real Kiln runtime on a temporary
//! context.

use kiln_plugin_test::PluginHarness;

#[tokio::test]
async fn a_directory_with_a_dockerfile_is_one_project() {
    let harness = PluginHarness::build_and_load(env!("CARGO_MANIFEST_DIR")).unwrap();
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("Dockerfile"), "FROM scratch\n").unwrap();

    let projects = harness.detect(context.path(), "", &[]).await.unwrap().result.unwrap();

    assert_eq!(projects.len(), 1);
    assert!(projects[0].has_dockerfile);
    let empty = tempfile::tempdir().unwrap();
    let none = harness.detect(empty.path(), "", &[]).await.unwrap().result.unwrap();
    assert!(none.is_empty());
}
"#;
