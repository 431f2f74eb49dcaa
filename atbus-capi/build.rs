//! Writes `atbus.pc` and `atbus-shared.pc` (from `atbus.pc.in`, `atbus-shared.pc.in`)
//! next to `libatbus.so` and `libatbus.a`, so C programs can build against the build
//! tree with `PKG_CONFIG_PATH=target/release pkg-config --cflags --libs atbus` (shared)
//! or `... pkg-config --static --cflags --libs atbus` (static).

use std::path::{Path, PathBuf};

fn main() {
    for module in ["atbus", "atbus-shared"] {
        write_pc(module);
    }
}

/// Fills in `MODULE.pc.in` and writes it as `MODULE.pc` next to the libraries.
fn write_pc(module: &str) {
    println!("cargo::rerun-if-changed={module}.pc.in");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    // OUT_DIR is <target>/<profile>/build/atbus-capi-<hash>/out; the libraries land in
    // <target>/<profile>.
    let lib_dir = out
        .ancestors()
        .nth(3)
        .expect("OUT_DIR lies three levels below the profile directory");
    let include = manifest
        .parent()
        .expect("atbus-capi sits in the workspace")
        .join("include");
    let template = std::fs::read_to_string(manifest.join(format!("{module}.pc.in")))
        .unwrap_or_else(|e| panic!("read atbus-capi/{module}.pc.in: {e}"));
    let pc = template
        .replace("@PREFIX@", &path(lib_dir))
        .replace("@LIBDIR@", "${prefix}")
        .replace("@INCLUDEDIR@", &path(&include))
        .replace("@VERSION@", env!("CARGO_PKG_VERSION"))
        // From the build tree a program finds libatbus.so where it was built.
        .replace("@RPATH@", " -Wl,-rpath,${libdir}");
    let target = lib_dir.join(format!("{module}.pc"));
    // Written again if someone deletes it (the file is rewritten only on change, so this
    // reruns the script once after the first write, then not again).
    println!("cargo::rerun-if-changed={}", path(&target));
    // Rewrite only on change, so the file's time says when it last changed.
    if std::fs::read_to_string(&target).ok().as_deref() != Some(pc.as_str()) {
        std::fs::write(&target, pc).unwrap_or_else(|e| panic!("write {}: {e}", target.display()));
    }
}

fn path(p: &Path) -> String {
    p.to_str()
        .unwrap_or_else(|| panic!("{} is not UTF-8: pkg-config needs a text path", p.display()))
        .to_string()
}
