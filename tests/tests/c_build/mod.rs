//! Building and running the C programs of `tests/c/` against `include/atbus.h` and a
//! `libatbus` built from the current source: shared by the C ABI tests (`c_abi.rs`,
//! `c_bus.rs`).

#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use atbus_tests::child::die_with_parent;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// The directory holding a `libatbus.a` and a `libatbus.so` built from the current
/// source, without test features, exactly as a C user builds them: `cargo build -p
/// atbus-capi` into a target directory of its own (once per test process; cargo makes it
/// a quick no-op when nothing changed).
pub fn lib_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c-abi-lib");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "-p", "atbus-capi", "--target-dir"])
            .arg(&target)
            .current_dir(root());
        run(&mut cmd);
        let dir = target.join("debug");
        for lib in ["libatbus.a", "libatbus.so"] {
            assert!(
                dir.join(lib).is_file(),
                "`cargo build -p atbus-capi` made no {lib} in {}: atbus-capi/Cargo.toml \
                 must list crate-type = [\"cdylib\", \"staticlib\"]",
                dir.display()
            );
        }
        dir
    })
    .clone()
}

/// Runs a tool the tests need, failing with how to install it when it is missing.
pub fn installed_tool(cmd: &mut Command, package: &str) -> Output {
    match die_with_parent(cmd).stdin(Stdio::null()).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "{:?} is not installed; the C API tests need it: apt-get install {package}",
            cmd.get_program()
        ),
        Err(e) => panic!("cannot run {cmd:?}: {e}"),
    }
}

/// A command running a compiled C program as a user would: without the
/// `LD_LIBRARY_PATH` cargo sets for tests, which names this workspace's target
/// directory and would win over the program's rpath, so a `libatbus.so` left there by an
/// older build would be loaded instead of the one from `lib_dir`.
pub fn c_program(path: &Path) -> Command {
    let mut cmd = Command::new(path);
    cmd.env_remove("LD_LIBRARY_PATH");
    die_with_parent(&mut cmd);
    cmd
}

pub fn tool(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

/// A directory for one test's programs and files, removed when the test ends.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(test: &str) -> Scratch {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("c-abi-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a command to completion and returns its output, failing the test with the
/// command line, stdout and stderr if it does not exit 0.
pub fn run(cmd: &mut Command) -> Output {
    let out = die_with_parent(cmd)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[derive(Clone, Copy, Debug)]
pub enum Link {
    /// `cc app.c -Iinclude libatbus.a -lpthread -ldl -lm`
    Static,
    /// `cc app.c -Iinclude -L<dir> -latbus -Wl,-rpath,<dir>`
    Dynamic,
}

/// Compiles `tests/c/<program>.c` with `-Wall -Wextra -Werror` and links it to atbus the
/// way docs/c-api.md tells C users to.
pub fn compile(scratch: &Scratch, program: &str, link: Link) -> PathBuf {
    let c = root().join("tests/c");
    let out = scratch.path(&format!("{program}-{link:?}"));
    let lib = lib_dir();
    let mut cmd = Command::new(tool("CC", "cc"));
    cmd.args([
        "-std=c99",
        "-pedantic",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-g",
        "-pthread",
    ])
    .arg("-I")
    .arg(root().join("include"))
    .arg("-I")
    .arg(&c)
    .arg(c.join(format!("{program}.c")))
    .arg("-o")
    .arg(&out);
    match link {
        Link::Static => cmd
            .arg(lib.join("libatbus.a"))
            .args(["-lpthread", "-ldl", "-lm"]),
        // DT_RPATH (not RUNPATH): searched before LD_LIBRARY_PATH, which cargo points at
        // target/debug, where a libatbus.so from an older build may lie.
        Link::Dynamic => cmd
            .arg(format!("-L{}", lib.display()))
            .arg("-latbus")
            .arg(format!("-Wl,--disable-new-dtags,-rpath,{}", lib.display())),
    };
    run(&mut cmd);
    out
}
