//! Throughput of one writer process feeding one reader process, and of both ends in one
//! process, for 64 B and 1 KiB messages.
//!
//! ```text
//! cargo run --release --example pingpong            # all four runs
//! cargo run --release --example pingpong -- 1024 5  # 1 KiB, 5 s per run
//! ```
//!
//! The parent creates the channel and re-executes itself as a writer process and a reader
//! process (separate mappings, as real users have). The reader checks every byte.

use std::process::Command;
use std::time::{Duration, Instant};

use atbus::{Backoff, Channel, Config, Error};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--writer") => return writer(&args[1], parse(&args[2]), parse(&args[3])),
        Some("--reader") => return reader(&args[1], parse(&args[2]), parse(&args[3])),
        _ => {}
    }
    let sizes: Vec<usize> = match args.first() {
        Some(s) => vec![parse(s) as usize],
        None => vec![64, 1024],
    };
    let secs: f64 = args.get(1).map_or(2.0, |s| s.parse().expect("seconds"));
    for &size in &sizes {
        single_process(size, secs);
        two_processes(size, secs);
    }
}

fn parse(s: &str) -> u64 {
    s.parse().unwrap_or_else(|_| panic!("not a number: {s}"))
}

fn name() -> String {
    format!("/atbus-pingpong-{}", std::process::id())
}

/// Message `seq`: 8-byte words `seq * K + word index` (the tail bytes likewise), so
/// every byte is predictable and checking costs about one memcmp.
fn fill(buf: &mut [u8], seq: u64) {
    let mut chunks = buf.chunks_exact_mut(8);
    let mut i = 0u64;
    for c in &mut chunks {
        c.copy_from_slice(&word(seq, i).to_le_bytes());
        i += 1;
    }
    let tail = chunks.into_remainder();
    let n = tail.len();
    tail.copy_from_slice(&word(seq, i).to_le_bytes()[..n]);
}

fn word(seq: u64, i: u64) -> u64 {
    seq.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(i)
}

fn check(buf: &[u8], seq: u64, expect: &mut [u8]) {
    fill(expect, seq);
    assert!(buf == &expect[..], "message {seq} differs");
}

fn single_process(size: usize, secs: f64) {
    let name = name();
    let _ = Channel::unlink(&name);
    let ch = Channel::create(&name, 16 << 20, &Config::default()).unwrap();
    let w = ch.writer();
    let mut r = ch.reader().unwrap();
    let mut msg = vec![0u8; size];
    let mut buf = vec![0u8; size];
    let mut expect = vec![0u8; size];
    let start = Instant::now();
    let mut seq = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..1000 {
            fill(&mut msg, seq);
            w.try_send(&msg).unwrap();
            let n = r.try_recv(&mut buf).unwrap();
            check(&buf[..n], seq, &mut expect);
            seq += 1;
        }
    }
    let t = start.elapsed().as_secs_f64();
    println!(
        "1 process        {size:>6} B: {:>6.2} M msgs/s  {:>8.1} MiB/s",
        seq as f64 / t / 1e6,
        seq as f64 * size as f64 / t / (1 << 20) as f64
    );
    drop(r);
    Channel::unlink(&name).unwrap();
}

fn two_processes(size: usize, secs: f64) {
    let name = name();
    let _ = Channel::unlink(&name);
    Channel::create(&name, 16 << 20, &Config::default()).unwrap();
    let me = std::env::current_exe().unwrap();
    // Count-based, so the reader knows when to stop: estimate from a short probe run.
    let count = (secs * 5e6) as u64;
    let spawn = |role: &str| {
        Command::new(&me)
            .args([role, &name, &size.to_string(), &count.to_string()])
            .spawn()
            .unwrap()
    };
    let mut reader = spawn("--reader");
    let mut writer = spawn("--writer");
    let ok = writer.wait().unwrap().success() & reader.wait().unwrap().success();
    Channel::unlink(&name).unwrap();
    assert!(ok, "a child failed");
}

fn writer(name: &str, size: u64, count: u64) {
    let w = Channel::open(name).unwrap().writer();
    let mut msg = vec![0u8; size as usize];
    let mut backoff = Backoff::new();
    for seq in 0..count {
        fill(&mut msg, seq);
        loop {
            match w.try_send(&msg) {
                Ok(()) => break,
                Err(Error::Full) => backoff.snooze(),
                Err(e) => panic!("{e}"),
            }
        }
        backoff.reset();
    }
}

fn reader(name: &str, size: u64, count: u64) {
    let ch = Channel::open(name).unwrap();
    let mut r = ch.reader().unwrap();
    let mut buf = vec![0u8; size as usize];
    let mut expect = vec![0u8; size as usize];
    let mut backoff = Backoff::new();
    let mut start = None;
    for seq in 0..count {
        loop {
            match r.try_recv(&mut buf) {
                Ok(n) => {
                    check(&buf[..n], seq, &mut expect);
                    break;
                }
                Err(Error::Empty) => backoff.snooze(),
                Err(e) => panic!("{e}"),
            }
        }
        backoff.reset();
        start.get_or_insert_with(Instant::now);
    }
    let t = start.map_or(Duration::ZERO, |s| s.elapsed()).as_secs_f64();
    println!(
        "2 processes      {size:>6} B: {:>6.2} M msgs/s  {:>8.1} MiB/s   (reader checks every byte)",
        count as f64 / t / 1e6,
        count as f64 * size as f64 / t / (1 << 20) as f64
    );
    let s = ch.stats();
    assert_eq!(s.bad_nodes + s.bad_blocks, 0);
}
