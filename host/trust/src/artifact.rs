//! Plugins as OCI artifacts, in the layout the Wasm ecosystem uses (the
//! CNCF Wasm OCI artifact layout that `wkg oci push` writes): an image
//! manifest whose config is `application/vnd.wasm.config.v0+json` and whose
//! one layer is the component, `application/wasm`.
//!
//! Kiln adds only annotations, which other tools ignore: the plugin's
//! `plugin.toml` rides on the manifest ([`PLUGIN_MANIFEST_ANNOTATION`]) so
//! one pull gives the whole plugin, and the publisher signs the manifest's
//! digest in cosign's key-based format (`sha256-<hex>.sig`, also an OCI 1.1
//! referrer). A component another tool pushed has no `plugin.toml`: the
//! host that loads it writes one from the operator's configuration.
//!
//! What a pull checks before anything is written: the layout, the
//! artifact's digest against the operator's pin, and a signature by one of
//! the operator's trusted keys ([`fetch_verified`]). The pin is the
//! manifest's digest (what `kiln plugin push` and `wkg oci push` print),
//! not the component's alone: the manifest carries the `plugin.toml`, whose
//! permissions a `grant = "asked"` accepts, so it must be pinned too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use p256::ecdsa::{SigningKey, VerifyingKey};

use crate::cosign::{self, Attached};
use crate::registry::{self, Blob, Credentials, NewManifest, Reference, RegistryError};
use crate::verify::{self, VerifyError};

/// The Wasm artifact's config media type.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The component layer's media type.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The manifest annotation holding the plugin's `plugin.toml`, as written.
pub const PLUGIN_MANIFEST_ANNOTATION: &str = "dev.kiln.plugin.manifest";
/// The layer annotation OCI tools name the file on disk by.
const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
const VERSION_ANNOTATION: &str = "org.opencontainers.image.version";
const DESCRIPTION_ANNOTATION: &str = "org.opencontainers.image.description";

/// The largest component a pull reads (the runtime's own plugins are a few
/// MiB; a component is compiled whole, so it has to fit in memory anyway).
pub const COMPONENT_LIMIT: u64 = 256 << 20;

/// Why a plugin could not be published or fetched.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{reference} is not a Wasm component artifact: {reason}")]
    NotWasm { reference: String, reason: String },
    #[error("{reference}: the artifact's digest is sha256:{found}, but the pin says sha256:{pinned} (the tag was moved); if the new one is trusted, pin it (sha256 = \"{found}\")")]
    PinMismatch {
        reference: String,
        pinned: String,
        found: String,
    },
    #[error("{reference} is not signed by a trusted key ({keys} trusted): {reason}")]
    Untrusted {
        reference: String,
        keys: usize,
        reason: String,
    },
    #[error("the plugin directory {path}: {message}")]
    Plugin { path: PathBuf, message: String },
}

/// A plugin read from a registry, checked as [`fetch_verified`] was asked.
#[derive(Debug, Clone)]
pub struct PluginArtifact {
    /// `host/path@sha256:…` of the manifest.
    pub pinned_reference: String,
    /// The component, exactly as pushed.
    pub component: Vec<u8>,
    /// Its sha256, hex.
    pub component_sha256: String,
    /// The manifest's sha256, hex (what a pin names).
    pub digest_hex: String,
    /// Its `plugin.toml`, when Kiln (or anyone adding the annotation)
    /// pushed it; `None` for a bare component.
    pub plugin_toml: Option<String>,
    /// The version the artifact says it is (`org.opencontainers.image.version`).
    pub version: Option<String>,
    /// Which trusted key signed it, by index; `None` when no keys were given.
    pub signed_by: Option<usize>,
}

/// What [`push_plugin`] published.
#[derive(Debug, Clone)]
pub struct Published {
    /// `host/path:tag`.
    pub reference: String,
    /// The manifest's digest.
    pub digest: String,
    /// The manifest's sha256, hex: what operators pin.
    pub digest_hex: String,
    /// The component's sha256, hex.
    pub component_sha256: String,
    /// The signature, when a key was given.
    pub signature: Option<Attached>,
}

/// A plugin directory read for publishing: its manifest text and component.
#[derive(Debug, Clone)]
pub struct PluginFiles {
    pub id: String,
    pub version: String,
    pub description: String,
    pub plugin_toml: String,
    pub component: Vec<u8>,
}

impl PluginFiles {
    /// Read `dir`'s `plugin.toml` and the component it names (its `id` and
    /// `version` as written, or from a `Cargo.toml` beside it).
    pub fn read(dir: &Path) -> Result<Self, ArtifactError> {
        let failed = |message: String| ArtifactError::Plugin {
            path: dir.to_path_buf(),
            message,
        };
        let manifest_path = dir.join("plugin.toml");
        let plugin_toml = std::fs::read_to_string(&manifest_path)
            .map_err(|e| failed(format!("cannot read plugin.toml: {e}")))?;
        let manifest: toml::Table = plugin_toml
            .parse()
            .map_err(|e| failed(format!("plugin.toml is not valid TOML: {e}")))?;
        let text = |table: &toml::Table, key: &str| {
            table.get(key).and_then(|v| v.as_str()).map(str::to_string)
        };
        // `id` and `version` may come from the crate (as the runtime reads them).
        let package = std::fs::read_to_string(dir.join("Cargo.toml"))
            .ok()
            .and_then(|t| t.parse::<toml::Table>().ok())
            .and_then(|t| t.get("package").and_then(|p| p.as_table()).cloned())
            .unwrap_or_default();
        let id = text(&manifest, "id")
            .filter(|s| !s.is_empty())
            .or_else(|| text(&package, "name"))
            .ok_or_else(|| {
                failed("plugin.toml has no `id` (and no Cargo.toml names the crate)".into())
            })?;
        let version = text(&manifest, "version")
            .filter(|s| !s.is_empty())
            .or_else(|| text(&package, "version"))
            .unwrap_or_else(|| "0.0.0".into());
        let component_path = text(&manifest, "component")
            .ok_or_else(|| failed("plugin.toml names no `component` file".into()))?;
        let component_path = dir.join(component_path);
        let component = std::fs::read(&component_path).map_err(|e| {
            failed(format!(
                "cannot read the component {}: {e} (is it built? cargo build --release --target wasm32-wasip2)",
                component_path.display()
            ))
        })?;
        // The published manifest stands alone: the crate beside it is not.
        let plugin_toml = if text(&manifest, "id").is_some_and(|s| !s.is_empty())
            && text(&manifest, "version").is_some_and(|s| !s.is_empty())
        {
            plugin_toml
        } else {
            let mut manifest = manifest.clone();
            manifest.insert("id".into(), id.clone().into());
            manifest.insert("version".into(), version.clone().into());
            toml::to_string(&manifest).map_err(|e| failed(e.to_string()))?
        };
        Ok(PluginFiles {
            id,
            version,
            description: text(&manifest, "description").unwrap_or_default(),
            plugin_toml,
            component,
        })
    }
}

/// Publish `plugin` under `reference` (`host/path:tag`) in the Wasm
/// artifact layout, its `plugin.toml` annotated on the manifest, and sign
/// the manifest's digest with `key` (the publisher's).
///
/// The config's timestamp is fixed, so publishing the same plugin again
/// gives the same digest.
pub async fn push_plugin(
    reference: &str,
    plugin: &PluginFiles,
    key: Option<&SigningKey>,
    credentials: Option<Credentials<'_>>,
) -> Result<Published, ArtifactError> {
    let parsed = Reference::parse(reference)?;
    if parsed.wanted.starts_with("sha256:") {
        return Err(RegistryError {
            reference: reference.to_string(),
            message: "publish to a tag (host/path:tag), not a digest".into(),
        }
        .into());
    }
    let repository = parsed.repository();
    let component_sha256 = registry::sha256_digest(&plugin.component);
    let config = serde_json::json!({
        "created": "1970-01-01T00:00:00Z",
        "author": null,
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [component_sha256],
        "component": null,
    });
    let layer = Blob {
        media_type: WASM_LAYER_MEDIA_TYPE,
        bytes: plugin.component.clone(),
        annotations: [(TITLE_ANNOTATION.to_string(), format!("{}.wasm", plugin.id))].into(),
    };
    let mut annotations = BTreeMap::from([
        (
            PLUGIN_MANIFEST_ANNOTATION.to_string(),
            plugin.plugin_toml.clone(),
        ),
        (VERSION_ANNOTATION.to_string(), plugin.version.clone()),
    ]);
    if !plugin.description.is_empty() {
        annotations.insert(DESCRIPTION_ANNOTATION.into(), plugin.description.clone());
    }
    let manifest = NewManifest {
        config: Blob {
            media_type: WASM_CONFIG_MEDIA_TYPE,
            bytes: serde_json::to_vec(&config).expect("the config serializes"),
            annotations: BTreeMap::new(),
        },
        layers: vec![layer],
        artifact_type: None,
        subject: None,
        annotations,
    };
    let pushed =
        registry::push_manifest(&repository, &parsed.wanted, &manifest, credentials).await?;
    let signature = match key {
        Some(key) => {
            Some(cosign::attach_signature(key, &repository, &pushed.digest, credentials).await?)
        }
        None => None,
    };
    Ok(Published {
        reference: format!("{repository}:{}", parsed.wanted),
        digest_hex: pushed.digest.trim_start_matches("sha256:").to_string(),
        digest: pushed.digest,
        component_sha256: component_sha256.trim_start_matches("sha256:").to_string(),
        signature,
    })
}

/// Read the plugin at `reference` and check it: the Wasm layout, the
/// manifest against `pin` (its sha256, hex, with or without `sha256:`),
/// and, when `trusted` is not empty, a signature of the manifest by one of
/// those keys. Nothing is returned that failed a check.
pub async fn fetch_verified(
    reference: &str,
    pin: Option<&str>,
    trusted: &[VerifyingKey],
    credentials: Option<Credentials<'_>>,
) -> Result<PluginArtifact, ArtifactError> {
    let parsed = Reference::parse(reference)?;
    let repository = parsed.repository();
    let mut session = parsed.pull_session(credentials);
    let raw = session
        .raw_manifest_if_present(&parsed.wanted)
        .await?
        .ok_or_else(|| RegistryError {
            reference: reference.to_string(),
            message: "the registry has no such artifact (404: check the name and tag)".into(),
        })?;
    let digest = registry::sha256_digest(&raw);
    let digest_hex = digest.trim_start_matches("sha256:").to_string();
    // The pin first: a moved tag is refused before anything else is read.
    if let Some(pin) = pin {
        let pinned = pin.trim_start_matches("sha256:").to_ascii_lowercase();
        if pinned != digest_hex {
            return Err(ArtifactError::PinMismatch {
                reference: reference.to_string(),
                pinned,
                found: digest_hex,
            });
        }
    }
    let not_wasm = |reason: String| ArtifactError::NotWasm {
        reference: reference.to_string(),
        reason,
    };
    let manifest: serde_json::Value = serde_json::from_slice(&raw)
        .map_err(|e| not_wasm(format!("its manifest is not JSON: {e}")))?;
    let config_type = manifest["config"]["mediaType"].as_str().unwrap_or_default();
    if config_type != WASM_CONFIG_MEDIA_TYPE {
        return Err(not_wasm(format!(
            "its config is {config_type:?}, not {WASM_CONFIG_MEDIA_TYPE} (an image, or an index?)"
        )));
    }
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    let [layer] = layers.as_slice() else {
        return Err(not_wasm(format!(
            "it has {} layers, not one component",
            layers.len()
        )));
    };
    if layer["mediaType"] != WASM_LAYER_MEDIA_TYPE {
        return Err(not_wasm(format!(
            "its layer is {}, not {WASM_LAYER_MEDIA_TYPE}",
            layer["mediaType"]
        )));
    }
    // The download is checked against the layer's digest as it streams.
    let layer_digest = layer["digest"].as_str().unwrap_or_default().to_string();
    let signed_by = if trusted.is_empty() {
        None
    } else {
        let pinned_reference = format!("{repository}@{digest}");
        let attachments = verify::fetch(&pinned_reference, credentials).await;
        let untrusted = |reason: String| ArtifactError::Untrusted {
            reference: reference.to_string(),
            keys: trusted.len(),
            reason,
        };
        let attachments = attachments.map_err(|e| untrusted(e.to_string()))?;
        let mut last = None;
        let signer = trusted
            .iter()
            .position(|key| match attachments.verify_signature(key) {
                Ok(()) => true,
                Err(e) => {
                    last = Some(e);
                    false
                }
            });
        match (signer, last) {
            (Some(index), _) => Some(index),
            (None, Some(VerifyError::NotSigned { tag, .. })) => {
                return Err(untrusted(format!(
                    "nothing is under {tag}: it was published unsigned (kiln plugin push --key)"
                )))
            }
            (None, Some(VerifyError::BadSignature { tag, checked, .. })) => {
                return Err(untrusted(format!(
                    "none of the {checked} signatures under {tag} verifies with a trusted key: it was signed by another publisher, or altered"
                )))
            }
            (None, Some(VerifyError::SignsOtherImage { signed, .. })) => {
                return Err(untrusted(format!(
                    "its signature signs {signed}, not this artifact"
                )))
            }
            (None, last) => {
                return Err(untrusted(
                    last.map(|e| e.to_string()).unwrap_or_default(),
                ))
            }
        }
    };
    let component = session.blob(&layer_digest, COMPONENT_LIMIT).await?;
    let annotation = |key: &str| manifest["annotations"][key].as_str().map(str::to_string);
    Ok(PluginArtifact {
        pinned_reference: format!("{repository}@{digest}"),
        component,
        component_sha256: layer_digest.trim_start_matches("sha256:").to_string(),
        digest_hex,
        plugin_toml: annotation(PLUGIN_MANIFEST_ANNOTATION),
        version: annotation(VERSION_ANNOTATION),
        signed_by,
    })
}

impl PluginArtifact {
    /// The id its `plugin.toml` gives, if it has one that does.
    pub fn manifest_id(&self) -> Option<String> {
        self.plugin_toml
            .as_deref()
            .and_then(|text| text.parse::<toml::Table>().ok())
            .and_then(|t| t.get("id").and_then(|v| v.as_str()).map(str::to_string))
            .filter(|id| !id.is_empty())
    }

    /// The plugin's id: its `plugin.toml`'s, else the repository's last
    /// path segment.
    pub fn id(&self) -> String {
        self.manifest_id().unwrap_or_else(|| {
            let repository = self.pinned_reference.split('@').next().unwrap_or_default();
            repository
                .rsplit('/')
                .next()
                .unwrap_or("plugin")
                .to_string()
        })
    }

    /// Write it as a plugin directory the runtime loads: the component as
    /// `<id>.wasm` and its `plugin.toml` (`plugin_toml`, or the artifact's
    /// own) pointing at it, with the component's sha256 so the runtime
    /// checks it again. Files are written beside and renamed into place.
    pub fn write_dir(&self, dir: &Path, id: &str, plugin_toml: &str) -> Result<(), ArtifactError> {
        let failed = |message: String| ArtifactError::Plugin {
            path: dir.to_path_buf(),
            message,
        };
        let mut manifest: toml::Table = plugin_toml
            .parse()
            .map_err(|e| failed(format!("its plugin.toml is not valid TOML: {e}")))?;
        let file = format!("{id}.wasm");
        manifest.insert("component".into(), file.clone().into());
        manifest.insert("sha256".into(), self.component_sha256.clone().into());
        let text = toml::to_string(&manifest).map_err(|e| failed(e.to_string()))?;
        std::fs::create_dir_all(dir).map_err(|e| failed(format!("cannot create it: {e}")))?;
        for (name, bytes) in [
            (file.as_str(), self.component.as_slice()),
            ("plugin.toml", text.as_bytes()),
        ] {
            let target = dir.join(name);
            let partial = dir.join(format!(".{name}.partial"));
            std::fs::write(&partial, bytes)
                .and_then(|_| std::fs::rename(&partial, &target))
                .map_err(|e| failed(format!("cannot write {name}: {e}")))?;
        }
        Ok(())
    }
}
