//! Criterion benchmarks of atbus in one process: send + recv per size (with a caller
//! buffer misaligned by 16 bytes for 16 KiB, against glibc's `rep movsb` cliff), the
//! claim compare-exchange under two contending writer threads, and crc32 per size.
//!
//! `cargo bench -p atbus-bench` (add `-- --quick` for a fast pass).

use std::hint::black_box;
use std::time::{Duration, Instant};

use atbus::{Channel, Config};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn channel(tag: &str, size: usize) -> (Channel, String) {
    let name = format!("/atbus-bench-crit-{}-{tag}", std::process::id());
    let _ = Channel::unlink(&name);
    let ch = Channel::create(&name, size, &Config::default()).expect("create channel");
    (ch, name)
}

/// A buffer of `len` bytes at `offset` from a 64-byte boundary.
struct Buf {
    mem: Vec<u8>,
    start: usize,
    len: usize,
}

impl Buf {
    fn new(len: usize, offset: usize) -> Buf {
        let mem = vec![0xA5u8; len + 128];
        let start = mem.as_ptr().align_offset(64) + offset;
        Buf { mem, start, len }
    }
    fn get(&self) -> &[u8] {
        &self.mem[self.start..self.start + self.len]
    }
    fn get_mut(&mut self) -> &mut [u8] {
        &mut self.mem[self.start..self.start + self.len]
    }
}

fn send_recv(c: &mut Criterion) {
    let mut g = c.benchmark_group("send_recv");
    for (label, size, offset, ring) in [
        ("64B", 64, 0, 16 << 20),
        ("1KiB", 1024, 0, 16 << 20),
        ("16KiB", 16384, 0, 16 << 20),
        ("16KiB_buffers_at_16_mod_64", 16384, 16, 16 << 20),
        // The same in a ring small enough to stay in cache: the difference is the cost of
        // cycling through 16 MiB of ring memory.
        ("16KiB_in_1MiB_ring", 16384, 0, 1 << 20),
    ] {
        let (ch, name) = channel(label, ring);
        let writer = ch.writer();
        let mut reader = ch.reader().unwrap();
        let src = Buf::new(size, offset);
        let mut dst = Buf::new(size, offset);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| {
                writer.try_send(black_box(src.get())).unwrap();
                black_box(reader.try_recv(dst.get_mut()).unwrap());
            })
        });
        drop(reader);
        let _ = Channel::unlink(&name);
    }
    // The cliff atbus avoids: one plain memcpy of 16 KiB between buffers whose distance
    // is 16 mod 32, against the same copy 64-byte aligned.
    for (label, offset) in [("memcpy_16KiB_aligned", 0), ("memcpy_16KiB_off_by_16", 16)] {
        let src = Buf::new(16384, 0);
        let mut dst = Buf::new(16384, offset);
        g.throughput(Throughput::Bytes(16384));
        g.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| dst.get_mut().copy_from_slice(black_box(src.get())))
        });
    }
    g.finish();
}

/// Sends `per_thread` 64-byte messages from each of `threads` threads at once into an
/// empty ring (no reader while timed), then drains it untimed.
fn contended_sends(ch: &Channel, threads: usize, per_thread: u64) -> Duration {
    let barrier = std::sync::Barrier::new(threads);
    let start = std::sync::OnceLock::new();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let w = ch.writer();
                let msg = [7u8; 64];
                barrier.wait();
                start.get_or_init(Instant::now);
                for _ in 0..per_thread {
                    w.try_send(black_box(&msg)).unwrap();
                }
            });
        }
    });
    let elapsed = start.get().unwrap().elapsed();
    let mut r = ch.reader().unwrap();
    let mut buf = [0u8; 64];
    for _ in 0..threads as u64 * per_thread {
        r.try_recv(&mut buf).unwrap();
    }
    elapsed
}

fn claim_contention(c: &mut Criterion) {
    let mut g = c.benchmark_group("claim_contention");
    // 64 MiB of 128-byte nodes holds ~500k 64-byte messages.
    let (ch, name) = channel("claim", 64 << 20);
    const BATCH: u64 = 100_000;
    for threads in [1usize, 2] {
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("send_64B_threads", threads), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(BATCH);
                    let per = n.div_ceil(threads as u64);
                    // Time per message, scaled back to n messages.
                    let t = contended_sends(&ch, threads, per);
                    total += t.mul_f64(n as f64 / (per * threads as u64) as f64);
                    left -= n;
                }
                total
            })
        });
    }
    let st = ch.stats();
    eprintln!(
        "claim_contention: {} claims retried out of {} sends",
        st.write_retries, st.messages_sent
    );
    g.finish();
    let _ = Channel::unlink(&name);
}

fn crc32(c: &mut Criterion) {
    let mut g = c.benchmark_group("crc32");
    for size in [64usize, 1024, 16384] {
        let data = vec![0x3Cu8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter(|| atbus::layout::payload_crc(black_box(&data)))
        });
    }
    g.finish();
}

criterion_group!(benches, send_recv, claim_contention, crc32);
criterion_main!(benches);
