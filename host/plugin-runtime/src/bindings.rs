//! Host-side bindings for the plugin worlds, generated from `wit/`.
//!
//! Every world shares `types` and `log`, so each `bindgen!` after the first
//! reuses the first one's instead of generating its own. The `notifier`
//! world is contract 0.2.0's; it imports the same `log@0.1.0` and uses the
//! same `types@0.1.0`, so it reuses them too and its host side is nothing
//! but its export; so is contract 0.3.0's `attestor`.

/// The `builder` world: imports `log` and `engine`, exports `build`.
pub mod builder {
    wasmtime::component::bindgen!({
        path: "wit/0.1.0",
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
        path: "wit/0.1.0",
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
        path: "wit/0.1.0",
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
        path: "wit/0.1.0",
        world: "kiln:plugin/detector",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "kiln:plugin/types": crate::bindings::builder::kiln::plugin::types,
            "kiln:plugin/log": crate::bindings::builder::kiln::plugin::log,
        },
    });
}

/// The `notifier` world (contract 0.2.0): imports `log@0.1.0`, exports `notify@0.2.0`.
pub mod notifier {
    wasmtime::component::bindgen!({
        path: "wit/0.2.0",
        world: "kiln:plugin/notifier@0.2.0",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "kiln:plugin/types@0.1.0": crate::bindings::builder::kiln::plugin::types,
            "kiln:plugin/log@0.1.0": crate::bindings::builder::kiln::plugin::log,
        },
    });
}

/// The `attestor` world (contract 0.3.0): imports `log@0.1.0`, exports `attest@0.3.0`.
pub mod attestor {
    wasmtime::component::bindgen!({
        path: "wit/0.3.0",
        world: "kiln:plugin/attestor@0.3.0",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "kiln:plugin/types@0.1.0": crate::bindings::builder::kiln::plugin::types,
            "kiln:plugin/log@0.1.0": crate::bindings::builder::kiln::plugin::log,
        },
    });
}

pub use attestor::exports::kiln::plugin0_3_0::attest;
pub use builder::kiln::plugin::{engine, log, types};
pub use notifier::exports::kiln::plugin0_2_0::notify;

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
