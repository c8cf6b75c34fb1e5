//! Version 2 of `order-discount`: see `../order-discount-v1/src/flow.rs`.

const VERSION: u32 = 2;

include!("../../order-discount-v1/src/flow.rs");
