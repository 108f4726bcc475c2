//! Turning what a context-source plugin unpacked into the directory a
//! builder sees: the host's half of materialization.
//!
//! * apply the file modes and create the symbolic links the plugin reported
//!   (WASI can do neither), each checked to stay inside the context;
//! * apply `.dockerignore` ([`dockerignore`]), keeping the Dockerfile and
//!   the `.dockerignore` itself, as Docker does;
//! * find the Dockerfile, inside the context, with a hint for a near miss.

pub use kiln_api::dockerignore;

use std::path::{Component, Path, PathBuf};

use dockerignore::DockerIgnore;

/// Why the context cannot be used as it is.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("{0}")]
    Invalid(String),
    #[error("Dockerfile `{name}` not found in the build context{hint}")]
    DockerfileNotFound { name: String, hint: String },
    #[error("cannot prepare the context: {0}")]
    Io(String),
    #[error("contextDir `{dir}` is not a directory of the context; give a directory relative to the context's root (wizard:detect lists a monorepo's)")]
    DirNotFound { dir: String },
}

/// `relative` joined to `root`, if it has no `..`, root or prefix parts.
pub fn join_inside(root: &Path, relative: &str) -> Option<PathBuf> {
    let mut out = root.to_path_buf();
    let mut any = false;
    for part in Path::new(relative).components() {
        match part {
            Component::Normal(p) => {
                out.push(p);
                any = true;
            }
            Component::CurDir => {}
            _ => return None,
        }
    }
    any.then_some(out)
}

/// Whether every directory between `root` and `path` is a real directory
/// (not a link): writing through a link could land anywhere.
fn ancestors_are_real_dirs(root: &Path, path: &Path) -> bool {
    let Ok(relative) = path.strip_prefix(root) else {
        return false;
    };
    let mut current = root.to_path_buf();
    let parts: Vec<_> = relative.components().collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        current.push(part);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return true,
            _ => return false,
        }
    }
    true
}

/// Apply permission bits (never setuid/setgid/sticky) to regular files.
pub fn apply_modes(root: &Path, modes: &[(String, u32)]) -> Result<(), ContextError> {
    use std::os::unix::fs::PermissionsExt;
    for (relative, mode) in modes {
        let path = join_inside(root, relative).ok_or_else(|| {
            ContextError::Invalid(format!(
                "the context source named a path outside the context: {relative}"
            ))
        })?;
        if !ancestors_are_real_dirs(root, &path) {
            continue;
        }
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if meta.is_file() {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o777))
                    .map_err(|e| {
                        ContextError::Io(format!("cannot set the mode of {relative}: {e}"))
                    })?;
            }
        }
    }
    Ok(())
}

/// Create the links the plugin reported, after checking each again: the
/// link inside the context, reached through real directories only, not
/// replacing anything, and pointing (lexically) inside the context.
pub fn create_symlinks(root: &Path, links: &[(String, String)]) -> Result<(), ContextError> {
    for (relative, target) in links {
        let path = join_inside(root, relative).ok_or_else(|| {
            ContextError::Invalid(format!(
                "symbolic link `{relative}` is outside the build context"
            ))
        })?;
        if !link_target_inside(Path::new(relative), target) {
            return Err(ContextError::Invalid(format!(
                "symbolic link `{relative}` points to `{target}`, outside the build context; a context may only link to files inside it"
            )));
        }
        if !ancestors_are_real_dirs(root, &path) {
            return Err(ContextError::Invalid(format!(
                "symbolic link `{relative}` would be created through another link; archives may not nest links in links"
            )));
        }
        if std::fs::symlink_metadata(&path).is_ok() {
            return Err(ContextError::Invalid(format!(
                "symbolic link `{relative}` would replace a file of the same name in the archive"
            )));
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ContextError::Io(e.to_string()))?;
        }
        std::os::unix::fs::symlink(target, &path)
            .map_err(|e| ContextError::Io(format!("cannot create link {relative}: {e}")))?;
    }
    Ok(())
}

/// Whether `target`, seen from the link's directory, stays inside the root.
fn link_target_inside(link: &Path, target: &str) -> bool {
    if target.is_empty() || target.starts_with('/') {
        return false;
    }
    let mut depth = link.parent().map(|p| p.components().count()).unwrap_or(0);
    for part in Path::new(target).components() {
        match part {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 {
                    return false;
                }
                depth -= 1;
            }
            _ => return false,
        }
    }
    true
}

/// What applying `.dockerignore` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IgnoreReport {
    pub removed_files: u64,
    pub removed_bytes: u64,
}

/// Remove what `<root>/.dockerignore` excludes, except the Dockerfile and
/// the `.dockerignore` itself (Docker sends both whatever the patterns say).
pub fn apply_dockerignore(
    root: &Path,
    dockerfile: &str,
) -> Result<Option<IgnoreReport>, ContextError> {
    let text = match std::fs::read_to_string(root.join(".dockerignore")) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ContextError::Invalid(format!(
                ".dockerignore cannot be read: {e}"
            )))
        }
    };
    apply_dockerignore_text(root, dockerfile, &text).map(Some)
}

/// Make `dir` (relative to `root`) the context: it must be a real
/// directory inside `root`, reached through no link. The rest of the tree
/// is moved to `set_aside`.
pub fn narrow_to(root: &Path, dir: &str, set_aside: &Path) -> Result<(), ContextError> {
    let missing = || ContextError::DirNotFound {
        dir: dir.to_string(),
    };
    let target = join_inside(root, dir).ok_or_else(missing)?;
    let is_dir = std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir());
    if !is_dir || !ancestors_are_real_dirs(root, &target) {
        return Err(missing());
    }
    std::fs::rename(root, set_aside).map_err(|e| ContextError::Io(e.to_string()))?;
    let moved = set_aside.join(target.strip_prefix(root).expect("inside"));
    std::fs::rename(&moved, root).map_err(|e| ContextError::Io(e.to_string()))
}

/// Remove what `.dockerignore` text (one a builder generated) excludes.
pub fn apply_dockerignore_text(
    root: &Path,
    dockerfile: &str,
    text: &str,
) -> Result<IgnoreReport, ContextError> {
    let ignore = DockerIgnore::parse(text).map_err(ContextError::Invalid)?;
    if ignore.is_empty() {
        return Ok(IgnoreReport::default());
    }
    let dockerfile = Path::new(dockerfile)
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/");
    let kept = [dockerfile.as_str(), ".dockerignore"];
    let mut report = IgnoreReport::default();
    walk(root, root, &ignore, &kept, &mut report)?;
    Ok(report)
}

/// Remove excluded entries under `dir`; returns whether `dir` is now empty.
fn walk(
    root: &Path,
    dir: &Path,
    ignore: &DockerIgnore,
    kept: &[&str],
    report: &mut IgnoreReport,
) -> Result<bool, ContextError> {
    let io = |e: std::io::Error| ContextError::Io(e.to_string());
    let mut empty = true;
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let relative = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let meta = std::fs::symlink_metadata(&path).map_err(io)?;
        let excluded = ignore.excludes(&relative) && !kept.contains(&relative.as_str());
        if meta.is_dir() {
            // A kept file below an excluded directory keeps the walk going.
            let keeps_something = kept.iter().any(|k| k.starts_with(&format!("{relative}/")));
            if excluded && !ignore.has_exceptions() && !keeps_something {
                report.removed_files += count_files(&path, &mut report.removed_bytes);
                std::fs::remove_dir_all(&path).map_err(io)?;
                continue;
            }
            let now_empty = walk(root, &path, ignore, kept, report)?;
            if excluded && now_empty {
                std::fs::remove_dir(&path).map_err(io)?;
            } else {
                empty = false;
            }
        } else if excluded {
            report.removed_files += 1;
            report.removed_bytes += meta.len();
            std::fs::remove_file(&path).map_err(io)?;
        } else {
            empty = false;
        }
    }
    Ok(empty)
}

fn count_files(dir: &Path, bytes: &mut u64) -> u64 {
    let mut files = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => files += count_files(&entry.path(), bytes),
                Ok(meta) => {
                    files += 1;
                    *bytes += meta.len();
                }
                Err(_) => {}
            }
        }
    }
    files
}

/// Check the Dockerfile exists inside the context; a near miss in case is
/// named, since names are case-sensitive.
pub fn find_dockerfile(root: &Path, name: &str) -> Result<PathBuf, ContextError> {
    let not_found = |hint: String| ContextError::DockerfileNotFound {
        name: name.to_string(),
        hint,
    };
    let path = join_inside(root, name).ok_or_else(|| not_found(String::new()))?;
    let inside = path
        .canonicalize()
        .ok()
        .zip(root.canonicalize().ok())
        .map(|(file, root)| file.starts_with(root) && file.is_file())
        .unwrap_or(false);
    if inside {
        return Ok(path);
    }
    let wanted = path.file_name().map(|n| n.to_string_lossy().to_lowercase());
    let near = path
        .parent()
        .and_then(|dir| std::fs::read_dir(dir).ok())
        .and_then(|entries| {
            entries.filter_map(|e| e.ok()).find_map(|e| {
                let candidate = e.file_name().to_string_lossy().into_owned();
                (Some(candidate.to_lowercase()) == wanted).then_some(candidate)
            })
        });
    Err(not_found(match near {
        Some(found) => format!(" (there is `{found}`: names are case-sensitive)"),
        None => " (names are case-sensitive)".into(),
    }))
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_context_dir_must_be_a_real_directory_inside() {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("context");
        std::fs::create_dir_all(root.join("apps/web")).unwrap();
        std::fs::write(root.join("apps/web/index.html"), "hi").unwrap();
        std::fs::write(root.join("apps/file"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("apps/etc")).unwrap();
        std::os::unix::fs::symlink("web", root.join("apps/alias")).unwrap();
        for bad in ["apps/file", "apps/etc", "apps/alias", "../x", "apps/none"] {
            let aside = work.path().join("aside");
            let error = narrow_to(&root, bad, &aside).unwrap_err();
            assert!(matches!(error, ContextError::DirNotFound { .. }), "{bad}");
            assert!(
                root.join("apps/web/index.html").exists(),
                "{bad}: nothing moved"
            );
        }
        narrow_to(&root, "apps/web", &work.path().join("aside")).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("index.html")).unwrap(),
            "hi"
        );
    }

    use super::*;

    fn write(root: &Path, path: &str, text: &str) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn dockerignore_removes_what_it_excludes_and_keeps_the_dockerfile() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "Dockerfile", "FROM x");
        write(root, ".dockerignore", "*\n!src\n!README.md\nsrc/**/*.tmp\n");
        write(root, "src/main.rs", "fn main(){}");
        write(root, "src/deep/x.tmp", "junk");
        write(root, "README.md", "hi");
        write(root, "secret.env", "TOKEN=1");
        write(root, "node_modules/a/index.js", "x");
        let report = apply_dockerignore(root, "Dockerfile").unwrap().unwrap();
        let mut left: Vec<String> = Vec::new();
        fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    collect(root, &p, out);
                } else {
                    out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        collect(root, root, &mut left);
        left.sort();
        assert_eq!(
            left,
            vec![".dockerignore", "Dockerfile", "README.md", "src/main.rs"]
        );
        assert_eq!(report.removed_files, 3);
        assert!(!root.join("node_modules").exists());
    }

    #[test]
    fn a_dockerfile_inside_an_excluded_directory_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "docker/Dockerfile", "FROM x");
        write(root, "docker/notes.txt", "x");
        write(root, ".dockerignore", "docker\n");
        apply_dockerignore(root, "docker/Dockerfile").unwrap();
        assert!(root.join("docker/Dockerfile").exists());
        assert!(!root.join("docker/notes.txt").exists());
    }

    #[test]
    fn links_are_checked_before_they_are_created() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "app/config.yml", "a");
        create_symlinks(root, &[("current".into(), "app/config.yml".into())]).unwrap();
        assert_eq!(std::fs::read_to_string(root.join("current")).unwrap(), "a");
        for (link, target) in [
            ("x", "../outside"),
            ("y", "/etc/passwd"),
            ("current/z", "a"),
        ] {
            let err = create_symlinks(root, &[(link.into(), target.into())]).unwrap_err();
            assert!(
                matches!(err, ContextError::Invalid(_)),
                "{link} -> {target}: {err}"
            );
        }
    }

    #[test]
    fn a_dockerfile_outside_through_a_link_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ctx");
        std::fs::create_dir_all(&root).unwrap();
        write(dir.path(), "outside/Dockerfile", "FROM x");
        std::os::unix::fs::symlink("../outside/Dockerfile", root.join("Dockerfile")).unwrap();
        assert!(matches!(
            find_dockerfile(&root, "Dockerfile"),
            Err(ContextError::DockerfileNotFound { .. })
        ));
    }
}
