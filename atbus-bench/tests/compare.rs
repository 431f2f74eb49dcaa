//! `compare --quick`: every transport (atbus, the references, the OS transports) carries
//! the workloads it can, in real writer and reader processes, and every message passes the
//! same payload checks. No speed is asserted.

mod common;
use common::passing_json;

#[test]
fn quick_compare_checks_every_transport() {
    let v = passing_json(&["compare", "--quick"]);
    let rows = v["results"].as_array().unwrap();
    // iceoryx2 is a non-default feature (`.ci/run` tests with it); a build without it says
    // so in every iceoryx2 row.
    let iceoryx2 = cfg!(feature = "iceoryx2");
    for (t, at_least) in [
        ("atbus", 8),
        ("atbus-zc", 8),
        ("atbus-batch", 2),
        ("atbus-batch-send", 2),
        ("atbus-send-to", 2),
        ("limit", 8),
        ("iceoryx2", if iceoryx2 { 8 } else { 0 }),
        ("unix-dgram", 4),
        ("pipe", 4),
        ("posix-mq", 4),
    ] {
        let ran: Vec<_> = rows
            .iter()
            .filter(|r| r["transport"] == t && r["skipped"].is_null())
            .collect();
        assert!(
            ran.len() >= at_least,
            "{t} ran only {} workloads: {v:#}",
            ran.len()
        );
        for r in ran {
            assert!(r["failure"].is_null(), "{r:#}");
            assert!(r["delivered"].as_u64().unwrap() > 0, "{r:#}");
            assert_eq!(r["errors"], 0, "{r:#}");
        }
    }
    // The zero-copy, batched and bus (send_to) variants are compared with copying atbus.
    let variants = v["atbus_variants"].as_array().unwrap();
    for (variant, workload) in [
        ("atbus-zc", "1->1 16KiB"),
        ("atbus-batch", "1->1 64B"),
        ("atbus-batch-send", "1->1 64B"),
        ("atbus-send-to", "1->1 64B"),
    ] {
        let row = variants
            .iter()
            .find(|r| r["variant"] == variant && r["workload"] == workload)
            .unwrap_or_else(|| panic!("no {variant} ratio at {workload}: {v:#}"));
        assert!(row["ratio_of_medians"].as_f64().unwrap() > 0.0, "{row:#}");
    }
    // atbus and atbus-zc over each reference, at every workload: ratio of medians in the
    // table rows, and paired by round in `references`.
    let references = v["references"].as_array().unwrap();
    let workloads: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|r| r["workload"].as_str().unwrap())
        .collect();
    assert_eq!(workloads.len(), 8, "{v:#}");
    let refs: &[&str] = if iceoryx2 {
        &["limit", "iceoryx2"]
    } else {
        &["limit"]
    };
    for workload in &workloads {
        for t in ["atbus", "atbus-zc"] {
            let row = rows
                .iter()
                .find(|r| r["transport"] == t && r["workload"] == *workload)
                .unwrap();
            for reference in refs {
                let ratio = &row[format!("{reference}_ratio_median")];
                assert!(ratio.as_f64().unwrap() > 0.0, "{row:#}");
                let paired = references
                    .iter()
                    .find(|r| {
                        r["transport"] == t
                            && r["reference"] == *reference
                            && r["workload"] == *workload
                    })
                    .unwrap_or_else(|| panic!("no {t} ÷ {reference} at {workload}: {v:#}"));
                assert_eq!(paired["ratio_of_medians"], *ratio, "{paired:#}");
                assert_eq!(paired["ratio_per_round"].as_array().unwrap().len(), 1);
                assert!(paired["ratio_per_round_median"].as_f64().unwrap() > 0.0);
            }
        }
    }
    // The summary names the CPU, and how long a cache line takes between two of them
    // before and after the runs (or says why it could not tell).
    assert!(!v["cpu_model"].as_str().unwrap().is_empty(), "{v:#}");
    assert!(!v["cpu_vendor"].as_str().unwrap().is_empty(), "{v:#}");
    let line = &v["line_transfer"];
    match line["why_not"].as_str() {
        Some(why) => assert!(!why.is_empty(), "{line:#}"),
        None => {
            let cpus = line["cpus"].as_array().unwrap();
            assert!(cpus.len() == 2 && cpus[0] != cpus[1], "{line:#}");
            for when in ["before_ns", "after_ns"] {
                let ns = line[when].as_f64().unwrap();
                assert!(ns > 0.0 && ns.is_finite(), "{line:#}");
            }
        }
    }
    // atbus and the references carry every workload; skipped ones say why.
    for r in rows {
        let t = r["transport"].as_str().unwrap();
        if t.starts_with("atbus") || t == "limit" || (t == "iceoryx2" && iceoryx2) {
            assert!(r["skipped"].is_null(), "{r:#}");
        }
        if t == "iceoryx2" && !iceoryx2 {
            let why = r["skipped"].as_str().unwrap_or_default();
            assert!(why.contains("`iceoryx2` feature"), "{r:#}");
        }
        if let Some(why) = r["skipped"].as_str() {
            assert!(
                why.contains("PIPE_BUF") || why.contains("msgsize_max") || why.contains("feature"),
                "{why}"
            );
        }
    }
}

/// Asked for by name in a build without the `iceoryx2` feature, iceoryx2 is refused in one
/// line that says how to build it in.
#[cfg(not(feature = "iceoryx2"))]
#[test]
fn iceoryx2_without_its_feature_says_how_to_get_it() {
    common::refused_in_one_line(
        &["compare", "--quick", "--transports", "atbus,iceoryx2"],
        "--features iceoryx2",
    );
}

#[test]
fn check_both_measures_every_row_with_full_and_then_light_checks() {
    let v = passing_json(&[
        "compare",
        "--quick",
        "--check",
        "both",
        "--transports",
        "atbus,limit",
        "--workloads",
        "1x64,3x8-2K",
    ]);
    assert_eq!(v["check"], "both", "{v:#}");
    let modes = v["modes"].as_array().unwrap();
    let checks: Vec<&str> = modes.iter().map(|m| m["check"].as_str().unwrap()).collect();
    assert_eq!(checks, ["full", "light"], "{v:#}");
    for mode in modes {
        let rows = mode["results"].as_array().unwrap();
        assert_eq!(rows.len(), 4, "{mode:#}");
        for r in rows {
            assert!(r["failure"].is_null(), "{r:#}");
            assert!(r["delivered"].as_u64().unwrap() > 0, "{r:#}");
            assert_eq!(r["errors"], 0, "{r:#}");
        }
    }
}
