//! Figures for docs/bus.md (not tests: speed is measured, never asserted).
//!
//! * join + leave of one endpoint (1 MiB inbox), p50 and p99 of 2000;
//! * `members()` of a bus with 1000 endpoints (16 KiB inboxes), p50 of 200;
//! * 64-byte messages, one sender thread and one receiver thread, through the raw channel
//!   (`Writer::send` / `Reader::recv` into a buffer) and through the bus (`send_to` /
//!   `recv`, which also decodes the envelope and allocates the payload's `Vec`), three
//!   alternating runs of 1,000,000 each;
//! * each side alone: 1,000,000 `try_send` / `try_send_to` into a 256 MiB inbox, then
//!   `try_recv` / `try_recv_into` draining it, then filled again and drained with
//!   `try_recv_with` (second of two passes), twice.
//!
//! Run: `cargo run --release -p atbus-bus --example bus-figures`

use std::time::{Duration, Instant};

use atbus::{Channel, Config};
use atbus_bus::Bus;

const MESSAGES: u64 = 1_000_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn raw_rate(name: &str) -> f64 {
    let channel = Channel::create(name, 1 << 20, &Config::default()).unwrap();
    let mut reader = channel.reader().unwrap();
    let writer = channel.writer();
    let start = Instant::now();
    let rx = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        for _ in 0..MESSAGES {
            reader.recv(&mut buf).unwrap();
        }
    });
    let msg = [7u8; 64];
    for _ in 0..MESSAGES {
        writer.send(&msg).unwrap();
    }
    rx.join().unwrap();
    let rate = MESSAGES as f64 / start.elapsed().as_secs_f64();
    Channel::unlink(name).unwrap();
    rate
}

fn bus_rate(bus: &Bus) -> f64 {
    let mut sink = bus.join("sink").unwrap();
    let mut src = bus.join("src").unwrap();
    // Resolve and map the inbox before timing.
    src.send_to("sink", b"warm-up").unwrap();
    sink.recv().unwrap();
    let start = Instant::now();
    let rx = std::thread::spawn(move || {
        for _ in 0..MESSAGES {
            sink.recv().unwrap();
        }
    });
    let msg = [7u8; 64];
    for _ in 0..MESSAGES {
        src.send_to("sink", &msg).unwrap();
    }
    rx.join().unwrap();
    MESSAGES as f64 / start.elapsed().as_secs_f64()
}

/// Sender alone (fill an inbox big enough for every message), then receiver alone
/// (drain it): (send rate, receive rate), raw channel.
fn raw_split(name: &str) -> (f64, f64) {
    let channel = Channel::create(name, 256 << 20, &Config::default()).unwrap();
    let mut reader = channel.reader().unwrap();
    // A writer of its own mapping, as a sender in another process (or through the bus) has.
    let writer = if std::env::var_os("BUS_FIGURES_SAME_MAPPING").is_some() {
        channel.writer()
    } else {
        Channel::open(name).unwrap().writer()
    };
    // The length a bus message of 64 payload bytes has with its envelope, on request.
    let len = std::env::var("BUS_FIGURES_RAW_LEN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let msg = vec![7u8; len];
    let mut buf = [0u8; 256];
    let (mut send, mut recv) = (0.0, 0.0);
    for _ in 0..2 {
        let start = Instant::now();
        for _ in 0..MESSAGES {
            writer.try_send(&msg).unwrap();
        }
        send = MESSAGES as f64 / start.elapsed().as_secs_f64();
        let start = Instant::now();
        for _ in 0..MESSAGES {
            reader.try_recv(&mut buf).unwrap();
        }
        recv = MESSAGES as f64 / start.elapsed().as_secs_f64();
    }
    drop(reader);
    Channel::unlink(name).unwrap();
    (send, recv)
}

/// As `raw_split`, through the bus: (send rate, `try_recv_into` rate, `try_recv_with`
/// rate), the inbox filled again before each receive.
fn bus_split(bus: &Bus) -> (f64, f64, f64) {
    let mut sink = bus.join_with("sink", 256 << 20).unwrap();
    let mut src = bus.join("src").unwrap();
    let msg = [7u8; 64];
    // Resolve and map the inbox before timing.
    src.try_send_to("sink", &msg).unwrap();
    sink.try_recv().unwrap();
    let (mut send, mut into, mut with) = (0.0, 0.0, 0.0);
    let mut payload = Vec::new();
    let fill = |src: &mut atbus_bus::Endpoint| {
        let start = Instant::now();
        for _ in 0..MESSAGES {
            src.try_send_to("sink", &msg).unwrap();
        }
        MESSAGES as f64 / start.elapsed().as_secs_f64()
    };
    // Twice: the second pass runs on pages both mappings have touched.
    for _ in 0..2 {
        send = fill(&mut src);
        let start = Instant::now();
        for _ in 0..MESSAGES {
            sink.try_recv_into(&mut payload).unwrap();
        }
        into = MESSAGES as f64 / start.elapsed().as_secs_f64();
        fill(&mut src);
        let start = Instant::now();
        for _ in 0..MESSAGES {
            sink.try_recv_with(|_, p| p.len()).unwrap();
        }
        with = MESSAGES as f64 / start.elapsed().as_secs_f64();
    }
    (send, into, with)
}

fn main() {
    let pid = std::process::id();
    let bus_name = format!("/atbus-bus-figures-{pid}");
    let bus = Bus::create(&bus_name).unwrap();
    if std::env::var_os("BUS_FIGURES_SPLIT_ONLY").is_some() {
        let (bs, br, bw) = bus_split(&bus);
        println!(
            "bus alone: send {:.2}, receive {:.2} (try_recv_with {:.2}) M msg/s",
            bs / 1e6,
            br / 1e6,
            bw / 1e6
        );
        let (rs, rr) = raw_split(&format!("/atbus-bus-figures-raw-{pid}"));
        println!(
            "raw alone: send {:.2}, receive {:.2} M msg/s",
            rs / 1e6,
            rr / 1e6
        );
        Bus::unlink(&bus_name).unwrap();
        return;
    }

    let members_only = std::env::var_os("BUS_FIGURES_MEMBERS_ONLY").is_some();
    let mut times: Vec<Duration> = (0..if members_only { 1 } else { 2000 })
        .map(|_| {
            let start = Instant::now();
            drop(bus.join("x").unwrap());
            start.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "join+leave (1 MiB inbox): p50 {:?}, p99 {:?}",
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );

    let big_name = format!("/atbus-bus-figures-big-{pid}");
    let big = Bus::create_with_capacity(&big_name, 1024).unwrap();
    let endpoints: Vec<_> = (0..1000)
        .map(|i| big.join_with(&format!("e{i}"), 16 << 10).unwrap())
        .collect();
    let mut times: Vec<Duration> = (0..200)
        .map(|_| {
            let start = Instant::now();
            assert_eq!(big.members().unwrap().len(), 1000);
            start.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "members() with 1000 endpoints: p50 {:?}",
        percentile(&times, 0.5)
    );
    drop(endpoints);
    Bus::unlink(&big_name).unwrap();
    if members_only {
        Bus::unlink(&bus_name).unwrap();
        return;
    }

    let raw_name = format!("/atbus-bus-figures-raw-{pid}");
    let (mut raw, mut via_bus) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        raw.push(raw_rate(&raw_name));
        via_bus.push(bus_rate(&bus));
    }
    raw.sort_by(f64::total_cmp);
    via_bus.sort_by(f64::total_cmp);
    println!(
        "64 B, 1 sender thread -> 1 receiver thread, median of 3: raw channel {:.2} M msg/s, \
         bus send_to/recv {:.2} M msg/s (ratio {:.2}); runs raw {:?}, bus {:?}",
        raw[1] / 1e6,
        via_bus[1] / 1e6,
        via_bus[1] / raw[1],
        raw.iter()
            .map(|r| (r / 1e4).round() / 1e2)
            .collect::<Vec<_>>(),
        via_bus
            .iter()
            .map(|r| (r / 1e4).round() / 1e2)
            .collect::<Vec<_>>(),
    );
    for _ in 0..2 {
        let (rs, rr) = raw_split(&raw_name);
        let (bs, br, bw) = bus_split(&bus);
        println!(
            "64 B, one side alone (1 M into a 256 MiB inbox, then drained; second of two passes): send raw {:.2} vs \
             bus {:.2} M msg/s (ratio {:.2}); receive raw {:.2} vs bus {:.2} M msg/s (ratio {:.2}), \
             try_recv_with {:.2} M msg/s (ratio {:.2})",
            rs / 1e6,
            bs / 1e6,
            bs / rs,
            rr / 1e6,
            br / 1e6,
            br / rr,
            bw / 1e6,
            bw / rr
        );
    }
    Bus::unlink(&bus_name).unwrap();
}
