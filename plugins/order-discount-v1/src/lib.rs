//! Version 1 of `order-discount`: see `flow.rs`.

const VERSION: u32 = 1;

include!("flow.rs");
