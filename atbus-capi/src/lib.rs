//! `libatbus.so` and `libatbus.a`: the C ABI of atbus (`atbus::ffi`, declared in
//! `include/atbus.h`), packaged as C libraries. Build with
//! `cargo build --release -p atbus-capi`.

pub use atbus::ffi::*;

/// Keeps every `atbus_*` entry point in the libraries: the symbols live in the `atbus`
/// rlib, and a cdylib links only the objects of its dependencies that it references.
#[used]
static KEEP_ENTRY_POINTS: fn() -> [*const (); 16] = atbus::ffi::entry_points;
