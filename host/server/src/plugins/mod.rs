//! The plugin runtime as the server uses it: [`kiln_plugin_runtime`] (re-exported
//! here whole) plus the first-party plugins compiled into this binary, and
//! plugins pulled from a registry ([`remote`]).

pub use kiln_plugin_runtime::*;

pub mod remote;

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The first-party plugins, compiled from `plugins/` by `build.rs`.
pub mod embedded {
    use kiln_plugin_runtime::EmbeddedPlugin;
    /// Every first-party plugin, in load order.
    pub static PLUGINS: &[EmbeddedPlugin] =
        include!(concat!(env!("OUT_DIR"), "/embedded_plugins.rs"));
}

/// Load options for this server's runtime: the first-party plugins, the
/// default executor image, `plugin_dirs` loaded under `grants`.
pub fn first_party<'a>(
    plugin_dirs: &'a [PathBuf],
    grants: &'a BTreeMap<String, PluginGrant>,
) -> LoadOptions<'a> {
    LoadOptions {
        plugin_dirs,
        grants,
        embedded: embedded::PLUGINS,
        executor_image: Some(crate::config::DEFAULT_KANIKO_IMAGE.to_string()),
        ..LoadOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_party_manifests_parse() {
        for plugin in embedded::PLUGINS {
            let manifest = Manifest::parse(plugin.manifest)
                .unwrap_or_else(|e| panic!("plugins/{}: {e}", plugin.dir));
            // Each states the contract version that brought its world:
            // 0.3.0 for an attestor, 0.2.0 for a notifier, 0.1.0 for the
            // rest (unchanged since).
            let expected = if manifest.kinds.attestor {
                "0.3.0"
            } else if manifest.kinds.notifier {
                "0.2.0"
            } else {
                "0.1.0"
            };
            assert_eq!(manifest.api, expected, "plugins/{}", plugin.dir);
        }
    }
}
