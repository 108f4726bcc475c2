//! Plugins pulled from a registry at start-up: `[plugins.<id>] source =
//! "host/path:tag"` with a `sha256` pin and/or `trusted_keys`
//! ([`crate::config::PluginSource`]).
//!
//! Each is fetched and checked by `kiln_trust::artifact` (the Wasm layout,
//! the pin, a trusted publisher's signature), written under the data
//! directory (`plugin-artifacts/<id>/<manifest sha256>/`) and loaded from there like
//! any plugin directory. A pinned plugin already there is loaded without
//! the registry (the runtime checks the component against the pin again);
//! one with trusted keys is checked against the registry at every start,
//! since its signature lives there. Any failure stops the start, naming
//! the plugin: an operator who pinned a plugin wants it or nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_trust::artifact::{self, ArtifactError};

use super::{PluginGrant, PluginRuntime};
use crate::config::PluginSource;

/// Why a plugin from a registry was not loaded.
#[derive(Debug, thiserror::Error)]
#[error("plugin {id} refused at start-up: {message}")]
pub struct SourceError {
    pub id: String,
    pub reference: String,
    pub message: String,
}

/// Fetch, check and load every configured source into `runtime`.
pub async fn load_sources(
    runtime: &mut PluginRuntime,
    sources: &BTreeMap<String, PluginSource>,
    grants: &BTreeMap<String, PluginGrant>,
    artifacts_dir: &Path,
) -> Result<(), SourceError> {
    for (id, source) in sources {
        let failed = |message: String| SourceError {
            id: id.clone(),
            reference: source.reference.clone(),
            message,
        };
        let (dir, origin) = materialize(runtime, id, source, grants.get(id), artifacts_dir)
            .await
            .map_err(failed)?;
        runtime
            .load_one_from(&dir, grants, origin)
            .map_err(|e| failed(format!("{}: {}", source.reference, e.message)))?;
    }
    Ok(())
}

/// The plugin's directory under `artifacts_dir`: from an earlier pull when
/// the pin names one, else pulled and checked now. Answers it and where
/// the plugin came from.
async fn materialize(
    runtime: &PluginRuntime,
    id: &str,
    source: &PluginSource,
    grant: Option<&PluginGrant>,
    artifacts_dir: &Path,
) -> Result<(PathBuf, String), String> {
    let keys = source
        .trusted_keys
        .iter()
        .map(|path| kiln_trust::cosign::public_key_from_file(path))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: trusted_keys: {e}", source.reference))?;
    if let Some(pin) = &source.sha256 {
        let dir = artifacts_dir.join(id).join(pin);
        if keys.is_empty() && dir.join("plugin.toml").is_file() {
            return Ok((
                dir,
                format!("{} (sha256 {pin}, pulled earlier)", source.reference),
            ));
        }
    }
    let pulled = artifact::fetch_verified(&source.reference, source.sha256.as_deref(), &keys, None)
        .await
        .map_err(|e| match e {
            // Its own message names the reference already.
            ArtifactError::Registry(e) => format!("cannot pull {e}"),
            other => other.to_string(),
        })?;
    let manifest = match &pulled.plugin_toml {
        Some(text) => {
            if let Some(named) = pulled.manifest_id().filter(|named| named != id) {
                return Err(format!(
                    "{} is the plugin `{named}`; configure it as [plugins.{named}]",
                    source.reference
                ));
            }
            text.clone()
        }
        None => manifest_for_bare_component(runtime, id, &pulled, grant)?,
    };
    let dir = artifacts_dir.join(id).join(&pulled.digest_hex);
    pulled
        .write_dir(&dir, id, &manifest)
        .map_err(|e| e.to_string())?;
    let signed = match pulled.signed_by {
        Some(index) => format!(
            ", signed by {}",
            source.trusted_keys[index]
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
        None => String::new(),
    };
    tracing::info!(
        plugin = id,
        reference = %source.reference,
        digest = %pulled.pinned_reference,
        sha256 = %pulled.component_sha256,
        "plugin pulled{signed}"
    );
    Ok((dir, format!("{}{signed}", pulled.pinned_reference)))
}

/// A `plugin.toml` for a component pushed without one (`wkg oci push`):
/// its world from the component itself, provided under the plugin's id,
/// asking for nothing beyond what the operator's grant lists (the grant is
/// the whole of what it may do).
fn manifest_for_bare_component(
    runtime: &PluginRuntime,
    id: &str,
    pulled: &artifact::PluginArtifact,
    grant: Option<&PluginGrant>,
) -> Result<String, String> {
    use super::World;
    let world = runtime.component_world(&pulled.component)?;
    let mut kinds = toml::Table::new();
    let name = || toml::Value::Array(vec![id.into()]);
    match world {
        World::Builder => {
            kinds.insert("builder".into(), name());
        }
        World::ContextSource => {
            kinds.insert("context-source".into(), name());
        }
        World::CredentialStore => {
            kinds.insert("credential-store".into(), true.into());
        }
        World::Detector => {
            kinds.insert("detector".into(), true.into());
        }
        World::Notifier => {
            kinds.insert("notifier".into(), true.into());
        }
        World::Attestor => {
            kinds.insert("attestor".into(), true.into());
        }
    }
    let mut manifest = toml::Table::new();
    manifest.insert("schema_version".into(), 1.into());
    manifest.insert("id".into(), id.into());
    manifest.insert(
        "version".into(),
        pulled
            .version
            .clone()
            .unwrap_or_else(|| "0.0.0".into())
            .into(),
    );
    manifest.insert("api".into(), world.contract_version().into());
    manifest.insert(
        "description".into(),
        format!(
            "{} (no plugin.toml: its grant is what it may do)",
            pulled.pinned_reference
        )
        .into(),
    );
    manifest.insert("kinds".into(), kinds.into());
    let asks = grant
        .map(|g| g.rights(&super::Permissions::default()))
        .unwrap_or_default();
    let asks = toml::Table::try_from(&asks).expect("permissions serialize");
    manifest.insert("permissions".into(), asks.into());
    Ok(toml::to_string(&manifest).expect("a manifest serializes"))
}
