//! `plugin.toml`: what a plugin is, what it provides, what it asks for.

use std::collections::BTreeSet;

use serde::Deserialize;

/// The only manifest schema this host reads.
pub const SCHEMA_VERSION: u32 = 1;

/// A parsed, validated `plugin.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema_version: u32,
    /// The plugin id; when left out, the `[package] name` of a `Cargo.toml`
    /// beside the manifest.
    #[serde(default)]
    pub id: String,
    /// When left out, the `[package] version` of that `Cargo.toml`.
    #[serde(default)]
    pub version: String,
    /// The `kiln:plugin` version the plugin was built against.
    pub api: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub authors: Vec<String>,
    /// Path of the component, relative to the manifest's directory.
    #[serde(default)]
    pub component: Option<String>,
    /// The component's sha256, hex; checked when present.
    #[serde(default)]
    pub sha256: Option<String>,
    pub kinds: Kinds,
    #[serde(default)]
    pub permissions: Permissions,
    #[serde(default)]
    pub limits: Limits,
}

/// What the plugin provides.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Kinds {
    /// Source kinds it materializes (`inline-zip`, `upload`, a URL scheme...).
    #[serde(default)]
    pub context_source: Vec<String>,
    /// Builder names it answers to (`buildkit`, `kaniko`...).
    #[serde(default)]
    pub builder: Vec<String>,
    /// Whether it is a credential store.
    #[serde(default)]
    pub credential_store: bool,
    /// Whether it is a detector (exports `detect`: the wizard's detection).
    #[serde(default)]
    pub detector: bool,
    /// Whether it is a notifier (contract 0.2.0, exports `notify`): an
    /// organization subscribes it to build events.
    #[serde(default)]
    pub notifier: bool,
    /// Whether it is an attestor (contract 0.3.0, exports `attest`): it
    /// says what is in every pushed image (an SBOM).
    #[serde(default)]
    pub attestor: bool,
    /// For builders: whether the build reads a Dockerfile from the context
    /// (the host then checks it exists first). A builder that makes its own
    /// (a recipe, the wizard) says `false`.
    #[serde(default = "Kinds::yes")]
    pub dockerfile: bool,
    /// For builders: whether it builds any context that has no Dockerfile
    /// (the wizard): a build whose default Dockerfile is missing goes to
    /// it, after the host's detector says what the context holds.
    #[serde(default)]
    pub dockerfile_fallback: bool,
}

impl Kinds {
    fn yes() -> bool {
        true
    }
}

/// Rights a plugin asks for (in its manifest) or is granted (by the
/// operator). Each is a list: what is not listed is not allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    /// Engine operations, e.g. `buildkit-build`.
    #[serde(default)]
    pub engine: BTreeSet<String>,
    /// Git hosts the plugin may fetch from through the host.
    #[serde(default)]
    pub git: BTreeSet<String>,
    /// Hosts the plugin may send HTTP requests to.
    #[serde(default)]
    pub http: BTreeSet<String>,
    /// Kinds of secrets a builder may reference by id (values never cross).
    #[serde(default)]
    pub secrets: BTreeSet<String>,
    /// Environment variables the plugin may read.
    #[serde(default)]
    pub env: BTreeSet<String>,
    /// Images the plugin may run (engine `container-run`), as globs where
    /// `*` matches anything: `ghcr.io/osscontainertools/kaniko:*`.
    #[serde(default)]
    pub images: BTreeSet<String>,
}

impl Permissions {
    /// Rights in both sets: what a plugin asked for and was granted.
    pub fn intersect(&self, granted: &Permissions) -> Permissions {
        let both =
            |a: &BTreeSet<String>, b: &BTreeSet<String>| a.intersection(b).cloned().collect();
        Permissions {
            engine: both(&self.engine, &granted.engine),
            git: both(&self.git, &granted.git),
            // A plugin whose hosts are the operator's choice (a notifier
            // posting wherever its subscriptions say) asks for `*`: it
            // gets exactly the hosts granted, never a wildcard.
            http: if self.http.contains("*") {
                granted.http.iter().filter(|h| *h != "*").cloned().collect()
            } else {
                both(&self.http, &granted.http)
            },
            secrets: both(&self.secrets, &granted.secrets),
            env: both(&self.env, &granted.env),
            images: both(&self.images, &granted.images),
        }
    }

    /// Whether `image` matches one of the granted image globs.
    pub fn may_run(&self, image: &str) -> bool {
        self.images.iter().any(|glob| glob_matches(glob, image))
    }

    /// The permission a host interface needs, by the interface's name
    /// (`kiln:plugin/engine@0.1.0`), and whether these rights include it.
    /// Interfaces every plugin may import answer `None`.
    pub fn needed_for(&self, interface: &str) -> Option<(&'static str, bool)> {
        let name = interface.split('@').next().unwrap_or(interface);
        match name {
            "kiln:plugin/engine" => Some(("engine", !self.engine.is_empty())),
            "kiln:plugin/git" => Some(("git", !self.git.is_empty())),
            n if n.starts_with("wasi:http/") => Some(("http", !self.http.is_empty())),
            // wasi:sockets links (Rust's std imports it whenever a crate
            // touches std::net) but the WASI context allows no address and
            // no name lookup, so every connection is refused at run time.
            _ => None,
        }
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_matches(glob: &str, text: &str) -> bool {
    let parts: Vec<&str> = glob.split('*').collect();
    if parts.len() == 1 {
        return glob == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Per-call limits the plugin declares; the host caps them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Linear memory, in MiB.
    #[serde(default = "Limits::default_memory_mib")]
    pub memory_mib: u64,
    /// Wall time the plugin's own code may run per call, in seconds (time
    /// spent inside host calls, such as a build in the engine, not counted).
    #[serde(default = "Limits::default_time_secs")]
    pub time_secs: u64,
}

impl Limits {
    fn default_memory_mib() -> u64 {
        64
    }
    fn default_time_secs() -> u64 {
        30
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mib: Self::default_memory_mib(),
            time_secs: Self::default_time_secs(),
        }
    }
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("plugin.toml is not valid: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("plugin id `{0}` is not valid: use lowercase letters, digits and `-`")]
    BadId(String),
    #[error(
        "plugin {id}: schema_version {found} is not supported (this host reads {SCHEMA_VERSION})"
    )]
    Schema { id: String, found: u32 },
    #[error("plugin {id}: built against kiln:plugin@{api}, this host supports {supported}")]
    Api {
        id: String,
        api: String,
        /// The versions this host loads ([`SUPPORTED_API`]).
        supported: String,
    },
    #[error(
        "plugin {id}: declares no kind (context-source, builder, credential-store or detector)"
    )]
    NoKind { id: String },
    #[error("plugin.toml gives no `{field}` and there is no Cargo.toml beside it with a [package] {field}; add `{field} = \"...\"` to plugin.toml")]
    Missing { field: &'static str },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// The part of a plugin crate's `Cargo.toml` a manifest may take its id and
/// version from.
#[derive(Deserialize)]
struct CargoManifest {
    package: Option<CargoPackage>,
}

#[derive(Deserialize)]
struct CargoPackage {
    name: Option<String>,
    /// A string, or `{ workspace = true }` (which says nothing here).
    version: Option<toml::Value>,
}

/// The `kiln:plugin` versions this host loads.
pub const SUPPORTED_API: &[&str] = &["0.1.0", "0.2.0", "0.3.0"];

impl Manifest {
    /// Read `dir/plugin.toml`, taking a missing `id` and `version` from a
    /// `Cargo.toml` beside it (a plugin crate's directory).
    pub fn read_dir(dir: &std::path::Path) -> Result<Self, ManifestError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| ManifestError::Read {
                path: path.display().to_string(),
                source,
            })
        };
        let text = read("plugin.toml")?;
        let cargo = dir
            .join("Cargo.toml")
            .is_file()
            .then(|| read("Cargo.toml"))
            .transpose()?;
        Self::parse_with_package(&text, cargo.as_deref())
    }

    /// Parse and check a manifest that names its own id and version.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        Self::parse_with_package(text, None)
    }

    /// Parse and check a manifest; a missing `id` or `version` comes from
    /// `cargo_toml`'s `[package]`, when given.
    pub fn parse_with_package(text: &str, cargo_toml: Option<&str>) -> Result<Self, ManifestError> {
        let mut manifest: Manifest = toml::from_str(text)?;
        let package = cargo_toml
            .map(toml::from_str::<CargoManifest>)
            .transpose()?
            .and_then(|cargo| cargo.package);
        if manifest.id.is_empty() {
            manifest.id = package
                .as_ref()
                .and_then(|p| p.name.clone())
                .ok_or(ManifestError::Missing { field: "id" })?;
        }
        if manifest.version.is_empty() {
            manifest.version = package
                .as_ref()
                .and_then(|p| p.version.as_ref())
                .and_then(|v| v.as_str().map(str::to_string))
                .ok_or(ManifestError::Missing { field: "version" })?;
        }
        let id_ok = !manifest.id.is_empty()
            && manifest.id.len() <= 64
            && manifest
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !id_ok {
            return Err(ManifestError::BadId(manifest.id));
        }
        if manifest.schema_version != SCHEMA_VERSION {
            return Err(ManifestError::Schema {
                id: manifest.id,
                found: manifest.schema_version,
            });
        }
        if !SUPPORTED_API.contains(&manifest.api.as_str()) {
            return Err(ManifestError::Api {
                id: manifest.id,
                api: manifest.api,
                supported: SUPPORTED_API.join(" and "),
            });
        }
        let kinds = &manifest.kinds;
        if kinds.context_source.is_empty()
            && kinds.builder.is_empty()
            && !kinds.credential_store
            && !kinds.detector
            && !kinds.notifier
            && !kinds.attestor
        {
            return Err(ManifestError::NoKind { id: manifest.id });
        }
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_globs_match_like_shell_stars() {
        assert!(glob_matches(
            "ghcr.io/osscontainertools/kaniko:*",
            "ghcr.io/osscontainertools/kaniko:v1.24"
        ));
        assert!(glob_matches(
            "127.0.0.1:5000/base/*",
            "127.0.0.1:5000/base/busybox:1"
        ));
        assert!(!glob_matches(
            "127.0.0.1:5000/base/*",
            "127.0.0.1:5000/other/busybox:1"
        ));
        assert!(glob_matches("exact:1", "exact:1") && !glob_matches("exact:1", "exact:10"));
        assert!(glob_matches("a*b*c", "a-x-b-y-c") && !glob_matches("a*b*c", "a-x-c"));
    }

    #[test]
    fn unknown_keys_and_bad_ids_are_refused() {
        let err = Manifest::parse(
            "schema_version = 1\nid = \"Bad_Id\"\nversion = \"1\"\napi = \"0.1.0\"\n[kinds]\nbuilder = [\"x\"]\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("Bad_Id"), "{err}");
        let err = Manifest::parse(
            "schema_version = 1\nid = \"x\"\nversion = \"1\"\napi = \"0.1.0\"\ncolour = 1\n[kinds]\nbuilder = [\"x\"]\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn id_and_version_come_from_cargo_toml_when_the_manifest_leaves_them_out() {
        let manifest = "schema_version = 1\napi = \"0.1.0\"\n[kinds]\nbuilder = [\"x\"]\n";
        let cargo = "[package]\nname = \"my-builder\"\nversion = \"0.3.1\"\n";
        let parsed = Manifest::parse_with_package(manifest, Some(cargo)).unwrap();
        assert_eq!(
            (parsed.id.as_str(), parsed.version.as_str()),
            ("my-builder", "0.3.1")
        );
        // The manifest's own values win.
        let own = format!("id = \"other\"\nversion = \"1.0.0\"\n{manifest}");
        let parsed = Manifest::parse_with_package(&own, Some(cargo)).unwrap();
        assert_eq!(
            (parsed.id.as_str(), parsed.version.as_str()),
            ("other", "1.0.0")
        );
        // Without either, the error says what to add.
        let err = Manifest::parse(manifest).unwrap_err().to_string();
        assert!(err.contains("no `id`") && err.contains("add `id"), "{err}");
        // A crate name that is not a valid id is refused as an id.
        let bad = "[package]\nname = \"My_Builder\"\nversion = \"1.0.0\"\n";
        let err = Manifest::parse_with_package(manifest, Some(bad)).unwrap_err();
        assert!(matches!(err, ManifestError::BadId(_)), "{err}");
    }
}
