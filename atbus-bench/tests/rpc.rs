//! `rpc --quick`: request/reply round trips over the bus (server spinning and in an event
//! loop), over Unix stream sockets and over raw channels (`channel-spin`, `channel-fd`),
//! and iceoryx2 in a build with its feature; real server and client processes, every reply
//! checked. No speed is asserted.

mod common;
use common::passing_json;

#[test]
fn quick_rpc_runs_every_size_client_count_and_transport() {
    let iceoryx2 = cfg!(feature = "iceoryx2");
    let transports = if iceoryx2 {
        "atbus,unix-stream,channel,iceoryx2"
    } else {
        "atbus,unix-stream,channel"
    };
    let v = passing_json(&["rpc", "--quick", "--transports", transports]);
    let rows = v["results"].as_array().unwrap();
    let mut expected = vec![
        "atbus-spin",
        "atbus-fd",
        "unix-stream",
        "channel-spin",
        "channel-fd",
    ];
    if iceoryx2 {
        expected.push("iceoryx2");
    }
    assert_eq!(rows.len(), 3 * 2 * expected.len(), "{v:#}");
    for size in [8, 1024, 16384] {
        for clients in [1, 8] {
            for t in &expected {
                let row = rows
                    .iter()
                    .find(|r| r["size"] == size && r["clients"] == clients && r["transport"] == *t)
                    .unwrap_or_else(|| panic!("no row {size} B x{clients} {t}: {v:#}"));
                assert!(row["failure"].is_null(), "{row:#}");
                assert!(row["skipped"].is_null(), "{row:#}");
                assert!(row["round_trips"].as_u64().unwrap() > 0, "{row:#}");
                let p50 = row["p50_us"].as_f64().unwrap();
                let p999 = row["p999_us"].as_f64().unwrap();
                assert!(p50 > 0.0 && p999 >= p50, "{row:#}");
                // The mean lies between the fastest and the slowest round trip; whether the
                // clients took turns in bursts is said for every row (never with one client).
                let mean = row["mean_us"].as_f64().unwrap();
                assert!(
                    mean > 0.0 && mean <= row["max_us"].as_f64().unwrap(),
                    "{row:#}"
                );
                let bursts = row["turns_in_bursts"].as_bool().unwrap();
                assert!(clients > 1 || !bursts, "{row:#}");
                assert!(row["round_trips_per_s"].as_f64().unwrap() > 0.0, "{row:#}");
            }
        }
    }
    // The targets are computed from the rows: atbus-fd over the Unix-socket RPC at every
    // size and client count, atbus-spin at 8 bytes.
    let targets = v["targets"].as_array().unwrap();
    let over_unix = targets
        .iter()
        .filter(|t| t["reference"] == "unix-stream")
        .count();
    assert_eq!(over_unix, 6, "{v:#}");
    let spin = targets
        .iter()
        .filter(|t| t["what"] == "atbus-spin p50 us")
        .count();
    assert_eq!(spin, 2, "{v:#}");
    assert!(!v["cpu_model"].as_str().unwrap().is_empty(), "{v:#}");
}

/// Asked for by name in a build without the `iceoryx2` feature, iceoryx2 is refused in one
/// line that says how to build it in.
#[cfg(not(feature = "iceoryx2"))]
#[test]
fn rpc_iceoryx2_without_its_feature_says_how_to_get_it() {
    common::refused_in_one_line(
        &["rpc", "--quick", "--transports", "iceoryx2"],
        "--features iceoryx2",
    );
}
