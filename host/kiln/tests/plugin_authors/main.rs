//! A plugin author's path with the `kiln` command: scaffolds and the
//! example plugins, each built with cargo in its own directory as a third
//! party would. Apart from the CLI's tests because these run cargo builds
//! of their own, which take both cores for minutes.

mod example_plugins;
mod plugin_authoring;
mod plugins_as_oci_artifacts;
