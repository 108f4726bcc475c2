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
    /// Exports `notify` (contract 0.2.0): tells someone a build finished.
    Notifier,
    /// Exports `attest` (contract 0.3.0): says what is in a pushed image.
    Attestor,
}

impl World {
    /// The world's name in the contract (`wit/`).
    pub fn wit_name(self) -> &'static str {
        match self {
            World::Builder => "builder",
            World::ContextSource => "context-source",
            World::CredentialStore => "credential-store",
            World::Detector => "detector",
            World::Notifier => "notifier",
            World::Attestor => "attestor",
        }
    }

    /// The contract version that introduced the world (what a manifest's
    /// `api` says for a plugin of it).
    pub fn contract_version(self) -> String {
        let (_, (major, minor), _) = WORLD_EXPORTS
            .iter()
            .find(|(_, _, world)| *world == self)
            .expect("every world has its export");
        format!("{major}.{minor}.0")
    }
}

/// The contract versions this host implements, oldest first. Each world's
/// export belongs to the version that introduced it: 0.2.0 added only
/// `notify` and 0.3.0 only `attest`; their other worlds are the earlier
/// versions' very interfaces, so a component exporting `build@0.1.0` is a
/// builder of every version.
pub const CONTRACT_VERSIONS: [(u64, u64); 3] = [(0, 1), (0, 2), (0, 3)];

/// The interface a world is recognized by, the contract version that
/// interface carries, and the world.
const WORLD_EXPORTS: [(&str, (u64, u64), World); 6] = [
    ("build", (0, 1), World::Builder),
    ("source", (0, 1), World::ContextSource),
    ("credentials", (0, 1), World::CredentialStore),
    ("detect", (0, 1), World::Detector),
    ("notify", (0, 2), World::Notifier),
    ("attest", (0, 3), World::Attestor),
];

/// Which `kiln:plugin` world the component exports, matched on the
/// exact version its interface carries: `0.1.x` for 0.1.0's worlds,
/// `0.2.x` for `notify`, `0.3.x` for `attest`; `0.10.0` is not `0.1` (a prefix test would say
/// it is).
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
        let Some(&(_, contract, world)) = WORLD_EXPORTS
            .iter()
            .find(|(export, _, _)| *export == interface)
        else {
            continue;
        };
        if contract_version_matches(version, contract) {
            // A builder also exporting `detect` is still a builder.
            if found.is_none() || world != World::Detector {
                found = Some(world);
            }
        } else {
            other_versions.push(name.to_string());
        }
    }
    match found {
        Some(world) => Ok(world),
        None if !other_versions.is_empty() => Err(format!(
            "it exports {}, a contract version this host does not implement; this host implements {}: rebuild the plugin with a kiln-sdk for one of them",
            other_versions.join(", "),
            implemented()
        )),
        None => Err(format!(
            "the component exports no world of {} (build, source, credentials, detect, notify or attest); is it a Kiln plugin built with kiln-sdk?",
            implemented()
        )),
    }
}

/// `kiln:plugin@0.1.x, kiln:plugin@0.2.x and kiln:plugin@0.3.x`, for messages.
fn implemented() -> String {
    CONTRACT_VERSIONS
        .iter()
        .map(|(major, minor)| format!("kiln:plugin@{major}.{minor}.x"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a `major.minor.patch[-pre]` version is `contract`'s.
fn contract_version_matches(version: &str, contract: (u64, u64)) -> bool {
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
        && (number(parts[0]), number(parts[1])) == (Some(contract.0), Some(contract.1))
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
        let text = include_str!("../wit/0.1.0/plugin.wit");
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
            assert!(contract_version_matches(ours, (0, 1)), "{ours}");
        }
        for theirs in [
            "0.10.0", "0.11.0", "0.2.0", "1.1.0", "0.1", "0.01.0", "0.1.x", "",
        ] {
            assert!(!contract_version_matches(theirs, (0, 1)), "{theirs}");
        }
        assert!(contract_version_matches("0.2.0", (0, 2)));
        assert!(!contract_version_matches("0.20.0", (0, 2)));
    }

    /// 0.2.0 adds the notifier world and changes nothing released: its
    /// other worlds include 0.1.0's, and only `notify` carries `@0.2.0`.
    #[test]
    fn the_0_2_0_contract_only_adds_the_notifier() {
        let text = include_str!("../wit/0.2.0/plugin.wit");
        assert!(text.contains("package kiln:plugin@0.2.0;"));
        for world in ["context-source", "builder", "credential-store", "detector"] {
            assert!(
                text.contains(&format!("include kiln:plugin/{world}@0.1.0;")),
                "{world}"
            );
        }
        assert_eq!(
            text.matches("\ninterface ").count(),
            1,
            "only `notify` is new"
        );
    }

    /// 0.3.0 adds the attestor world and changes nothing released.
    #[test]
    fn the_0_3_0_contract_only_adds_the_attestor() {
        let text = include_str!("../wit/0.3.0/plugin.wit");
        assert!(text.contains("package kiln:plugin@0.3.0;"));
        for world in ["context-source", "builder", "credential-store", "detector"] {
            assert!(
                text.contains(&format!("include kiln:plugin/{world}@0.1.0;")),
                "{world}"
            );
        }
        assert!(text.contains("include kiln:plugin/notifier@0.2.0;"));
        assert_eq!(
            text.matches("\ninterface ").count(),
            1,
            "only `attest` is new"
        );
    }
}
