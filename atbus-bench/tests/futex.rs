//! The blocking-receive measurements run and report what they claim: `latency` with a
//! blocking atbus reader, readiness-fd and tokio readers and a blocking Unix datagram
//! reader in one run, `idle` (blocking and tokio), `space-wake`, and
//! `fast-path` (no futex wake by a writer while the reader spins). No speed is asserted.

use atbus_tests::child::command;

const BIN: &str = env!("CARGO_BIN_EXE_atbus-bench");

fn run(args: &[&str]) -> String {
    let out = command(BIN).args(args).output().expect("run atbus-bench");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{args:?}\n{stdout}\n{stderr}");
    stdout
}

#[test]
fn latency_compares_spinning_blocking_and_unix_dgram_readers_in_one_run() {
    let out = run(&[
        "latency",
        "--rate",
        "10000",
        "--sleep",
        "--secs",
        "0.3",
        "--reader",
        "spin,block,fd,tokio,unix-dgram",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ok"], true, "{v:#}");
    let results = v["results"].as_array().unwrap();
    for reader in ["spin", "block", "fd", "tokio", "unix-dgram"] {
        let r = results
            .iter()
            .find(|r| r["reader"] == reader)
            .unwrap_or_else(|| panic!("no {reader} run: {v:#}"));
        assert_eq!(r["errors"], 0, "{r:#}");
        assert_eq!(r["count"], 3000, "{r:#}");
        for k in ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"] {
            assert!(r[k].as_f64().unwrap() > 0.0, "{k}: {r:#}");
        }
    }
    let summary = v["summary"].to_string();
    assert!(summary.contains("blocking unix-dgram"), "{summary}");
    assert!(
        summary.contains("fd p50") && summary.contains("tokio p50"),
        "{summary}"
    );
}

#[test]
fn idle_blocking_reader_times_out_and_reports_its_cpu_time() {
    let out = run(&["idle", "--secs", "0.3"]);
    assert!(
        out.contains("idle block reader") && out.contains("timed out"),
        "{out}"
    );
    assert!(out.contains("CPU time"), "{out}");
}

#[test]
fn idle_tokio_reader_times_out_and_reports_its_cpu_time() {
    let out = run(&["idle", "--reader", "tokio", "--secs", "0.3"]);
    assert!(
        out.contains("idle tokio reader") && out.contains("timed out"),
        "{out}"
    );
    assert!(out.contains("CPU time"), "{out}");
}

#[test]
fn space_wake_times_writers_parked_on_a_full_ring() {
    let out = run(&["space-wake", "--samples", "20"]);
    assert!(
        out.contains("space wake-up") && out.contains("20 samples"),
        "{out}"
    );
}

#[test]
fn writers_do_not_wake_a_spinning_reader() {
    let out = run(&["fast-path", "--messages", "200000"]);
    assert!(out.contains("wakeups (futex wakes by writers) 0;"), "{out}");
    assert!(out.contains("reader futex sleeps 0"), "{out}");
}
