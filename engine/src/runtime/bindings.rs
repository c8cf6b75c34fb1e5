//! Host bindings generated from `wit/`: one `Host` trait per WIT interface, implemented in
//! the sibling files of the same name.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "workflow",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use self::latch::workflow::{context, outbound, responses, steps, types, waits, webhooks};
