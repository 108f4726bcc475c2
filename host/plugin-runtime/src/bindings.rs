//! Host-side bindings for the plugin worlds, generated from `wit/`.
//!
//! Both worlds share `types` and `log`, so the second `bindgen!` reuses the
//! first one's types instead of generating its own.

/// The `builder` world: imports `log` and `engine`, exports `build`.
pub mod builder {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "kiln:plugin/builder",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "kiln:plugin/engine.container": crate::capabilities::ContainerHandle,
        },
    });
}

/// The `context-source` world: imports `log`, exports `source`.
pub mod source {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "kiln:plugin/context-source",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "kiln:plugin/types": crate::bindings::builder::kiln::plugin::types,
            "kiln:plugin/log": crate::bindings::builder::kiln::plugin::log,
        },
    });
}

/// The `credential-store` world: imports `log`, exports `credentials`.
pub mod store {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "kiln:plugin/credential-store",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "kiln:plugin/types": crate::bindings::builder::kiln::plugin::types,
            "kiln:plugin/log": crate::bindings::builder::kiln::plugin::log,
        },
    });
}

/// The `detector` world: imports `log`, exports `detect`.
pub mod detector {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "kiln:plugin/detector",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "kiln:plugin/types": crate::bindings::builder::kiln::plugin::types,
            "kiln:plugin/log": crate::bindings::builder::kiln::plugin::log,
        },
    });
}

pub use builder::kiln::plugin::{engine, log, types};

impl types::PluginError {
    /// What the plugin said, whichever kind of error it is.
    pub fn into_message(self) -> String {
        match self {
            types::PluginError::InvalidInput(m)
            | types::PluginError::ContextInvalid(m)
            | types::PluginError::Denied(m)
            | types::PluginError::Internal(m) => m,
            types::PluginError::Engine(failure) => failure.message,
        }
    }
}
pub use source::kiln::plugin::git;
