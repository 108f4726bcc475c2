//! Which `kiln:plugin` world a component implements, matched on the
//! contract's exact version.

use wasmtime::component::Component;
use wasmtime::Engine;

/// Which world a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    Builder,
    ContextSource,
    CredentialStore,
    /// Exports `detect` (the Dockerfile wizard's detection).
    Detector,
}

impl World {
    /// The world's name in the contract (`wit/`).
    pub fn wit_name(self) -> &'static str {
        match self {
            World::Builder => "builder",
            World::ContextSource => "context-source",
            World::CredentialStore => "credential-store",
            World::Detector => "detector",
        }
    }
}

/// The contract version this host implements. A component is matched by
/// its exports' exact version: `@0.1.0` (and later patch releases) is ours,
/// `@0.10.0` or `@0.2.0` is not.
pub const CONTRACT_VERSION: (u64, u64) = (0, 1);

/// The interface a world is recognized by, for each world.
const WORLD_EXPORTS: [(&str, World); 4] = [
    ("build", World::Builder),
    ("source", World::ContextSource),
    ("credentials", World::CredentialStore),
    ("detect", World::Detector),
];

/// Which `kiln:plugin` world the component exports, matched on the
/// contract's exact version: `0.1.x` is this host's, and `0.10.0` is not
/// `0.1` (a prefix test would say it is).
pub(crate) fn detect_world(engine: &Engine, component: &Component) -> Result<World, String> {
    let ty = component.component_type();
    let mut found = None;
    let mut other_versions = Vec::new();
    for (name, _) in ty.exports(engine) {
        let Some((interface, version)) = name
            .strip_prefix("kiln:plugin/")
            .and_then(|rest| rest.split_once('@'))
        else {
            continue;
        };
        let Some(world) = WORLD_EXPORTS
            .iter()
            .find(|(export, _)| *export == interface)
            .map(|(_, world)| *world)
        else {
            continue;
        };
        if contract_version_matches(version) {
            // A builder also exporting `detect` is still a builder.
            if found.is_none() || world != World::Detector {
                found = Some(world);
            }
        } else {
            other_versions.push(name.to_string());
        }
    }
    let (major, minor) = CONTRACT_VERSION;
    match found {
        Some(world) => Ok(world),
        None if !other_versions.is_empty() => Err(format!(
            "it exports {}, a contract version this host does not implement; this host implements kiln:plugin@{major}.{minor}.x: rebuild the plugin with a kiln-sdk for contract {major}.{minor}",
            other_versions.join(", ")
        )),
        None => Err(format!(
            "the component exports no kiln:plugin@{major}.{minor} world (build, source, credentials or detect); is it a Kiln plugin built with kiln-sdk?"
        )),
    }
}

/// Whether a `major.minor.patch[-pre]` version is this host's contract.
fn contract_version_matches(version: &str) -> bool {
    let core = version.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    let number = |part: &str| {
        // Semver: digits, and no leading zero.
        (!part.is_empty()
            && part.bytes().all(|b| b.is_ascii_digit())
            && (part == "0" || !part.starts_with('0')))
        .then(|| part.parse::<u64>().ok())
        .flatten()
    };
    parts.len() == 3
        && number(parts[2]).is_some()
        && (number(parts[0]), number(parts[1]))
            == (Some(CONTRACT_VERSION.0), Some(CONTRACT_VERSION.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sha256 of `wit/0.1.0/plugin.wit`, frozen with the 0.1.0 release.
    const FROZEN_0_1_0: &str = "9b4ea7a14620e5811d9fb2ecd67337d455d7055b3b5b01ea8dc421eb724c9c37";

    /// A released contract never changes: a change to the 0.1.0 WIT is a
    /// new version in its own directory (`wit/0.2.0`), served beside it.
    #[test]
    fn the_0_1_0_contract_is_frozen() {
        use sha2::{Digest, Sha256};
        let text = include_str!("../wit/plugin.wit");
        assert!(text.contains("package kiln:plugin@0.1.0;"));
        assert_eq!(
            hex::encode(Sha256::digest(text.as_bytes())),
            FROZEN_0_1_0,
            "wit/0.1.0 is frozen: put a changed contract in wit/<next version>"
        );
    }

    #[test]
    fn contract_versions_match_exactly_not_by_prefix() {
        for ours in ["0.1.0", "0.1.7", "0.1.0-rc.1"] {
            assert!(contract_version_matches(ours), "{ours}");
        }
        for theirs in [
            "0.10.0", "0.11.0", "0.2.0", "1.1.0", "0.1", "0.01.0", "0.1.x", "",
        ] {
            assert!(!contract_version_matches(theirs), "{theirs}");
        }
    }
}
