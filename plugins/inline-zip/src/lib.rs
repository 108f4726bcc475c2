//! Kiln context source `inline-zip`: unpacks the zip a build request carried
//! inline (`zippedCode`) from `/input` into `/context`, with the checks of
//! [`kiln_sdk::unpack`].

use std::path::Path;

use kiln_sdk::source::{ContextInfo, ContextSource, PluginError, SourceSpec};
use kiln_sdk::unpack::{context_info, Limits};

struct InlineZip;

impl ContextSource for InlineZip {
    fn materialize(spec: SourceSpec) -> Result<ContextInfo, PluginError> {
        let input = spec.input_path.as_deref().ok_or_else(|| {
            PluginError::InvalidInput("inline-zip needs the staged zip; none was given".into())
        })?;
        let file = kiln_sdk::unpack::open_archive(input)
            .map_err(|e| PluginError::Internal(format!("cannot open staged zip {input}: {e}")))?;
        let limits = Limits {
            max_bytes: spec.max_unpacked_bytes,
            max_entries: spec.max_entries,
        };
        let unpacked = kiln_sdk::unpack::unpack_zip(file, Path::new("/context"), limits)?;
        Ok(context_info(unpacked, "the inline zip"))
    }
}

kiln_sdk::export_context_source!(InlineZip);
