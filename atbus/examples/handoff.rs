//! What a writer pays to take ring lines back from the reader's core.
//!
//! A 64-byte message costs the writer a few tens of nanoseconds when the ring's lines are
//! in its own cache. In a 1->1 stream they never are: the reader read them, and wrote
//! each node's first word when it consumed it, so every message starts with the writer
//! fetching lines from the other core. This example measures the writer alone (nothing
//! polls while it sends), 64 B messages, in two states of the ring:
//!
//! - **local**: the lines were last touched by the writer's own core (its own thread
//!   drained them);
//! - **handed back**: they were last touched by a reader on the other core.
//!
//! for atbus `try_send`, atbus `try_send_batch` of 16, and a bare ring of the `limit`
//! kind (a Vyukov slot ring: claim by CAS, publish by a plain store; no crc, no recovery
//! from dead writers), alternating them round by round.
//!
//! ```text
//! cargo run --release -p atbus --example handoff        # 5 rounds
//! cargo run --release -p atbus --example handoff -- 9   # 9 rounds
//! ```
//!
//! Threads, not processes: what is measured is where cache lines are, which is the same
//! for two threads pinned to two cores as for two processes. The writer runs on CPU 0 and
//! the reader on CPU 1.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use atbus::{Channel, Config};

/// Messages per timed pass (the rings hold 131,071 of them).
const MESSAGES: usize = 100_000;
const SIZE: usize = 64;
const BATCH: usize = 16;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(5, |s| s.parse().expect("rounds: a number"));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        eprintln!("handoff: needs two CPUs (this host has {cpus}); the figures would mean nothing");
        std::process::exit(1);
    }
    pin_to(0);
    println!(
        "one cache line passed between CPU 0 and CPU 1: {:.0} ns each way (a ping-pong)",
        line_transfer_ns()
    );
    let name = format!("/atbus-example-handoff-{}", std::process::id());
    let channel = Channel::create(&name, 16 << 20, &Config::default()).expect("create");
    let result = std::panic::catch_unwind(|| run(&name, &channel, rounds));
    drop(channel);
    let _ = Channel::unlink(&name);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// The rings under test, by the name printed.
const KINDS: [&str; 3] = ["atbus try_send", "atbus try_send_batch(16)", "limit ring"];

fn run(name: &str, channel: &Channel, rounds: usize) {
    let writer = channel.writer();
    let limit = SlotRing::new();
    let msg = [0x5au8; SIZE];
    let batch = [&msg[..]; BATCH];
    let send = |kind: usize| match kind {
        0 => (0..MESSAGES).for_each(|_| writer.try_send(&msg).expect("try_send")),
        1 => {
            let mut sent = 0;
            while sent < MESSAGES {
                sent += writer.try_send_batch(&batch).expect("try_send_batch");
            }
        }
        _ => (0..MESSAGES).for_each(|_| limit.send(&msg)),
    };
    // The reader thread on CPU 1 drains on request; the writer's own thread drains for
    // the "local" figures. The atbus reader role moves between the two threads: each
    // drops its reader before the other takes the role.
    let (ask, asked) = mpsc::channel::<usize>();
    let (done, finished) = mpsc::channel::<()>();
    let channel_name = name.to_string();
    std::thread::scope(|s| {
        let limit = &limit;
        s.spawn(move || {
            pin_to(1);
            let channel = Channel::open(&channel_name).expect("open");
            for kind in asked {
                if kind == 2 {
                    limit.drain();
                } else {
                    let mut r = channel.reader().expect("reader on CPU 1");
                    drain(&mut r);
                }
                done.send(()).expect("main thread gone");
            }
        });
        let drain_here = |kind: usize, reader: &mut Option<atbus::Reader>| {
            if kind == 2 {
                limit.drain();
            } else {
                drain(reader.get_or_insert_with(|| channel.reader().expect("reader")));
            }
        };
        let mut local_reader: Option<atbus::Reader> = None;
        let mut figures = vec![(Vec::new(), Vec::new()); KINDS.len()];
        // One untimed pass of each, so that every line has been written once.
        for kind in 0..KINDS.len() {
            send(kind);
            drain_here(kind, &mut local_reader);
        }
        for _ in 0..rounds {
            for (kind, (local, handed)) in figures.iter_mut().enumerate() {
                // Local: this thread drained the last pass.
                send(kind);
                drain_here(kind, &mut local_reader);
                local.push(timed(|| send(kind)));
                // Handed back: the reader on the other core drains, then we send again.
                local_reader = None;
                ask.send(kind).expect("reader thread gone");
                finished.recv().expect("reader thread gone");
                handed.push(timed(|| send(kind)));
                drain_here(kind, &mut local_reader);
            }
        }
        drop(ask);
        print_table(&figures, rounds);
    });
}

fn drain(reader: &mut atbus::Reader) {
    let mut buf = [0u8; SIZE];
    while reader.try_recv(&mut buf).is_ok() {}
}

/// How long one cache line takes to go from one core to the other: two threads (CPU 0
/// and CPU 1) take turns writing one word, each waiting for the other's value in a tight
/// loop (no PAUSE, which would add its own delay to every turn).
fn line_transfer_ns() -> f64 {
    #[repr(align(128))]
    struct Line(AtomicU64);
    let line = Line(AtomicU64::new(0));
    let turns = 200_000u64;
    std::thread::scope(|s| {
        s.spawn(|| {
            pin_to(1);
            for i in 0..turns {
                // Acquire/release: a plain hand-over of the word between the two threads.
                while line.0.load(Ordering::Acquire) != 2 * i + 1 {}
                line.0.store(2 * i + 2, Ordering::Release);
            }
        });
        let t = Instant::now();
        for i in 0..turns {
            line.0.store(2 * i + 1, Ordering::Release);
            while line.0.load(Ordering::Acquire) != 2 * i + 2 {}
        }
        t.elapsed().as_nanos() as f64 / (2 * turns) as f64
    })
}

/// Nanoseconds per message of one pass.
fn timed(pass: impl FnOnce()) -> f64 {
    let t = Instant::now();
    pass();
    t.elapsed().as_nanos() as f64 / MESSAGES as f64
}

fn print_table(figures: &[(Vec<f64>, Vec<f64>)], rounds: usize) {
    println!(
        "writer alone, {SIZE} B messages, {MESSAGES} per pass, {rounds} rounds alternating; \
         ns per message, min / median / max"
    );
    println!("| ring | lines local | lines handed back by the reader's core | extra (medians) |");
    println!("|---|---|---|---|");
    for (kind, (local, handed)) in KINDS.iter().zip(figures) {
        let (l, h) = (stats(local), stats(handed));
        println!(
            "| {kind} | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} / {:.1} | {:+.1} |",
            l.0,
            l.1,
            l.2,
            h.0,
            h.1,
            h.2,
            h.1 - l.1
        );
    }
}

fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it; sched_setaffinity reads
    // the set we pass for the calling thread (pid 0).
    let ok = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    };
    if !ok {
        eprintln!("handoff: could not pin a thread to CPU {cpu}; figures may mix cores");
    }
}

/// Slots of the bare ring: a sequence word, a length word and the message.
const SLOT: usize = 128;
const SLOTS: usize = 131_072;

/// The bare ring: slot `i` holds sequence `i` when free for position `i`, `i + 1` once
/// written; the reader hands it back with `i + SLOTS`.
struct SlotRing {
    base: *mut u8,
    cursor: AtomicU64,
    read: AtomicU64,
}

// SAFETY: `base` is a private anonymous mapping owned by the ring and freed in Drop; the
// threads access it through the sequence words (atomics) or through the slot a sequence
// word hands to one of them (see `send` and `drain`).
unsafe impl Sync for SlotRing {}

impl SlotRing {
    fn new() -> SlotRing {
        // SAFETY: a fresh anonymous mapping; MAP_FAILED is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SLOT * SLOTS,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        let ring = SlotRing {
            base: p.cast(),
            cursor: AtomicU64::new(0),
            read: AtomicU64::new(0),
        };
        for i in 0..SLOTS as u64 {
            ring.seq(i).store(i, Ordering::Relaxed);
        }
        ring
    }

    fn slot(&self, pos: u64) -> *mut u8 {
        self.base.wrapping_add((pos as usize % SLOTS) * SLOT)
    }

    fn seq(&self, pos: u64) -> &AtomicU64 {
        // SAFETY: the slot lies inside the mapping (pos reduced modulo SLOTS), is 128-byte
        // aligned, and its first word is only ever accessed atomically.
        unsafe { &*(self.slot(pos) as *const AtomicU64) }
    }

    fn send(&self, msg: &[u8]) {
        let mut pos = self.cursor.load(Ordering::Relaxed);
        loop {
            // Acquire: the reader's hand-back of this slot happens-before our writes.
            assert_eq!(self.seq(pos).load(Ordering::Acquire), pos, "bare ring full");
            match self
                .cursor
                .compare_exchange(pos, pos + 1, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(p) => pos = p,
            }
        }
        let slot = self.slot(pos);
        // SAFETY: the CAS gave us this slot until we publish it; len + message fit in it
        // (SIZE + 16 <= SLOT).
        unsafe {
            (slot.wrapping_add(8) as *mut u64).write(msg.len() as u64);
            std::ptr::copy_nonoverlapping(msg.as_ptr(), slot.wrapping_add(16), msg.len());
        }
        // Release: the bytes above are the reader's once it acquires this.
        self.seq(pos).store(pos + 1, Ordering::Release);
    }

    /// Reads every published message's first and last word (a light reader) and hands
    /// the slots back.
    fn drain(&self) {
        let mut pos = self.read.load(Ordering::Relaxed);
        let mut sum = 0u64;
        while self.seq(pos).load(Ordering::Acquire) == pos + 1 {
            let slot = self.slot(pos);
            // SAFETY: the acquire above handed us the published slot; the words read lie
            // inside it (16 + 56 + 8 <= SLOT).
            unsafe {
                sum = sum
                    .wrapping_add((slot.wrapping_add(16) as *const u64).read())
                    .wrapping_add((slot.wrapping_add(16 + SIZE - 8) as *const u64).read());
            }
            // Release: our reads of the slot happen-before the next lap's writes.
            self.seq(pos).store(pos + SLOTS as u64, Ordering::Release);
            pos += 1;
        }
        std::hint::black_box(sum);
        self.read.store(pos, Ordering::Relaxed);
    }
}

impl Drop for SlotRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.base.cast(), SLOT * SLOTS) };
    }
}
