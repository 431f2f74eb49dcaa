//! A peer process for the multi-process tests. Each role opens the channel by name in a
//! fresh process, so it has its own mapping, as real users do.
//!
//! Roles:
//! * `writer NAME ID COUNT MIN MAX [FIRST]`: sends COUNT checkable messages of MIN..=MAX
//!   bytes, sequences FIRST (default 0) on, retrying while full.
//! * `reader NAME TOTAL`: receives TOTAL messages, checking every byte and each writer's
//!   order; prints `delivered=N` and exits 0, or prints the first fault and exits 1.
//! * `stall-writer NAME STEP LEN`: sends one message of LEN bytes and stops itself with
//!   SIGSTOP at STEP (after-claim, after-header, mid-payload, before-publish). Exits 0 if
//!   the send succeeded after it was continued, 3 if it was abandoned.
//! * `hold-reader NAME COUNT`: takes the reader role, receives COUNT messages (printing
//!   `got=ID:SEQ` for each), prints `holding`, then for each stdin line `recv` receives
//!   once more (printing `got=ID:SEQ`, `empty` or `error=DEBUG`) until stdin closes.
//! * `liveness PID START`: prints `alive=BOOL same=BOOL`, what `atbus::process` judges
//!   of process PID started at START (clock ticks, low 32 bits compared).
//! * `echo NAME OUT COUNT`: COUNT times, waits for a message on NAME with the blocking
//!   `recv_timeout` and sends it back on channel OUT once OUT's reader is asleep.
//! * `blocking-writer NAME ID COUNT MIN MAX`: as `writer`, with the blocking `send` (waits
//!   as long as the ring stays full).
//! * `fd-echo NAME OUT COUNT`: as `echo`, but waits with `poll(2)` on the reader's
//!   readiness fd after arming it, before every message.
//! * `bridge ARGS...`: runs `atbus-bridge ARGS...` (its library's command line).
//! * `ring-writer NAME`: for each stdin line `send ID SEQ LEN`, opens channel NAME anew
//!   (whichever segment has the name now), sends one checkable message with `try_send`
//!   from the same thread every time and prints `sent` (or `error=...`), until stdin
//!   closes: a writer that keeps its doorbell across readers and re-created channels.
//! * `fd-reader NAME`: receives for ever, waiting on the readiness fd with `poll(2)`;
//!   prints `got=ID:SEQ` for each message before it is consumed (from inside
//!   `try_recv_in_place`), so a test that kills it knows every message it consumed.
//! * `bus-serve BUS NAME COUNT`: joins NAME on bus BUS (blocking `Endpoint`), prints
//!   `ready`, answers COUNT requests (first a data message `note CORR` to the requester,
//!   then the reply: the request's bytes reversed), prints `served` and leaves.
//! * `bus-request BUS NAME TO ID COUNT LEN`: joins NAME, makes COUNT requests to TO with
//!   checkable payloads of LEN bytes, checks every reply byte (the request reversed),
//!   prints `done` and leaves; any fault exits 2 with the reason on stderr.

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
    if arg(0) == "liveness" {
        return liveness(num(1), num(2));
    }
    if arg(0) == "bridge" {
        // The bridge's command line, run in this process: `bridge out ...`, `bridge in ...`.
        let argv = std::iter::once("atbus-bridge".to_string()).chain(args[1..].iter().cloned());
        std::process::exit(atbus_bridge::cli::run(argv));
    }
    if arg(0) == "ring-writer" {
        return ring_writer(arg(1));
    }
    if arg(0) == "bus-serve" {
        return bus_serve(arg(1), arg(2), num(3));
    }
    if arg(0) == "bus-request" {
        return bus_request(arg(1), arg(2), arg(3), num(4), num(5), num(6) as usize);
    }
    let channel = Channel::open(arg(1)).unwrap_or_else(|e| fail(&e.to_string()));
    match arg(0) {
        "writer" => {
            let first = if args.len() > 6 { num(6) } else { 0 };
            let seqs = first..first + num(3);
            writer(&channel, num(2), seqs, num(4) as usize, num(5) as usize)
        }
        "reader" => reader(&channel, num(2)),
        "stall-writer" => stall_writer(&channel, arg(2), num(3) as usize),
        "hold-reader" => hold_reader(&channel, num(2)),
        "commit-reader" => commit_reader(&channel, num(2), num(3)),
        "echo" => echo(&channel, arg(2), num(3)),
        "blocking-writer" => {
            blocking_writer(&channel, num(2), num(3), num(4) as usize, num(5) as usize)
        }
        "fd-echo" => fd_echo(&channel, arg(2), num(3)),
        "fd-reader" => fd_reader(&channel),
        other => fail(&format!("unknown role {other}")),
    }
}

fn bus_serve(bus: &str, name: &str, count: u64) {
    let bus = atbus_bus::Bus::open(bus).unwrap_or_else(|e| fail(&e.to_string()));
    let mut ep = bus.join(name).unwrap_or_else(|e| fail(&e.to_string()));
    say("ready");
    let mut served = 0;
    while served < count {
        let msg = ep
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| fail(&format!("serve: {e}")));
        if msg.envelope.kind != atbus_bus::Kind::Request {
            continue;
        }
        let from = msg.envelope.from().to_string();
        let note = format!("note {}", msg.envelope.correlation);
        ep.send_to(&from, note.as_bytes())
            .unwrap_or_else(|e| fail(&format!("note: {e}")));
        let mut answer = msg.payload;
        answer.reverse();
        ep.reply(&msg.envelope, &answer)
            .unwrap_or_else(|e| fail(&format!("reply: {e}")));
        served += 1;
    }
    say("served");
}

fn bus_request(bus: &str, name: &str, to: &str, id: u64, count: u64, len: usize) {
    let bus = atbus_bus::Bus::open(bus).unwrap_or_else(|e| fail(&e.to_string()));
    let mut ep = bus.join(name).unwrap_or_else(|e| fail(&e.to_string()));
    let mut msg = Vec::with_capacity(len);
    for seq in 0..count {
        fill_payload(&mut msg, id, seq, len);
        let reply = ep
            .request(to, &msg, Duration::from_secs(60))
            .unwrap_or_else(|e| fail(&format!("request {seq}: {e}")));
        msg.reverse();
        if reply != msg {
            fail(&format!(
                "request {seq}: the reply is not the request reversed"
            ));
        }
    }
    say("done");
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn fail(msg: &str) -> ! {
    eprintln!("atbus-peer: {msg}");
    std::process::exit(2)
}

fn writer(channel: &Channel, id: u64, seqs: std::ops::Range<u64>, min: usize, max: usize) {
    let w = channel.writer();
    let mut msg = Vec::with_capacity(max);
    for seq in seqs {
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
        "after-header" => Step::AfterHeader,
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

/// Receives `count` messages with manual commit, committing after the first `commit`
/// of them; prints `got=ID:SEQ` for each, then `holding`, and waits to be killed.
fn commit_reader(channel: &Channel, count: u64, commit: u64) {
    let mut r = channel.reader().unwrap_or_else(|e| fail(&e.to_string()));
    r.set_manual_commit(true)
        .unwrap_or_else(|e| fail(&e.to_string()));
    receive_printing(&mut r, count, |r, got| {
        if got == commit {
            r.commit(r.position())
                .unwrap_or_else(|e| fail(&e.to_string()));
        }
    });
    // Until the test kills us: whatever was not committed must reach the next reader.
    for _ in std::io::stdin().lock().lines() {}
    std::mem::forget(r); // stdin closed: leave like a crash would, without a commit
    std::process::exit(0);
}

/// Receives `count` messages, checking each and printing `got=ID:SEQ`, calling `after`
/// with the number received so far after each; then prints `holding`.
fn receive_printing(
    r: &mut atbus::Reader,
    count: u64,
    mut after: impl FnMut(&mut atbus::Reader, u64),
) {
    let mut out = std::io::stdout();
    let mut backoff = Backoff::new();
    let mut got = 0;
    while got < count {
        match r.try_recv_vec() {
            Ok(msg) => {
                let (id, seq) = check_payload(&msg).unwrap_or_else(|e| fail(&e));
                writeln!(out, "got={id}:{seq}").unwrap();
                got += 1;
                after(r, got);
                backoff.reset();
            }
            Err(Error::Empty) => backoff.snooze(),
            Err(e) => fail(&e.to_string()),
        }
    }
    writeln!(out, "holding").unwrap();
    out.flush().unwrap();
}

fn hold_reader(channel: &Channel, count: u64) {
    let mut r = channel.reader().unwrap_or_else(|e| fail(&e.to_string()));
    receive_printing(&mut r, count, |_, _| {});
    let mut out = std::io::stdout();
    // Until the test kills us or closes stdin: each line `recv` receives once more and
    // prints `got=ID:SEQ`, `empty` or `error=TEXT`.
    for line in std::io::stdin().lock().lines() {
        match line.as_deref() {
            Ok("recv") => {
                match r.try_recv_vec() {
                    Ok(msg) => {
                        let (id, seq) = check_payload(&msg).unwrap_or_else(|e| fail(&e));
                        writeln!(out, "got={id}:{seq}").unwrap();
                    }
                    Err(Error::Empty) => writeln!(out, "empty").unwrap(),
                    Err(e) => writeln!(out, "error={e:?}").unwrap(),
                }
                out.flush().unwrap();
            }
            _ => break,
        }
    }
}

/// Judges process PID (started at START, low 32 bits) with the liveness functions and
/// prints `alive=BOOL same=BOOL`; run as another user to see what it may see.
fn liveness(pid: u64, start: u64) {
    println!(
        "alive={} same={}",
        atbus::process::is_alive(pid as u32),
        atbus::process::is_same_alive(pid as u32, start as u32)
    );
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

fn blocking_writer(channel: &Channel, id: u64, count: u64, min: usize, max: usize) {
    let w = channel.writer();
    let mut msg = Vec::with_capacity(max);
    for seq in 0..count {
        fill_payload(&mut msg, id, seq, length(id, seq, min, max));
        if let Err(e) = w.send(&msg) {
            fail(&format!("writer {id} message {seq}: {e}"));
        }
    }
}

/// Waits until `fd` is readable; fails after 20 s (a lost wake-up).
fn wait_readable(fd: std::os::fd::RawFd, what: &str) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd on our stack.
        let n = unsafe { libc::poll(&mut pfd, 1, 20_000) };
        match n {
            1 => return,
            0 => fail(&format!("{what}: the readiness fd stayed silent for 20 s")),
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => fail(&format!(
                "{what}: poll: {}",
                std::io::Error::last_os_error()
            )),
        }
    }
}

/// Receives one message through the readiness fd: try, arm, wait, repeat.
fn fd_recv(r: &mut atbus::Reader, buf: &mut [u8], what: &str) -> usize {
    use std::os::fd::AsRawFd;
    let fd = r
        .readiness_fd()
        .unwrap_or_else(|e| fail(&e.to_string()))
        .as_raw_fd();
    loop {
        match r.try_recv(buf) {
            Ok(n) => return n,
            Err(Error::Empty) => {}
            Err(e) => fail(&format!("{what}: {e}")),
        }
        match r.arm() {
            Ok(atbus::Arm::Ready) => continue,
            Ok(atbus::Arm::Armed) => wait_readable(fd, what),
            Err(e) => fail(&format!("{what}: arm: {e}")),
        }
    }
}

fn fd_echo(channel: &Channel, out: &str, count: u64) {
    let mut r = channel.reader().unwrap_or_else(|e| fail(&e.to_string()));
    let w = Channel::open(out)
        .unwrap_or_else(|e| fail(&e.to_string()))
        .writer();
    let view = atbus::Inspector::open(out).unwrap_or_else(|e| fail(&e.to_string()));
    let mut buf = vec![0u8; 4096];
    for i in 0..count {
        let n = fd_recv(&mut r, &mut buf, &format!("fd-echo {i}"));
        // Send just as the other side has armed: the racy moment.
        let mut backoff = Backoff::new();
        while !view.reader_sleeping() {
            backoff.snooze();
        }
        w.send(&buf[..n]).unwrap_or_else(|e| fail(&e.to_string()));
    }
}

fn fd_reader(channel: &Channel) {
    use std::os::fd::AsRawFd;
    let mut r = channel.reader().unwrap_or_else(|e| fail(&e.to_string()));
    let fd = r
        .readiness_fd()
        .unwrap_or_else(|e| fail(&e.to_string()))
        .as_raw_fd();
    let mut out = std::io::stdout().lock();
    loop {
        let got = r.try_recv_in_place(|msg| {
            let (id, seq) = check_payload(msg).unwrap_or_else(|e| fail(&e));
            // Written (one write(2)) before the message is consumed.
            writeln!(out, "got={id}:{seq}").unwrap();
            out.flush().unwrap();
        });
        match got {
            Ok(()) => {}
            Err(Error::Empty) => match r.arm() {
                Ok(atbus::Arm::Ready) => {}
                Ok(atbus::Arm::Armed) => wait_readable(fd, "fd-reader"),
                Err(e) => fail(&format!("fd-reader: arm: {e}")),
            },
            Err(e) => fail(&format!("fd-reader: {e}")),
        }
    }
}

fn ring_writer(name: &str) {
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap_or_else(|e| fail(&format!("ring-writer: stdin: {e}")));
        let n: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|w| {
                w.parse()
                    .unwrap_or_else(|_| fail(&format!("bad line {line:?}")))
            })
            .collect();
        let [id, seq, len] = n[..] else {
            fail(&format!(
                "ring-writer: want `send ID SEQ LEN`, got {line:?}"
            ))
        };
        let mut msg = Vec::new();
        fill_payload(&mut msg, id, seq, len as usize);
        let sent = Channel::open(name).and_then(|ch| ch.writer().try_send(&msg));
        match sent {
            Ok(()) => writeln!(out, "sent").unwrap(),
            Err(e) => writeln!(out, "error={e}").unwrap(),
        }
        out.flush().unwrap();
    }
}
