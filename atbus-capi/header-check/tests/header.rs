//! The committed C header `include/atbus.h` is what cbindgen makes of
//! `atbus-capi/src/ffi.rs`.
//!
//! Regenerate it with
//! `ATBUS_BLESS=1 cargo test --manifest-path atbus-capi/header-check/Cargo.toml`.

use std::path::PathBuf;

const REGENERATE: &str =
    "ATBUS_BLESS=1 cargo test --manifest-path atbus-capi/header-check/Cargo.toml";

#[test]
fn committed_header_matches_a_fresh_generation() {
    // This package sits in atbus-capi/header-check.
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("header-check sits in atbus-capi")
        .to_path_buf();
    let root = crate_dir
        .parent()
        .expect("atbus-capi sits in the workspace");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("atbus-capi/cbindgen.toml parses");
    let mut fresh = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/ffi.rs"))
        .generate()
        .expect("cbindgen generates the header from src/ffi.rs")
        .write(&mut fresh);
    let fresh = String::from_utf8(fresh).expect("the header is UTF-8");
    let path = root.join("include/atbus.h");
    if std::env::var_os("ATBUS_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write include/atbus.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != fresh {
        let line = committed
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(fresh.lines().count()));
        panic!(
            "include/atbus.h is stale (first difference at line {}): regenerate it with\n\n    \
             {REGENERATE}\n\nand commit it",
            line + 1
        );
    }
}
