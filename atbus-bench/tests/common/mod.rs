//! Running the built `atbus-bench` from the tests: its JSON report, or its one-line
//! refusal. Every child dies with the test binary (`atbus_tests::child::command`).

#![allow(dead_code)] // each test file uses its own subset

use atbus_tests::child::command;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_atbus-bench");

/// Runs `atbus-bench ARGS --json`: its report, exit code and stderr. Fails the test if
/// stdout is not one JSON document.
pub fn run_json(args: &[&str]) -> (serde_json::Value, i32, String) {
    let out = command(BIN)
        .args(args)
        .arg("--json")
        .output()
        .expect("run atbus-bench");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {stderr}"));
    (v, out.status.code().unwrap_or(-1), stderr)
}

/// [`run_json`] for a run that must pass: exit 0 and `"ok": true`.
pub fn passing_json(args: &[&str]) -> serde_json::Value {
    let (v, code, stderr) = run_json(args);
    assert_eq!(code, 0, "{v:#}\n{stderr}");
    assert_eq!(v["ok"], true, "{v:#}");
    v
}

/// Runs `atbus-bench ARGS`, which must exit 2 with one line on stderr that contains
/// `needle`, and nothing on stdout.
pub fn refused_in_one_line(args: &[&str], needle: &str) {
    let out = command(BIN).args(args).output().expect("run atbus-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(needle), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
