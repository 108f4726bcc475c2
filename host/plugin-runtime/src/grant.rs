//! What the operator grants a plugin (`[plugins.<id>]` in the server's
//! config file): the manifest asks, the grant decides.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::manifest::Permissions;

/// What the operator grants one plugin: either everything its manifest asks
/// (`grant = "asked"`, like accepting an extension's permissions), or
/// explicit lists per permission. Limits here cap the manifest's.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginGrant {
    /// `"asked"`: grant what the manifest asks for.
    #[serde(default)]
    pub grant: Option<GrantAll>,
    #[serde(default)]
    pub engine: BTreeSet<String>,
    #[serde(default)]
    pub git: BTreeSet<String>,
    #[serde(default)]
    pub http: BTreeSet<String>,
    #[serde(default)]
    pub secrets: BTreeSet<String>,
    #[serde(default)]
    pub env: BTreeSet<String>,
    #[serde(default)]
    pub images: BTreeSet<String>,
    /// Cap on the plugin's memory, in MiB.
    #[serde(default)]
    pub memory_mib: Option<u64>,
    /// Cap on the plugin's own running time per call, in seconds.
    #[serde(default)]
    pub time_secs: Option<u64>,
}

/// The one value `grant` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GrantAll {
    Asked,
}

impl PluginGrant {
    /// The rights granted to a plugin that asks for `asked`.
    pub fn rights(&self, asked: &Permissions) -> Permissions {
        match self.grant {
            Some(GrantAll::Asked) => asked.clone(),
            None => Permissions {
                engine: self.engine.clone(),
                git: self.git.clone(),
                http: self.http.clone(),
                secrets: self.secrets.clone(),
                env: self.env.clone(),
                images: self.images.clone(),
            },
        }
    }
}

impl PluginGrant {
    /// Everything the manifest asks for (`grant = "asked"`).
    pub fn asked() -> Self {
        PluginGrant {
            grant: Some(GrantAll::Asked),
            ..PluginGrant::default()
        }
    }
}
