//! Where an organization's secrets live: the host's encrypted local store
//! (the default) or a credential-store plugin the operator chose for the
//! organization (`[credentials.orgs]` in the server config), such as
//! `file-credentials`, which reads a file mounted into the host.
//!
//! Either way the values flow only between the store and the host's own
//! engine and git calls; a plugin store sees its own files and the keys it
//! is asked for, never a build. Keys given to plugin stores are
//! `<kind>/<name>`: `registry/127.0.0.1:5000`, `git/github.com`,
//! `build/NPM_TOKEN`, and `signing/key` for an organization that brings
//! its own signing key.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::plugins::{Capabilities, CredentialAnswer, CredentialCall, PluginRuntime};
use crate::store::secrets::{Credential, SecretError, SecretKind, SecretStore};

/// Where a credential-store plugin keeps the organization's own signing
/// key (ECDSA P-256, PEM): images are signed with it instead of a key Kiln
/// makes.
pub const SIGNING_KEY: &str = "signing/key";

/// Why a secret could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(transparent)]
    Local(#[from] SecretError),
    /// The organization's store plugin refused (a read-only store, a bad key).
    #[error("the credential store `{plugin}` of organization {org} refused: {message}")]
    Refused {
        plugin: String,
        org: String,
        message: String,
    },
    /// The plugin failed or is missing.
    #[error("the credential store `{plugin}` failed: {message}")]
    Plugin { plugin: String, message: String },
}

/// The organization → store routing, and the stores.
#[derive(Clone)]
pub struct CredentialStores {
    local: Arc<SecretStore>,
    runtime: Arc<PluginRuntime>,
    /// Organization → credential-store plugin id.
    per_org: BTreeMap<String, String>,
    /// Mounted at `/credentials` for plugin stores.
    directory: Option<PathBuf>,
}

impl CredentialStores {
    pub fn new(
        local: Arc<SecretStore>,
        runtime: Arc<PluginRuntime>,
        per_org: BTreeMap<String, String>,
        directory: Option<PathBuf>,
    ) -> Self {
        CredentialStores {
            local,
            runtime,
            per_org,
            directory,
        }
    }

    /// Check the routing against the loaded plugins (at start-up).
    pub fn check(&self) -> Result<(), String> {
        for (org, id) in &self.per_org {
            match self.runtime.plugin(id) {
                Some(plugin) if plugin.manifest.kinds.credential_store => {}
                Some(_) => {
                    return Err(format!(
                        "[credentials.orgs] {org} = \"{id}\": plugin {id} is not a credential store"
                    ))
                }
                None => {
                    return Err(format!(
                        "[credentials.orgs] {org} = \"{id}\": no plugin {id} is loaded"
                    ))
                }
            }
        }
        Ok(())
    }

    /// The host's own sealed store (what only the host keeps, such as
    /// projects' webhook secrets, is sealed with its key whatever store
    /// keeps the organization's credentials).
    pub fn local(&self) -> &SecretStore {
        &self.local
    }

    /// The plugin keeping `org`'s secrets, if not the local store.
    pub fn plugin_for(&self, org: &str) -> Option<&str> {
        self.per_org.get(org).map(String::as_str)
    }

    async fn call(
        &self,
        plugin_id: &str,
        org: &str,
        call: CredentialCall<'_>,
    ) -> Result<CredentialAnswer, CredentialError> {
        let plugin = self
            .runtime
            .plugin(plugin_id)
            .ok_or_else(|| CredentialError::Plugin {
                plugin: plugin_id.to_string(),
                message: "it is not loaded".into(),
            })?;
        let answer = self
            .runtime
            .credentials(
                plugin,
                Capabilities::for_plugin(plugin),
                self.directory.as_deref(),
                call,
            )
            .await
            .map_err(|e| CredentialError::Plugin {
                plugin: plugin_id.to_string(),
                message: e.to_string(),
            })?;
        answer.map_err(|e| CredentialError::Refused {
            plugin: plugin_id.to_string(),
            org: org.to_string(),
            message: e.into_message(),
        })
    }

    pub async fn get(
        &self,
        org: &str,
        kind: SecretKind,
        name: &str,
    ) -> Result<Option<Vec<u8>>, CredentialError> {
        let Some(plugin) = self.plugin_for(org) else {
            return Ok(self.local.get(org, kind, name)?);
        };
        let key = key(kind, name);
        match self
            .call(plugin, org, CredentialCall::Get { org, key: &key })
            .await?
        {
            CredentialAnswer::Value(value) => Ok(value),
            _ => Ok(None),
        }
    }

    /// The organization's own signing key, when the credential-store
    /// plugin keeping its secrets holds one (under [`SIGNING_KEY`]); `None`
    /// for the local store, which keeps the key Kiln makes.
    pub async fn own_signing_key(&self, org: &str) -> Result<Option<Vec<u8>>, CredentialError> {
        let Some(plugin) = self.plugin_for(org) else {
            return Ok(None);
        };
        match self
            .call(
                plugin,
                org,
                CredentialCall::Get {
                    org,
                    key: SIGNING_KEY,
                },
            )
            .await?
        {
            CredentialAnswer::Value(value) => Ok(value),
            _ => Ok(None),
        }
    }

    /// A registry or git credential.
    pub async fn credential(
        &self,
        org: &str,
        kind: SecretKind,
        host: &str,
    ) -> Result<Option<Credential>, CredentialError> {
        Ok(self
            .get(org, kind, host)
            .await?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }

    /// Every secret's name, by kind.
    pub async fn names(
        &self,
        org: &str,
    ) -> Result<BTreeMap<SecretKind, Vec<String>>, CredentialError> {
        let Some(plugin) = self.plugin_for(org) else {
            return Ok(self.local.names(org)?);
        };
        let keys = match self
            .call(plugin, org, CredentialCall::ListKeys { org })
            .await?
        {
            CredentialAnswer::Keys(keys) => keys,
            _ => Vec::new(),
        };
        let mut out: BTreeMap<SecretKind, Vec<String>> = BTreeMap::new();
        for key in keys {
            if let Some((kind, name)) = key
                .split_once('/')
                .and_then(|(k, n)| Some((SecretKind::parse(k)?, n)))
            {
                out.entry(kind).or_default().push(name.to_string());
            }
        }
        Ok(out)
    }

    pub async fn put(
        &self,
        org: &str,
        kind: SecretKind,
        name: &str,
        value: &[u8],
    ) -> Result<(), CredentialError> {
        let Some(plugin) = self.plugin_for(org) else {
            return Ok(self.local.put(org, kind, name, value)?);
        };
        let key = key(kind, name);
        self.call(
            plugin,
            org,
            CredentialCall::Put {
                org,
                key: &key,
                value,
            },
        )
        .await
        .map(|_| ())
    }

    pub async fn delete(
        &self,
        org: &str,
        kind: SecretKind,
        name: &str,
    ) -> Result<bool, CredentialError> {
        let Some(plugin) = self.plugin_for(org) else {
            return Ok(self.local.delete(org, kind, name)?);
        };
        let key = key(kind, name);
        match self
            .call(plugin, org, CredentialCall::Delete { org, key: &key })
            .await?
        {
            CredentialAnswer::Deleted(deleted) => Ok(deleted),
            _ => Ok(false),
        }
    }

    /// Every git credential of `org`, by host (`*` included), for a build's
    /// checkout (which looks hosts up from a blocking thread).
    pub async fn git_credentials(
        &self,
        org: &str,
    ) -> Result<BTreeMap<String, Credential>, CredentialError> {
        let mut out = BTreeMap::new();
        let names = self.names(org).await?;
        for host in names.get(&SecretKind::Git).into_iter().flatten() {
            if let Some(credential) = self.credential(org, SecretKind::Git, host).await? {
                out.insert(host.clone(), credential);
            }
        }
        Ok(out)
    }
}

fn key(kind: SecretKind, name: &str) -> String {
    format!("{}/{name}", kind.as_str())
}
