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
    };
    // By version, so a scaffold written by an installed `kiln` builds
    // anywhere; `--sdk-path` (a checkout's `sdk/`) for working against
    // unreleased changes. Never the directory this binary was compiled in.
    let sdk = match sdk_path {
        Some(path) => format!(
            "kiln-sdk = {{ path = {:?}, features = [\"{feature}\"] }}",
            path.display().to_string()
        ),
        None => format!("kiln-sdk = {{ version = \"0.1\", features = [\"{feature}\"] }}"),
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
    let (kinds, permissions, source) = match kind {
        PluginKind::Builder => (
            format!("builder = [\"{name}\"]"),
            "# The host's BuildKit build; pushes only this build's own images.\nengine = [\"buildkit-build\"]",
            BUILDER_TEMPLATE,
        ),
        PluginKind::ContextSource => (
            format!("context-source = [\"{name}\"]"),
            "",
            SOURCE_TEMPLATE,
        ),
        PluginKind::CredentialStore => ("credential-store = true".to_string(), "", STORE_TEMPLATE),
        PluginKind::Detector => ("detector = true".to_string(), "", DETECTOR_TEMPLATE),
    };
    let manifest = format!(
        r#"schema_version = 1
id = "{name}"
version = "0.1.0"
api = "0.1.0"
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
        "# {name}\n\nA Kiln plugin.\n\n```sh\ncargo build --release --target wasm32-wasip2\nkiln plugin check .\nkiln serve --plugin-dir .. --config kiln.toml   # with [plugins.{name}] grant = \"asked\"\n```\n"
    );
    let files: [(&str, String); 5] = [
        ("Cargo.toml", cargo_toml),
        ("plugin.toml", manifest),
        ("src/lib.rs", source.replace("{name}", name)),
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
use kiln_sdk::builder::{BuildOutput, BuildRequest, Builder, PluginError, PluginInfo};

struct Plugin;

impl Builder for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            description: "{name}: a Kiln builder".into(),
        }
    }

    fn build(request: BuildRequest) -> Result<BuildOutput, PluginError> {
        kiln_sdk::log::info(&format!("{name}: building {}", request.dockerfile));
        let image = buildkit_build(&BuildkitRequest {
            dockerfile: request.dockerfile,
            dockerfile_inline: None,
            dockerignore_inline: None,
            tags: request.image_refs,
            build_args: request.build_args,
            target: request.target,
            platform: request.platform,
            no_cache: request.no_cache,
            secrets: request.secrets,
            labels: Vec::new(),
        })?;
        Ok(image.into())
    }
}

kiln_sdk::export_builder!(Plugin);
"#;

const SOURCE_TEMPLATE: &str = r#"//! The `{name}` context source: fills `/context` for a build whose
//! `contextUrl` is `{name}://...`.

use kiln_sdk::source::{ContextInfo, ContextSource, PluginError, PluginInfo, SourceSpec};

struct Plugin;

impl ContextSource for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            description: "{name}: a Kiln context source".into(),
        }
    }

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

const STORE_TEMPLATE: &str = r#"//! The `{name}` credential store. This template keeps values in memory for
//! the life of one instance; a real store reads a file or a vault.

use std::cell::RefCell;
use std::collections::BTreeMap;

use kiln_sdk::credentials::{CredentialStore, PluginError, PluginInfo};

thread_local! {
    static VALUES: RefCell<BTreeMap<(String, String), Vec<u8>>> = RefCell::new(BTreeMap::new());
}

struct Plugin;

impl CredentialStore for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            description: "{name}: a Kiln credential store".into(),
        }
    }

    fn get(org: String, key: String) -> Result<Option<Vec<u8>>, PluginError> {
        Ok(VALUES.with(|v| v.borrow().get(&(org, key)).cloned()))
    }

    fn put(org: String, key: String, value: Vec<u8>) -> Result<(), PluginError> {
        VALUES.with(|v| v.borrow_mut().insert((org, key), value));
        Ok(())
    }

    fn delete(org: String, key: String) -> Result<bool, PluginError> {
        Ok(VALUES.with(|v| v.borrow_mut().remove(&(org, key)).is_some()))
    }

    fn list_keys(org: String) -> Result<Vec<String>, PluginError> {
        Ok(VALUES.with(|v| {
            v.borrow()
                .keys()
                .filter(|(o, _)| *o == org)
                .map(|(_, k)| k.clone())
                .collect()
        }))
    }
}

kiln_sdk::export_credential_store!(Plugin);
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
