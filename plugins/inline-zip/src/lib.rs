//! Kiln context source `inline-zip`: unpacks the zip a build request carried
//! inline (`zippedCode`) from `/input` into `/context`.
//!
//! Extraction happens here, inside the sandbox, so even a path check this
//! code missed could not write outside the context: the host preopens only
//! `/input` (read-only) and `/context`. The checks below exist to give the
//! user a clear error instead of a bare permission failure.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use kiln_sdk::source::{ContextInfo, ContextSource, FileMode, PluginError, PluginInfo, SourceSpec};

const CONTEXT_ROOT: &str = "/context";

struct InlineZip;

impl ContextSource for InlineZip {
    fn describe() -> PluginInfo {
        PluginInfo {
            description: "Unpacks an inline zip into the build context".into(),
        }
    }

    fn materialize(spec: SourceSpec) -> Result<ContextInfo, PluginError> {
        let input = spec.input_path.as_deref().ok_or_else(|| {
            PluginError::InvalidInput("inline-zip needs the staged zip; none was given".into())
        })?;
        let file = fs::File::open(input)
            .map_err(|e| PluginError::Internal(format!("cannot open staged zip {input}: {e}")))?;
        let limits = Limits {
            max_bytes: spec.max_unpacked_bytes,
            max_entries: spec.max_entries,
        };
        let info = unpack(io::BufReader::new(file), Path::new(CONTEXT_ROOT), limits)?;
        Ok(info)
    }
}

kiln_sdk::export_context_source!(InlineZip);

#[derive(Clone, Copy)]
struct Limits {
    max_bytes: u64,
    max_entries: u64,
}

fn invalid(message: String) -> PluginError {
    PluginError::ContextInvalid(message)
}

/// The entry's path relative to the context, or why it may not be unpacked.
fn safe_relative_path(name: &str) -> Result<PathBuf, PluginError> {
    let escape = || {
        invalid(format!(
            "zip entry `{name}` points outside the build context; \
             re-create the archive from inside the context directory, with relative paths and no `..`"
        ))
    };
    if name.starts_with('/') || name.starts_with('\\') || name.contains('\\') {
        return Err(escape());
    }
    let mut out = PathBuf::new();
    for part in Path::new(name).components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(escape())
            }
        }
    }
    Ok(out)
}

fn unpack<R: Read + io::Seek>(
    reader: R,
    root: &Path,
    limits: Limits,
) -> Result<ContextInfo, PluginError> {
    let mut archive = zip::ZipArchive::new(reader).map_err(|e| {
        invalid(format!(
            "zippedCode is not a readable zip archive ({e}); send a zip made with `zip -r` or similar"
        ))
    })?;
    if archive.len() as u64 > limits.max_entries {
        return Err(invalid(format!(
            "the zip holds {} entries, more than the limit of {}",
            archive.len(),
            limits.max_entries
        )));
    }
    let mut files = 0u64;
    let mut bytes = 0u64;
    let mut file_modes = Vec::new();
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| invalid(format!("zip entry #{index} is unreadable: {e}")))?;
        let name = entry.name().to_string();
        let relative = safe_relative_path(&name)?;
        if relative.as_os_str().is_empty() {
            continue;
        }
        let target = root.join(&relative);
        if entry.is_symlink() {
            return Err(invalid(format!(
                "zip entry `{name}` is a symbolic link; inline zips may hold only files and directories"
            )));
        }
        if entry.is_dir() {
            fs::create_dir_all(&target)
                .map_err(|e| PluginError::Internal(format!("cannot create `{name}`: {e}")))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| PluginError::Internal(format!("cannot create `{name}`: {e}")))?;
        }
        let mut out = fs::File::create(&target)
            .map_err(|e| PluginError::Internal(format!("cannot write `{name}`: {e}")))?;
        // Count what actually decompresses, not what the header claims: a
        // bomb lies in its header.
        let budget = limits.max_bytes.saturating_sub(bytes);
        let written = io::copy(&mut (&mut entry).take(budget + 1), &mut out)
            .map_err(|e| invalid(format!("zip entry `{name}` cannot be decompressed: {e}")))?;
        if written > budget {
            return Err(invalid(format!(
                "the zip unpacks to more than {} bytes (stopped at `{name}`); \
                 it may be an archive bomb, or the context needs a .dockerignore",
                limits.max_bytes
            )));
        }
        out.flush()
            .map_err(|e| PluginError::Internal(format!("cannot write `{name}`: {e}")))?;
        bytes += written;
        files += 1;
        if let Some(mode) = entry.unix_mode() {
            let permissions = mode & 0o777;
            if permissions & 0o111 != 0 {
                file_modes.push(FileMode {
                    path: relative.to_string_lossy().into_owned(),
                    mode: permissions,
                });
            }
        }
    }
    Ok(ContextInfo {
        files,
        bytes,
        file_modes,
        summary: format!("unpacked {files} files ({bytes} bytes) from the inline zip"),
    })
}
