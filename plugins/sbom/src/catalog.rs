//! Finding the packages in an image's filesystem: the OS package databases
//! and the language ecosystems' installed metadata and lockfiles, each
//! package with its purl (<https://github.com/package-url/purl-spec>).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One package found, and where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    /// The purl type: `deb`, `apk`, `pypi`, `npm`, `cargo`, `golang`,
    /// `gem`, `composer`.
    pub ecosystem: &'static str,
    pub name: String,
    pub version: String,
    pub purl: String,
    /// The file that said so, as the image has it (`/var/lib/dpkg/status`).
    pub found_in: String,
}

/// What the image says it is (`/etc/os-release`): `debian`, `12`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Distro {
    pub id: String,
    pub version_id: String,
}

/// Directories never walked: the kernel's and the engine's, not the image's.
const SKIPPED: &[&str] = &["proc", "sys", "dev"];

/// Most files a walk looks at: an image with more is catalogued as far as
/// this, and the log says so.
pub const MAX_ENTRIES: usize = 2_000_000;

/// Everything found under `root` (the image's `/`), sorted and without
/// repeats, and whether the walk stopped at [`MAX_ENTRIES`].
pub fn catalog(root: &Path) -> (Vec<Package>, bool) {
    let distro = distro(root);
    let mut found = BTreeSet::new();
    let mut add = |packages: Vec<Package>| found.extend(packages);
    add(dpkg(root, &distro));
    add(apk(root, &distro));
    let mut stack = vec![PathBuf::new()];
    let mut seen = 0usize;
    let mut truncated = false;
    while let Some(relative) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&relative)) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                truncated = true;
                stack.clear();
                break;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = relative.join(&name);
            // Links are not followed: they may point anywhere in the image
            // (or loop), and what they point at is walked where it is.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if relative.as_os_str().is_empty() && SKIPPED.contains(&name.as_str()) {
                    continue;
                }
                if name.ends_with(".dist-info") || name.ends_with(".egg-info") {
                    add(python_distribution(root, &path));
                }
                stack.push(path);
            } else if kind.is_file() {
                add(lockfile(root, &path, &name));
            }
        }
    }
    (found.into_iter().collect(), truncated)
}

fn shown(path: &Path) -> String {
    format!("/{}", path.display())
}

fn read(root: &Path, path: &Path) -> Option<String> {
    // Lockfiles and databases are text; anything over 64 MiB is not one.
    let file = root.join(path);
    if std::fs::metadata(&file).ok()?.len() > 64 << 20 {
        return None;
    }
    std::fs::read_to_string(file).ok()
}

/// `/etc/os-release` (or `/usr/lib/os-release`).
pub fn distro(root: &Path) -> Distro {
    let text = read(root, Path::new("etc/os-release"))
        .or_else(|| read(root, Path::new("usr/lib/os-release")))
        .unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
            .map(|value| value.trim().trim_matches('"').to_string())
            .unwrap_or_default()
    };
    Distro {
        id: field("ID"),
        version_id: field("VERSION_ID"),
    }
}

/// Percent-encode what a purl's name or version may not hold as is.
fn encode(part: &str) -> String {
    let mut out = String::new();
    for byte in part.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'~' | b'+' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn package(
    ecosystem: &'static str,
    namespace: Option<&str>,
    name: &str,
    version: &str,
    qualifiers: &[(&str, &str)],
    found_in: &Path,
) -> Package {
    let mut purl = format!("pkg:{ecosystem}/");
    if let Some(namespace) = namespace.filter(|n| !n.is_empty()) {
        // Each segment encoded; the slashes between them stay.
        for segment in namespace.split('/') {
            purl.push_str(&encode(segment));
            purl.push('/');
        }
    }
    purl.push_str(&encode(name));
    if !version.is_empty() {
        purl.push('@');
        purl.push_str(&encode(version));
    }
    let qualifiers: Vec<String> = qualifiers
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(key, value)| format!("{key}={}", encode(value)))
        .collect();
    if !qualifiers.is_empty() {
        purl.push('?');
        purl.push_str(&qualifiers.join("&"));
    }
    Package {
        ecosystem,
        name: name.to_string(),
        version: version.to_string(),
        purl,
        found_in: shown(found_in),
    }
}

/// RFC 822-style stanzas (dpkg's status file): blank-line separated,
/// `Field: value` with continuation lines.
fn stanzas(text: &str) -> impl Iterator<Item = Vec<(&str, &str)>> {
    text.split("\n\n").map(|stanza| {
        stanza
            .lines()
            .filter(|line| !line.starts_with([' ', '\t']))
            .filter_map(|line| {
                let (key, value) = line.split_once(':')?;
                Some((key.trim(), value.trim()))
            })
            .collect()
    })
}

/// Debian and Ubuntu: `/var/lib/dpkg/status`, and distroless images'
/// `/var/lib/dpkg/status.d/*`. Only packages dpkg says are installed.
pub fn dpkg(root: &Path, distro: &Distro) -> Vec<Package> {
    let mut files = vec![PathBuf::from("var/lib/dpkg/status")];
    if let Ok(entries) = std::fs::read_dir(root.join("var/lib/dpkg/status.d")) {
        for entry in entries.flatten() {
            files.push(Path::new("var/lib/dpkg/status.d").join(entry.file_name()));
        }
    }
    let namespace = if distro.id.is_empty() {
        "debian"
    } else {
        distro.id.as_str()
    };
    let distro_qualifier = format!("{namespace}-{}", distro.version_id);
    let mut packages = Vec::new();
    for file in files {
        let Some(text) = read(root, &file) else {
            continue;
        };
        for stanza in stanzas(&text) {
            let field = |name: &str| {
                stanza
                    .iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(name))
                    .map(|(_, value)| *value)
            };
            let (Some(name), Some(version)) = (field("Package"), field("Version")) else {
                continue;
            };
            // status.d files have no Status; the status file's say
            // whether the package is still installed.
            if field("Status").is_some_and(|status| !status.ends_with(" installed")) {
                continue;
            }
            let arch = field("Architecture").unwrap_or("");
            let distro_qualifier = if distro.version_id.is_empty() {
                ""
            } else {
                distro_qualifier.as_str()
            };
            packages.push(package(
                "deb",
                Some(namespace),
                name,
                version,
                &[("arch", arch), ("distro", distro_qualifier)],
                &file,
            ));
        }
    }
    packages
}

/// Alpine: `/lib/apk/db/installed` (`P:` name, `V:` version, `A:` arch).
pub fn apk(root: &Path, distro: &Distro) -> Vec<Package> {
    let file = Path::new("lib/apk/db/installed");
    let Some(text) = read(root, file) else {
        return Vec::new();
    };
    let namespace = if distro.id.is_empty() {
        "alpine"
    } else {
        distro.id.as_str()
    };
    let mut packages = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |key: &str| {
            stanza
                .lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        };
        if let (Some(name), Some(version)) = (field("P"), field("V")) {
            let arch = field("A").unwrap_or("");
            packages.push(package(
                "apk",
                Some(namespace),
                name,
                version,
                &[("arch", arch)],
                file,
            ));
        }
    }
    packages
}

/// An installed Python distribution: `<name>-<version>.dist-info/METADATA`
/// (or an `.egg-info`'s `PKG-INFO`).
fn python_distribution(root: &Path, dir: &Path) -> Vec<Package> {
    let metadata = ["METADATA", "PKG-INFO"]
        .iter()
        .find_map(|file| Some((dir.join(file), read(root, &dir.join(file))?)));
    let Some((file, text)) = metadata else {
        return Vec::new();
    };
    let field = |name: &str| {
        text.lines()
            .take_while(|line| !line.is_empty())
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    match (field("Name"), field("Version")) {
        (Some(name), Some(version)) => vec![pypi(name, version, &file)],
        _ => Vec::new(),
    }
}

/// Python names are compared normalized (PEP 503): lower case, runs of
/// `-`, `_` and `.` as one `-`.
fn pypi(name: &str, version: &str, found_in: &Path) -> Package {
    let mut normalized = String::new();
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !normalized.ends_with('-') {
                normalized.push('-');
            }
        } else {
            normalized.push(c.to_ascii_lowercase());
        }
    }
    package("pypi", None, &normalized, version, &[], found_in)
}

/// A lockfile's packages, by its file name.
fn lockfile(root: &Path, path: &Path, name: &str) -> Vec<Package> {
    let parse: fn(&str, &Path) -> Vec<Package> = match name {
        "package-lock.json" | "npm-shrinkwrap.json" => npm_lock,
        "yarn.lock" => yarn_lock,
        "pnpm-lock.yaml" => pnpm_lock,
        "Cargo.lock" => cargo_lock,
        "poetry.lock" => poetry_lock,
        "requirements.txt" => requirements,
        "go.sum" => go_sum,
        "Gemfile.lock" => gemfile_lock,
        "composer.lock" => composer_lock,
        _ => return Vec::new(),
    };
    read(root, path).map_or_else(Vec::new, |text| parse(&text, path))
}

fn npm(name: &str, version: &str, found_in: &Path) -> Package {
    match name
        .strip_prefix('@')
        .and_then(|scoped| scoped.split_once('/'))
    {
        Some((scope, bare)) => package(
            "npm",
            Some(&format!("@{scope}")),
            bare,
            version,
            &[],
            found_in,
        ),
        None => package("npm", None, name, version, &[], found_in),
    }
}

/// npm's lockfile: v2/v3 `packages` (`node_modules/<name>` keys), v1
/// `dependencies`.
fn npm_lock(text: &str, found_in: &Path) -> Vec<Package> {
    let Ok(lock) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let mut packages = Vec::new();
    if let Some(entries) = lock["packages"].as_object() {
        for (key, entry) in entries {
            let Some(name) = key
                .rsplit("node_modules/")
                .next()
                .filter(|_| !key.is_empty())
            else {
                continue;
            };
            if let Some(version) = entry["version"].as_str() {
                packages.push(npm(name, version, found_in));
            }
        }
    } else if let Some(entries) = lock["dependencies"].as_object() {
        for (name, entry) in entries {
            if let Some(version) = entry["version"].as_str() {
                packages.push(npm(name, version, found_in));
            }
        }
    }
    packages
}

/// Yarn v1 (`"name@range", name@range:` then `  version "x"`) and Berry
/// (`  version: x`).
fn yarn_lock(text: &str, found_in: &Path) -> Vec<Package> {
    let mut packages = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if !line.starts_with([' ', '#']) && line.ends_with(':') {
            let first = line.trim_end_matches(':').split(", ").next().unwrap_or("");
            let spec = first.trim_matches('"');
            // The name is before the last `@` that is not the first character.
            current = spec[1..]
                .find('@')
                .map(|at| spec[..at + 1].to_string())
                .filter(|name| !name.is_empty() && name != "__metadata");
        } else if let (Some(name), Some(version)) = (
            current.as_ref(),
            line.trim_start()
                .strip_prefix("version")
                .map(|rest| rest.trim_start_matches(':').trim().trim_matches('"')),
        ) {
            if line.starts_with("  ") && !line.starts_with("    ") {
                packages.push(npm(name, version, found_in));
                current = None;
            }
        }
    }
    packages
}

/// pnpm: the `packages:` keys (`/name@version`, `/@scope/name@version`,
/// `name@version(peer)`).
fn pnpm_lock(text: &str, found_in: &Path) -> Vec<Package> {
    let mut packages = Vec::new();
    let mut in_packages = false;
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        if !line.starts_with(' ') {
            in_packages = line.trim_end() == "packages:";
            continue;
        }
        if !in_packages || !line.starts_with("  ") || line.starts_with("   ") {
            continue;
        }
        let key = line.trim().trim_end_matches(':').trim_matches(['\'', '"']);
        let key = key.strip_prefix('/').unwrap_or(key);
        let key = key.split('(').next().unwrap_or(key);
        if let Some(at) = key[1.min(key.len())..].find('@') {
            let (name, version) = (&key[..at + 1], &key[at + 2..]);
            packages.push(npm(name, version, found_in));
        }
    }
    packages
}

/// `[[package]]` tables with `name = "…"` and `version = "…"` (Cargo.lock,
/// poetry.lock).
fn toml_packages(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut name = None;
    let mut version = None;
    let mut in_package = false;
    let mut flush = |name: &mut Option<String>, version: &mut Option<String>| {
        if let (Some(n), Some(v)) = (name.take(), version.take()) {
            found.push((n, v));
        }
    };
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            flush(&mut name, &mut version);
            in_package = line == "[[package]]";
            continue;
        }
        if !in_package {
            continue;
        }
        let value = |key: &str| {
            line.strip_prefix(key)
                .map(str::trim_start)
                .and_then(|rest| rest.strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').to_string())
        };
        if let Some(v) = value("name") {
            name = Some(v);
        } else if let Some(v) = value("version") {
            version = Some(v);
        }
    }
    flush(&mut name, &mut version);
    found
}

fn cargo_lock(text: &str, found_in: &Path) -> Vec<Package> {
    toml_packages(text)
        .into_iter()
        .map(|(name, version)| package("cargo", None, &name, &version, &[], found_in))
        .collect()
}

fn poetry_lock(text: &str, found_in: &Path) -> Vec<Package> {
    toml_packages(text)
        .into_iter()
        .map(|(name, version)| pypi(&name, &version, found_in))
        .collect()
}

/// Pinned requirements (`name==version`); ranges say no version, and are
/// not listed.
fn requirements(text: &str, found_in: &Path) -> Vec<Package> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter_map(|line| {
            let (name, version) = line.split_once("==")?;
            let name = name.split('[').next()?.trim();
            let version = version.split([';', ' ']).next()?.trim();
            (!name.is_empty() && !version.is_empty()).then(|| pypi(name, version, found_in))
        })
        .collect()
}

/// go.sum: `module version[/go.mod] hash`; each module@version once.
fn go_sum(text: &str, found_in: &Path) -> Vec<Package> {
    let mut seen = BTreeSet::new();
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let module = words.next()?;
            let version = words.next()?.trim_end_matches("/go.mod");
            seen.insert((module, version)).then(|| {
                let (namespace, name) = module.rsplit_once('/').unwrap_or(("", module));
                package("golang", Some(namespace), name, version, &[], found_in)
            })
        })
        .collect()
}

/// Gemfile.lock: `    name (version)` under `specs:`.
fn gemfile_lock(text: &str, found_in: &Path) -> Vec<Package> {
    text.lines()
        .filter(|line| line.starts_with("    ") && !line.starts_with("     "))
        .filter_map(|line| {
            let (name, version) = line.trim().split_once(" (")?;
            let version = version.strip_suffix(')')?;
            let version = version.split('-').next().unwrap_or(version);
            Some(package("gem", None, name, version, &[], found_in))
        })
        .collect()
}

/// composer.lock: `packages` and `packages-dev`, `vendor/name`.
fn composer_lock(text: &str, found_in: &Path) -> Vec<Package> {
    let Ok(lock) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    ["packages", "packages-dev"]
        .iter()
        .flat_map(|key| lock[key].as_array().cloned().unwrap_or_default())
        .filter_map(|entry| {
            let full = entry["name"].as_str()?;
            let version = entry["version"].as_str()?;
            let (vendor, name) = full.split_once('/').unwrap_or(("", full));
            Some(package(
                "composer",
                Some(vendor),
                name,
                version.trim_start_matches('v'),
                &[],
                found_in,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, path: &str, text: &str) {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }

    #[test]
    fn debian_packages_are_those_dpkg_says_are_installed() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            "etc/os-release",
            "ID=debian\nVERSION_ID=\"12\"\n",
        );
        write(
            root.path(),
            "var/lib/dpkg/status",
            "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36-9+deb12u4\nDescription: GNU C Library\n multi-line\n\n\
             Package: removed\nStatus: deinstall ok config-files\nVersion: 1.0\n\n\
             Package: tzdata\nStatus: install ok installed\nArchitecture: all\nVersion: 1:2024a-0+deb12u1\n",
        );
        let (packages, truncated) = catalog(root.path());
        assert!(!truncated);
        let purls: Vec<&str> = packages.iter().map(|p| p.purl.as_str()).collect();
        assert_eq!(
            purls,
            vec![
                "pkg:deb/debian/libc6@2.36-9+deb12u4?arch=amd64&distro=debian-12",
                "pkg:deb/debian/tzdata@1%3A2024a-0+deb12u1?arch=all&distro=debian-12",
            ]
        );
        assert_eq!(packages[0].found_in, "/var/lib/dpkg/status");
    }

    #[test]
    fn alpine_python_and_lockfiles_are_found_anywhere_in_the_image() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(r, "etc/os-release", "ID=alpine\nVERSION_ID=3.20.0\n");
        write(
            r,
            "lib/apk/db/installed",
            "C:Q1\nP:musl\nV:1.2.5-r0\nA:x86_64\n\nP:busybox\nV:1.36.1-r29\nA:x86_64\n",
        );
        write(
            r,
            "usr/lib/python3/dist-packages/Flask_Login-0.6.3.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: Flask_Login\nVersion: 0.6.3\n\nName: not-this\n",
        );
        write(
            r,
            "app/package-lock.json",
            r#"{"lockfileVersion": 3, "packages": {"": {"name": "app"}, "node_modules/left-pad": {"version": "1.3.0"}, "node_modules/@types/node/node_modules/undici-types": {"version": "6.19.8"}, "node_modules/@types/node": {"version": "22.5.0"}}}"#,
        );
        write(r, "app/Cargo.lock", "version = 3\n\n[[package]]\nname = \"serde\"\nversion = \"1.0.210\"\nsource = \"registry\"\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\n");
        write(
            r,
            "app/requirements.txt",
            "flask==3.0.3  # web\nrequests>=2\nuvicorn[standard]==0.30.6 ; python_version > '3'\n",
        );
        write(
            r,
            "app/go.sum",
            "github.com/pkg/errors v0.9.1 h1:abc=\ngithub.com/pkg/errors v0.9.1/go.mod h1:def=\n",
        );
        write(r, "app/Gemfile.lock", "GEM\n  remote: https://rubygems.org/\n  specs:\n    rack (3.1.7)\n    nokogiri (1.16.7-x86_64-linux)\n      racc (~> 1.4)\n");
        write(r, "app/yarn.lock", "# yarn lockfile v1\n\n\"@babel/core@^7.0.0\", \"@babel/core@^7.1.0\":\n  version \"7.25.2\"\n  resolved \"x\"\n\nlodash@^4.17.21:\n  version \"4.17.21\"\n");
        write(r, "app/pnpm-lock.yaml", "lockfileVersion: '9.0'\n\npackages:\n\n  '@vue/shared@3.4.38':\n    resolution: {}\n\n  vue@3.4.38(typescript@5.5.4):\n    resolution: {}\n\nsnapshots:\n\n  other@1.0.0: {}\n");
        write(
            r,
            "app/composer.lock",
            r#"{"packages": [{"name": "monolog/monolog", "version": "3.7.0"}], "packages-dev": [{"name": "phpunit/phpunit", "version": "v11.3.1"}]}"#,
        );
        write(r, "app/poetry.lock", "[[package]]\nname = \"Django\"\nversion = \"5.1\"\n\n[metadata]\nlock-version = \"2.0\"\n");
        write(
            r,
            "proc/1/package-lock.json",
            r#"{"dependencies": {"ghost": {"version": "1.0.0"}}}"#,
        );
        let (packages, _) = catalog(r);
        let purls: BTreeSet<&str> = packages.iter().map(|p| p.purl.as_str()).collect();
        for expected in [
            "pkg:apk/alpine/musl@1.2.5-r0?arch=x86_64",
            "pkg:apk/alpine/busybox@1.36.1-r29?arch=x86_64",
            "pkg:pypi/flask-login@0.6.3",
            "pkg:npm/left-pad@1.3.0",
            "pkg:npm/%40types/node@22.5.0",
            "pkg:npm/undici-types@6.19.8",
            "pkg:cargo/serde@1.0.210",
            "pkg:cargo/app@0.1.0",
            "pkg:pypi/flask@3.0.3",
            "pkg:pypi/uvicorn@0.30.6",
            "pkg:golang/github.com/pkg/errors@v0.9.1",
            "pkg:gem/rack@3.1.7",
            "pkg:gem/nokogiri@1.16.7",
            "pkg:npm/%40babel/core@7.25.2",
            "pkg:npm/lodash@4.17.21",
            "pkg:npm/%40vue/shared@3.4.38",
            "pkg:npm/vue@3.4.38",
            "pkg:composer/monolog/monolog@3.7.0",
            "pkg:composer/phpunit/phpunit@11.3.1",
            "pkg:pypi/django@5.1",
        ] {
            assert!(purls.contains(expected), "{expected} in {purls:#?}");
        }
        // No range without a version, nothing from /proc, no repeats.
        assert!(
            !purls
                .iter()
                .any(|p| p.contains("requests") || p.contains("ghost") || p.contains("other")),
            "{purls:#?}"
        );
        assert_eq!(purls.len(), packages.len());
        assert_eq!(packages.iter().filter(|p| p.name == "errors").count(), 1);
    }
}
