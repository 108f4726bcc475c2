//! Kiln credential store `file-credentials`: an organization's credentials
//! come from `<org>.json` in the directory the operator mounts for it
//! (`[credentials] directory = ...`, seen here as `/credentials`), in the
//! same shape as `PUT /v1/secrets`:
//!
//! ```json
//! {
//!   "registryCredentials": { "registry.example.com": { "username": "ci", "password": "..." } },
//!   "gitCredentials": { "*": { "username": "ci", "token": "..." } },
//!   "buildSecrets": { "NPM_TOKEN": "..." },
//!   "signingKey": "-----BEGIN PRIVATE KEY-----\n..."
//! }
//! ```
//!
//! `signingKey` (optional) is the organization's own ECDSA P-256 key, PEM:
//! Kiln signs its images with it instead of the key it would make.
//!
//! The file is read on every call, so a rotated secret takes effect at the
//! next build. The store is read-only: changes go through the file.

use std::collections::BTreeMap;

use kiln_sdk::credentials::{CredentialStore, PluginError, Secret};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
struct Credential {
    #[serde(default)]
    username: String,
    #[serde(default, alias = "token")]
    password: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct OrgFile {
    #[serde(default)]
    registry_credentials: BTreeMap<String, Credential>,
    #[serde(default)]
    git_credentials: BTreeMap<String, Credential>,
    #[serde(default)]
    build_secrets: BTreeMap<String, String>,
    #[serde(default)]
    signing_key: Option<String>,
}

/// `/credentials/<org>.json`; a missing file is an organization with no
/// credentials.
fn read(org: &str) -> Result<OrgFile, PluginError> {
    let valid = !org.is_empty()
        && org
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(PluginError::InvalidInput(format!(
            "organization name {org:?} is not valid"
        )));
    }
    let path = format!("/credentials/{org}.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(OrgFile::default()),
        Err(e) => return Err(PluginError::Internal(format!("cannot read {path}: {e}"))),
    };
    serde_json::from_str(&text).map_err(|e| {
        PluginError::InvalidInput(format!(
            "{path} is not valid: {e} (expected {{\"registryCredentials\": ..., \"gitCredentials\": ..., \"buildSecrets\": ...}})"
        ))
    })
}

fn read_only(org: &str) -> PluginError {
    PluginError::Denied(format!(
        "this store is read-only: organization {org}'s credentials come from the mounted file {org}.json; change that file"
    ))
}

struct FileCredentials;

impl CredentialStore for FileCredentials {
    fn get(org: String, key: String) -> Result<Option<Secret<Vec<u8>>>, PluginError> {
        let file = read(&org)?;
        let Some((kind, name)) = key.split_once('/') else {
            return Ok(None);
        };
        let credential = |map: &BTreeMap<String, Credential>| {
            map.get(name)
                .map(|c| serde_json::to_vec(c).expect("credentials serialize"))
        };
        let value = match kind {
            "registry" => credential(&file.registry_credentials),
            "git" => credential(&file.git_credentials),
            "build" => file.build_secrets.get(name).map(|v| v.as_bytes().to_vec()),
            "signing" if name == "key" => file.signing_key.map(String::into_bytes),
            _ => None,
        };
        Ok(value.map(Secret::new))
    }

    // Read-only, with this store's own hint about where changes go.
    fn put(org: String, _key: String, _value: Secret<Vec<u8>>) -> Result<(), PluginError> {
        Err(read_only(&org))
    }

    fn delete(org: String, _key: String) -> Result<bool, PluginError> {
        Err(read_only(&org))
    }

    fn list_keys(org: String) -> Result<Vec<String>, PluginError> {
        let file = read(&org)?;
        let keys = file
            .registry_credentials
            .keys()
            .map(|k| format!("registry/{k}"))
            .chain(file.git_credentials.keys().map(|k| format!("git/{k}")))
            .chain(file.build_secrets.keys().map(|k| format!("build/{k}")))
            .collect();
        Ok(keys)
    }
}

kiln_sdk::export_credential_store!(FileCredentials);
