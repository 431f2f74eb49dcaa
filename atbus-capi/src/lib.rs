//! `libatbus.so` and `libatbus.a`: the C ABI of atbus, declared in `include/atbus.h`,
//! packaged as C libraries. Build with `cargo build --release -p atbus-capi`.
//!
//! The entry points live here and not in the `atbus` crate, so Rust programs that use
//! atbus carry no `atbus_*` C symbols.

mod ffi;

pub use ffi::*;
