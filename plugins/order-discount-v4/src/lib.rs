//! Version 4 of `order-discount`: see `../order-discount-v1/src/flow.rs`.

const VERSION: u32 = 4;

include!("../../order-discount-v1/src/flow.rs");
