//! A peer process for the multi-process tests. Each role opens the channel by name in a
//! fresh process, so it has its own mapping, as real users do.
//!
//! Roles:
//! * `writer NAME ID COUNT MIN MAX`: sends COUNT checkable messages of MIN..=MAX bytes,
//!   retrying while full.
//! * `reader NAME TOTAL`: receives TOTAL messages, checking every byte and each writer's
//!   order; prints `delivered=N` and exits 0, or prints the first fault and exits 1.
//! * `stall-writer NAME STEP LEN`: sends one message of LEN bytes and stops itself with
//!   SIGSTOP at STEP (after-claim, after-start, mid-payload, before-publish). Exits 0 if
//!   the send succeeded after it was continued, 3 if it was abandoned.
//! * `hold-reader NAME COUNT`: takes the reader role, receives COUNT messages (printing
//!   `got=ID:SEQ` for each), prints `holding`, then blocks until stdin closes.
//! * `echo NAME OUT COUNT`: COUNT times, waits for a message on NAME with the blocking
//!   `recv_timeout` and sends it back on channel OUT once OUT's reader is asleep.

use std::io::{BufRead, Write};
use std::time::Duration;

use atbus::{Backoff, Channel, Error, Step};
use atbus_tests::{check_payload, fill_payload, length, EXIT_ABANDONED};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> &str {
        args.get(i)
            .map(String::as_str)
            .unwrap_or_else(|| fail(&format!("missing argument {i}")))
    };
    let num = |i: usize| -> u64 {
        arg(i)
            .parse()
            .unwrap_or_else(|_| fail(&format!("argument {i} is not a number")))
    };
    let channel = Channel::open(arg(1)).unwrap_or_else(|e| fail(&e.to_string()));
    match arg(0) {
        "writer" => writer(&channel, num(2), num(3), num(4) as usize, num(5) as usize),
        "reader" => reader(&channel, num(2)),
        "stall-writer" => stall_writer(&channel, arg(2), num(3) as usize),
        "hold-reader" => hold_reader(&channel, num(2)),
        "echo" => echo(&channel, arg(2), num(3)),
        other => fail(&format!("unknown role {other}")),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("atbus-peer: {msg}");
    std::process::exit(2)
}

fn writer(channel: &Channel, id: u64, count: u64, min: usize, max: usize) {
    let w = channel.writer();
    let mut msg = Vec::with_capacity(max);
    for seq in 0..count {
        fill_payload(&mut msg, id, seq, length(id, seq, min, max));
        if let Err(e) = w.send_timeout(&msg, Duration::from_secs(60)) {
            fail(&format!("writer {id} message {seq}: {e}"));
        }
    }
}

fn reader(channel: &Channel, total: u64) {
    let mut r = channel.reader().unwrap_or_else(|e| fail(&e.to_string()));
    let mut next: Vec<u64> = Vec::new();
    let mut buf = vec![0u8; channel.max_message_len()];
    let mut delivered = 0;
    let mut backoff = Backoff::new();
    while delivered < total {
        match r.try_recv(&mut buf) {
            Ok(n) => {
                backoff.reset();
                let (id, seq) = check_payload(&buf[..n]).unwrap_or_else(|e| {
                    println!("corrupt: {e}");
                    std::process::exit(1)
                });
                let id = id as usize;
                if next.len() <= id {
                    next.resize(id + 1, 0);
                }
                if seq != next[id] {
                    println!("order: writer {id} sent {seq} where {} was due", next[id]);
                    std::process::exit(1);
                }
                next[id] += 1;
                delivered += 1;
            }
            Err(Error::Empty) => backoff.snooze(),
            Err(e) => {
                println!("error: {e}");
                std::process::exit(1)
            }
        }
    }
    let s = channel.stats();
    println!(
        "delivered={delivered} bad_nodes={} bad_blocks={} timeout_blocks={}",
        s.bad_nodes, s.bad_blocks, s.timeout_blocks
    );
}

static STOP_AT: std::sync::OnceLock<Step> = std::sync::OnceLock::new();

fn stop_here(step: Step) {
    if STOP_AT.get() == Some(&step) {
        // SAFETY: raise is async-signal-safe and has no memory-safety preconditions.
        unsafe { libc::raise(libc::SIGSTOP) };
    }
}

fn stall_writer(channel: &Channel, step: &str, len: usize) {
    let step = match step {
        "after-claim" => Step::AfterClaim,
        "after-start" => Step::AfterStart,
        "mid-payload" => Step::MidPayload,
        "before-publish" => Step::BeforePublish,
        other => fail(&format!("unknown step {other}")),
    };
    STOP_AT.set(step).unwrap();
    atbus::set_fault_hook(stop_here);
    let w = channel.writer();
    let msg = atbus_tests::payload(99, 0, len);
    match w.try_send(&msg) {
        Ok(()) => println!("sent"),
        Err(Error::Abandoned { seq }) => {
            println!("abandoned seq={seq}");
            std::process::exit(EXIT_ABANDONED)
        }
        Err(e) => fail(&e.to_string()),
    }
}

fn hold_reader(channel: &Channel, count: u64) {
    let mut r = channel.reader().unwrap_or_else(|e| fail(&e.to_string()));
    let mut out = std::io::stdout();
    let mut backoff = Backoff::new();
    let mut got = 0;
    while got < count {
        match r.try_recv_vec() {
            Ok(msg) => {
                let (id, seq) = check_payload(&msg).unwrap_or_else(|e| fail(&e));
                writeln!(out, "got={id}:{seq}").unwrap();
                got += 1;
                backoff.reset();
            }
            Err(Error::Empty) => backoff.snooze(),
            Err(e) => fail(&e.to_string()),
        }
    }
    writeln!(out, "holding").unwrap();
    out.flush().unwrap();
    // Block until the test kills us (or closes stdin).
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}

fn echo(channel: &Channel, out: &str, count: u64) {
    let mut r = channel.reader().unwrap_or_else(|e| fail(&e.to_string()));
    let w = Channel::open(out)
        .unwrap_or_else(|e| fail(&e.to_string()))
        .writer();
    let view = atbus::Inspector::open(out).unwrap_or_else(|e| fail(&e.to_string()));
    let mut buf = vec![0u8; 4096];
    for i in 0..count {
        match r.recv_timeout(&mut buf, Duration::from_secs(20)) {
            Ok(n) => {
                // Send just as the other side falls asleep: the racy moment.
                let mut backoff = Backoff::new();
                while !view.reader_sleeping() {
                    backoff.snooze();
                }
                w.try_send(&buf[..n])
                    .unwrap_or_else(|e| fail(&e.to_string()))
            }
            Err(e) => fail(&format!("echo {i}: {e}")),
        }
    }
}
