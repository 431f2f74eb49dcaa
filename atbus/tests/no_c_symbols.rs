//! The `atbus` crate defines no C symbols: its C ABI lives in the `atbus-capi` package.
//! A `#[no_mangle]` or `#[export_name]` item here would be exported by every cdylib that
//! depends on atbus (a Python or Node extension, say) and could clash with `libatbus.so`
//! or with another copy of atbus. Executables usually drop such unreferenced symbols at
//! link time, so this checks the source, where the attribute would be written.
#![cfg(not(loom))]

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("read a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_atbus_crate_exports_no_c_symbols() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(
        files.iter().any(|f| f.ends_with("lib.rs")),
        "found no atbus/src/lib.rs under {}",
        src.display()
    );
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read a source file");
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("no_mangle") || code.contains("export_name") {
                found.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "C symbols defined in the atbus crate; put C entry points in atbus-capi/src/ffi.rs \
         instead:\n{}",
        found.join("\n")
    );
}
