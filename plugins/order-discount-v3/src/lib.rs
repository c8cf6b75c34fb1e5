//! Version 3 of `order-discount`: see `../order-discount-v1/src/flow.rs`.

const VERSION: u32 = 3;

include!("../../order-discount-v1/src/flow.rs");
