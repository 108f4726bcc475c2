//! Kiln context source `upload`: unpacks a context uploaded with
//! `POST /v1/contexts` (a tar, tar.gz or zip; the host tells which in the
//! `format` option) from `/input` into `/context`, with the checks of
//! [`kiln_sdk::unpack`].

use std::path::Path;

use kiln_sdk::source::{ContextInfo, ContextSource, PluginError, SourceSpec};
use kiln_sdk::unpack::{context_info, Limits};

struct Upload;

impl ContextSource for Upload {
    fn materialize(spec: SourceSpec) -> Result<ContextInfo, PluginError> {
        let input = spec.input_path.as_deref().ok_or_else(|| {
            PluginError::InvalidInput("upload needs the staged archive; none was given".into())
        })?;
        let format = spec
            .options
            .iter()
            .find(|kv| kv.key == "format")
            .map(|kv| kv.value.as_str())
            .unwrap_or("tar");
        let reader = kiln_sdk::unpack::open_archive(input).map_err(|e| {
            PluginError::Internal(format!("cannot open staged archive {input}: {e}"))
        })?;
        let limits = Limits {
            max_bytes: spec.max_unpacked_bytes,
            max_entries: spec.max_entries,
        };
        let root = Path::new("/context");
        let unpacked = match format {
            "zip" => kiln_sdk::unpack::unpack_zip(reader, root, limits),
            "tar.gz" => kiln_sdk::unpack::unpack_tar_gz(reader, root, limits),
            "tar" => kiln_sdk::unpack::unpack_tar(reader, root, limits),
            other => {
                return Err(PluginError::InvalidInput(format!(
                    "unknown archive format `{other}`; expected tar, tar.gz or zip"
                )))
            }
        }?;
        Ok(context_info(unpacked, &format!("the uploaded {format}")))
    }
}

kiln_sdk::export_context_source!(Upload);
