//! Progress lines, the final accounting, and the text and JSON summaries of `stress`.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::board::{self, Board};
use crate::faults::Faults;
use crate::stress::Run;

/// One stream (writer incarnation) as read from the board.
#[derive(Clone, Debug, Default)]
pub struct StreamRow {
    pub stream: usize,
    pub id: u64,
    pub incarnation: u64,
    pub pid: u64,
    pub ok: u64,
    pub bytes: u64,
    pub full: u64,
    pub abandoned: u64,
    pub in_send: u64,
    /// Messages of the marked send call (up to a batch).
    pub in_send_count: u64,
    pub killed: bool,
    pub stalls: u64,
    pub rec: [u64; board::R_FIELDS],
}

/// Every counter at one moment.
pub struct Snapshot {
    pub rows: Vec<StreamRow>,
    pub unattributed: u64,
    pub journal_replays: u64,
    pub handover_lost: u64,
    pub handover_dup: u64,
    pub readers: u64,
    pub received: u64,
    pub handover_unchecked: u64,
    pub stats: atbus::Stats,
}

impl Snapshot {
    /// Reads the board and the channel's counters.
    pub fn read(b: &Board, streams: usize, channel: &atbus::Channel) -> Snapshot {
        use std::sync::atomic::Ordering::Relaxed;
        let rows = (0..streams)
            .map(|s| StreamRow {
                stream: s,
                id: b.w(s, board::W_ID).load(Relaxed).saturating_sub(1),
                incarnation: b.w(s, board::W_INCARNATION).load(Relaxed),
                pid: b.w(s, board::W_PID).load(Relaxed),
                ok: b.w(s, board::W_OK).load(Relaxed),
                bytes: b.w(s, board::W_BYTES).load(Relaxed),
                full: b.w(s, board::W_FULL).load(Relaxed),
                abandoned: b.w(s, board::W_ABANDONED).load(Relaxed),
                in_send: b.w(s, board::W_IN_SEND).load(Relaxed),
                in_send_count: b.w(s, board::W_IN_SEND_COUNT).load(Relaxed),
                killed: b.w(s, board::W_KILLED).load(Relaxed) != 0,
                stalls: b.w(s, board::W_STALLS).load(Relaxed),
                rec: b.read_record(s),
            })
            .collect();
        let g = |i| b.global(i).load(Relaxed);
        Snapshot {
            rows,
            unattributed: g(board::G_UNATTRIBUTED),
            journal_replays: g(board::G_JOURNAL_REPLAYS),
            handover_lost: g(board::G_HANDOVER_LOST),
            handover_dup: g(board::G_HANDOVER_DUP),
            readers: g(board::G_READERS),
            received: g(board::G_RECEIVED),
            handover_unchecked: g(board::G_HANDOVER_UNCHECKED),
            stats: channel.stats(),
        }
    }

    fn sum(&self, f: impl Fn(&StreamRow) -> u64) -> u64 {
        self.rows.iter().map(f).sum()
    }

    /// Messages delivered intact.
    pub fn delivered(&self) -> u64 {
        self.sum(|r| r.rec[board::R_DELIVERED])
    }

    /// Payload bytes delivered intact.
    pub fn delivered_bytes(&self) -> u64 {
        self.sum(|r| r.rec[board::R_BYTES])
    }
}

/// The final accounting of a run.
#[derive(Debug, Default)]
pub struct Summary {
    pub sent: u64,
    pub sent_bytes: u64,
    pub delivered: u64,
    pub delivered_bytes: u64,
    /// Messages missing inside a stream (a later one arrived).
    pub lost_gap: u64,
    /// Messages a writer was told `Ok` for, after the last one that arrived.
    pub lost_tail: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub corrupted: u64,
    /// Messages with a header naming no stream of this run, or sequence numbers never sent.
    pub unattributed: u64,
    pub full: u64,
    pub abandoned: u64,
    pub in_flight_delivered: u64,
    pub in_flight_not_delivered: u64,
    pub lost_to_handover: u64,
    pub duplicated_at_handover: u64,
    pub lost_to_stalled_writers: u64,
    pub unexplained_lost: u64,
    pub unexplained_duplicated: u64,
    pub unexplained: u64,
    pub skip_blocks: u64,
    pub torn_block_sources: u64,
    pub notes: Vec<String>,
    pub writing: Duration,
    pub elapsed: Duration,
    pub msgs_per_s: f64,
    pub mib_per_s: f64,
}

/// The last two lines of a `compare` or `rpc` text report: the CPU, and the verdict —
/// `failed` if a run failed, else "interrupted" if the run was cut short, else `passed`.
pub fn print_verdict(
    (cpu, vendor): (&str, &str),
    interrupted: bool,
    failed: Option<&str>,
    passed: &str,
) {
    let verdict = match failed {
        Some(failed) => failed,
        None if interrupted => "interrupted (the runs that completed passed their checks)",
        None => passed,
    };
    println!(
        "cpu: {cpu} ({vendor}, {} CPUs)\nverdict: {verdict}",
        crate::procs::cpu_count()
    );
}

/// Accounts for every message: what was sent, delivered, lost, and why.
pub fn summarize(
    run: &Run,
    snap: &Snapshot,
    faults: &Faults,
    writing: Duration,
    elapsed: Duration,
) -> Summary {
    let mut s = Summary {
        writing,
        elapsed,
        ..Summary::default()
    };
    for r in &snap.rows {
        let rec = &r.rec;
        s.sent += r.ok;
        s.sent_bytes += r.bytes;
        s.full += r.full;
        s.abandoned += r.abandoned;
        s.delivered += rec[board::R_DELIVERED];
        s.delivered_bytes += rec[board::R_BYTES];
        s.lost_gap += rec[board::R_LOST];
        s.duplicated += rec[board::R_DUP];
        s.reordered += rec[board::R_REORDER];
        s.corrupted += rec[board::R_CORRUPT];
        let in_flight = r.killed && r.in_send != 0;
        // A writer killed in a send call may have published some of its messages (up to
        // a batch) without counting them.
        let in_flight_messages = if in_flight { r.in_send_count.max(1) } else { 0 };
        let next = rec[board::R_NEXT];
        s.lost_tail += r.ok.saturating_sub(next);
        if in_flight {
            if next > r.ok {
                s.in_flight_delivered += 1;
            } else {
                s.in_flight_not_delivered += 1;
            }
        }
        s.unattributed += next.saturating_sub(r.ok + in_flight_messages);
    }
    s.unattributed += snap.unattributed;
    s.lost = s.lost_gap + s.lost_tail;
    // A reader killed after `try_recv` returned but before it committed its verdict
    // consumed one message nobody checked: at most one per reader kill.
    // A writer that stalled past the timeout and then wrote into nodes since reused
    // destroys the message there, which fails its crc32 (or header check): at most one
    // per bad block, and only when some writer overran the timeout (was abandoned).
    // These are counted by the library, so they are attributed first.
    // A stalled writer's late copy can also land on the first words of nodes that now
    // start other writers' blocks (heads live in the nodes since layout version 2): one
    // late copy can destroy several blocks, and the reader skips each of them node by
    // node after the timeout. Blocks destroyed that way are counted as failed checks
    // where the reader can tell (the first of a run of skipped nodes), and every node
    // of them as a bad node; so a stalled writer explains at most one lost message per
    // bad node.
    let st = &snap.stats;
    let bad = st.crc_failures + st.check_failures;
    if s.abandoned.max(st.abandoned) > 0 || faults.stalls > 0 {
        s.lost_to_stalled_writers = s.lost.min(bad.max(st.bad_nodes));
    }
    // Then gaps a new reader found at a stream's first message: at most one per kill.
    s.lost_to_handover = snap
        .handover_lost
        .min(faults.reader_kills)
        .min(s.lost - s.lost_to_stalled_writers);
    s.duplicated_at_handover = snap.handover_dup.min(faults.reader_kills);
    s.unexplained_lost = s.lost - s.lost_to_handover - s.lost_to_stalled_writers;
    s.unexplained_duplicated = s.duplicated - s.duplicated_at_handover;
    s.unexplained =
        s.unexplained_lost + s.unexplained_duplicated + s.reordered + s.corrupted + s.unattributed;
    s.skip_blocks = st.dead_writer_blocks + st.timeout_blocks;
    // Sends the library saw abandoned (a batch cut short reports what it sent instead).
    let abandoned = s.abandoned.max(st.abandoned);
    s.torn_block_sources = s.in_flight_not_delivered + abandoned;
    let secs = elapsed.as_secs_f64().max(1e-9);
    s.msgs_per_s = s.delivered as f64 / secs;
    s.mib_per_s = s.delivered_bytes as f64 / secs / (1u64 << 20) as f64;

    // Explanations.
    if s.skip_blocks == s.torn_block_sources {
        s.notes.push(format!(
            "torn blocks skipped ({} dead-writer + {} timeout) = sends that could leave one \
             ({} killed mid-send and not delivered + {} abandoned)",
            st.dead_writer_blocks, st.timeout_blocks, s.in_flight_not_delivered, abandoned
        ));
    } else if s.skip_blocks < s.torn_block_sources {
        s.notes.push(format!(
            "torn blocks skipped ({} dead-writer + {} timeout) < sends that could leave one \
             ({} killed mid-send and not delivered + {} abandoned): a writer killed while \
             waiting on a full ring, or before claiming, left no block",
            st.dead_writer_blocks, st.timeout_blocks, s.in_flight_not_delivered, abandoned
        ));
    } else {
        s.notes.push(format!(
            "torn blocks skipped ({} dead-writer + {} timeout) > sends that could leave one \
             ({} killed mid-send and not delivered + {} abandoned): a run of torn nodes can \
             count as more than one block when another writer's block is skipped with it",
            st.dead_writer_blocks, st.timeout_blocks, s.in_flight_not_delivered, abandoned
        ));
    }
    let attributed = s.lost_to_stalled_writers + s.lost_to_handover;
    if attributed > 0 {
        s.notes.push(format!(
            "skipped torn blocks ({}) {} attributed losses ({}){}",
            s.skip_blocks,
            if s.skip_blocks >= attributed {
                ">="
            } else {
                "<"
            },
            attributed,
            if s.skip_blocks >= attributed {
                ""
            } else {
                ": one stalled writer's late write can span and destroy several other \
                 messages, and a reader take-over loses without skipping a block"
            }
        ));
    }
    if bad > 0 {
        s.notes.push(format!(
            "{} blocks failed crc32 / {} failed header checks: {}",
            st.crc_failures,
            st.check_failures,
            // The library's count: a batch cut short by `Abandoned` reports the messages
            // it did send, not the abandonment.
            if abandoned > 0 {
                "overwritten by a writer that woke after the reader skipped its block"
            } else {
                "NO writer overran the timeout: unexplained"
            }
        ));
    }
    let lib_redelivered = st.messages_received.saturating_sub(snap.received);
    if faults.reader_kills > 0 {
        s.notes.push(format!(
            "reader hand-over: {} takeovers; {} messages a killed reader had received but not \
             yet checked (counted delivered, unchecked); {} gaps at a stream's first message \
             after a take-over (a killed reader between the library's return and noting the \
             message in hand, or a message destroyed by a stalled writer), {} \
             duplicated, {} journal replays, library delivered {} more than the readers \
             received (counted by a reader killed inside recv), {} handover nodes",
            st.reader_takeovers,
            snap.handover_unchecked,
            snap.handover_lost,
            snap.handover_dup,
            snap.journal_replays,
            lib_redelivered,
            st.handover_nodes
        ));
    }
    let _ = run;
    s
}

/// Prints progress: a live `\r` line on a terminal, plain lines otherwise.
pub struct Progress {
    json: bool,
    tty: bool,
    every: Duration,
    next: Instant,
    last: Option<(Duration, u64, u64)>,
    live: bool,
}

impl Progress {
    /// Progress on stdout (stderr with `json`).
    pub fn new(json: bool, every: Duration) -> Progress {
        let fd = if json { 2 } else { 1 };
        // SAFETY: isatty on a standard descriptor.
        let tty = unsafe { libc::isatty(fd) } == 1;
        Progress {
            json,
            tty,
            every,
            next: Instant::now() + every,
            last: None,
            live: false,
        }
    }

    fn out(&self) -> Box<dyn Write> {
        if self.json {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        }
    }

    /// Prints a plain line.
    pub fn line(&mut self, text: &str) {
        self.finish_progress();
        let mut o = self.out();
        let _ = writeln!(o, "{text}");
        let _ = o.flush();
    }

    /// True when a progress line is due.
    pub fn due(&mut self, now: Instant) -> bool {
        if now >= self.next {
            while self.next <= now {
                self.next += self.every;
            }
            true
        } else {
            false
        }
    }

    /// Prints one progress line.
    pub fn progress(&mut self, elapsed: Duration, snap: &Snapshot, faults: &Faults) {
        let msgs = snap.delivered();
        let bytes = snap.delivered_bytes();
        let (t0, m0, b0) = self.last.unwrap_or((Duration::ZERO, 0, 0));
        let dt = (elapsed - t0).as_secs_f64().max(1e-9);
        self.last = Some((elapsed, msgs, bytes));
        let sum = |f: &dyn Fn(&StreamRow) -> u64| snap.rows.iter().map(f).sum::<u64>();
        let lost = sum(&|r| r.rec[board::R_LOST]);
        let dup = sum(&|r| r.rec[board::R_DUP]);
        let reord = sum(&|r| r.rec[board::R_REORDER]);
        let corrupt = sum(&|r| r.rec[board::R_CORRUPT]) + snap.unattributed;
        let full = sum(&|r| r.full);
        let abandoned = sum(&|r| r.abandoned);
        let line = format!(
            "[{:>6.1}s] {} msgs {:.2} GiB {:.3} M msg/s {:.1} MiB/s | lost {} dup {} \
             reord {} corrupt {} | full {} abandoned {} | skipped {}+{} crc {} | kills {} \
             stalls {} reader kills {}",
            elapsed.as_secs_f64(),
            msgs,
            bytes as f64 / (1u64 << 30) as f64,
            (msgs - m0) as f64 / dt / 1e6,
            (bytes - b0) as f64 / dt / (1u64 << 20) as f64,
            lost,
            dup,
            reord,
            corrupt,
            full,
            abandoned,
            snap.stats.dead_writer_blocks,
            snap.stats.timeout_blocks,
            snap.stats.crc_failures,
            faults.writer_kills,
            faults.stalls,
            faults.reader_kills,
        );
        let mut o = self.out();
        if self.tty {
            // A live line must not wrap, or `\r` cannot redraw it: cut it to the width.
            let width = terminal_width(if self.json { 2 } else { 1 });
            let line: String = line.chars().take(width.saturating_sub(1)).collect();
            let _ = write!(o, "\r{line}\x1b[K");
            self.live = true;
        } else {
            let _ = writeln!(o, "{line}");
        }
        let _ = o.flush();
    }

    /// Ends a live line.
    pub fn finish_progress(&mut self) {
        if self.live {
            let mut o = self.out();
            let _ = writeln!(o);
            self.live = false;
        }
    }
}

/// Columns of the terminal on `fd` (200 if unknown).
fn terminal_width(fd: i32) -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize; on failure we keep the default.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col > 0 {
            return usize::from(ws.ws_col);
        }
    }
    200
}

fn per_writer(snap: &Snapshot) -> Vec<(u64, Vec<&StreamRow>)> {
    let mut ids: Vec<u64> = snap.rows.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .map(|id| (id, snap.rows.iter().filter(|r| r.id == id).collect()))
        .collect()
}

/// The human summary.
pub fn text(run: &Run, s: &Summary, snap: &Snapshot, faults: &Faults) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let st = &snap.stats;
    let _ = writeln!(o, "== summary ==");
    let _ = writeln!(
        o,
        "time       {:.1} s ({:.1} s writing, then drain)",
        s.elapsed.as_secs_f64(),
        s.writing.as_secs_f64()
    );
    let _ = writeln!(
        o,
        "messages   sent {} ({:.2} GiB), delivered {} ({:.2} GiB): {:.3} M msgs/s, {:.1} MiB/s",
        s.sent,
        s.sent_bytes as f64 / (1u64 << 30) as f64,
        s.delivered,
        s.delivered_bytes as f64 / (1u64 << 30) as f64,
        s.msgs_per_s / 1e6,
        s.mib_per_s
    );
    let _ = writeln!(
        o,
        "errors     lost {} (gaps {}, tail {}), duplicated {}, reordered {}, corrupted {}, \
         unattributed {}",
        s.lost, s.lost_gap, s.lost_tail, s.duplicated, s.reordered, s.corrupted, s.unattributed
    );
    let _ = writeln!(
        o,
        "writers    Full {}, Abandoned {} (re-sent with the same sequence)",
        s.full, s.abandoned
    );
    let _ = writeln!(
        o,
        "faults     writer kills {} ({} mid-send: {} of those messages delivered, {} not), \
         stalls {}, reader kills {}",
        faults.writer_kills,
        faults.kills_in_flight,
        s.in_flight_delivered,
        s.in_flight_not_delivered,
        faults.stalls,
        faults.reader_kills
    );
    let _ = writeln!(
        o,
        "attributed lost to reader hand-over {}, lost to stalled writers {}, duplicated at \
         hand-over {}; UNEXPLAINED: lost {}, duplicated {}, total {}",
        s.lost_to_handover,
        s.lost_to_stalled_writers,
        s.duplicated_at_handover,
        s.unexplained_lost,
        s.unexplained_duplicated,
        s.unexplained
    );
    for n in &s.notes {
        let _ = writeln!(o, "note       {n}");
    }
    let _ = writeln!(
        o,
        "channel    sent {} recv {} full {} write_retries {} abandoned {} padding {}/{}",
        st.messages_sent,
        st.messages_received,
        st.full,
        st.write_retries,
        st.abandoned,
        st.padding_claims,
        st.padding_blocks
    );
    let _ = writeln!(
        o,
        "           timeout_blocks {} dead_writer_blocks {} bad_nodes {} bad_blocks {} \
         crc_failures {} check_failures {} handover_nodes {} reader_takeovers {} \
         aborted_blocks {}",
        st.timeout_blocks,
        st.dead_writer_blocks,
        st.bad_nodes,
        st.bad_blocks,
        st.crc_failures,
        st.check_failures,
        st.handover_nodes,
        st.reader_takeovers,
        st.aborted_blocks
    );
    let _ = writeln!(
        o,
        "           cursors read {} write {}",
        st.read_cursor, st.write_cursor
    );
    let _ = writeln!(
        o,
        "{:>6} {:>6} {:>14} {:>14} {:>10} {:>10} {:>6} {:>6} {:>10}",
        "writer", "incs", "sent", "delivered", "Full", "Abandoned", "kills", "stalls", "M msgs/s"
    );
    for (id, rows) in per_writer(snap) {
        let sent: u64 = rows.iter().map(|r| r.ok).sum();
        let delivered: u64 = rows.iter().map(|r| r.rec[board::R_DELIVERED]).sum();
        let _ = writeln!(
            o,
            "{:>6} {:>6} {:>14} {:>14} {:>10} {:>10} {:>6} {:>6} {:>10.3}",
            id,
            rows.len(),
            sent,
            delivered,
            rows.iter().map(|r| r.full).sum::<u64>(),
            rows.iter().map(|r| r.abandoned).sum::<u64>(),
            rows.iter().filter(|r| r.killed).count(),
            rows.iter().map(|r| r.stalls).sum::<u64>(),
            delivered as f64 / s.elapsed.as_secs_f64().max(1e-9) / 1e6
        );
    }
    let _ = writeln!(
        o,
        "verdict    {}",
        if s.unexplained == 0 {
            "OK: every message accounted for".to_string()
        } else {
            format!("FAILED: {} messages not accounted for", s.unexplained)
        }
    );
    let _ = run;
    o
}

/// The machine-readable summary (schema in the README).
pub fn json(
    run: &Run,
    s: &Summary,
    snap: &Snapshot,
    faults: &Faults,
    interrupted: bool,
    failure: Option<&str>,
) -> Value {
    let st = &snap.stats;
    let fa = faults.args();
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    let writers: Vec<Value> = snap
        .rows
        .iter()
        .map(|r| {
            json!({
                "writer": r.id,
                "incarnation": r.incarnation,
                "stream": r.stream,
                "pid": r.pid,
                "sent": r.ok,
                "sent_bytes": r.bytes,
                "full": r.full,
                "abandoned": r.abandoned,
                "killed": r.killed,
                "killed_mid_send": r.killed && r.in_send != 0,
                "stalls": r.stalls,
                "delivered": r.rec[board::R_DELIVERED],
                "delivered_bytes": r.rec[board::R_BYTES],
                "lost": r.rec[board::R_LOST] + r.ok.saturating_sub(r.rec[board::R_NEXT]),
                "duplicated": r.rec[board::R_DUP],
                "reordered": r.rec[board::R_REORDER],
                "corrupted": r.rec[board::R_CORRUPT],
            })
        })
        .collect();
    json!({
        "command": "stress",
        "schema": 1,
        "ok": s.unexplained == 0 && failure.is_none(),
        "interrupted": interrupted,
        "failure": failure,
        "config": {
            "channel": run.name,
            "channel_size": run.args.channel_size,
            "node_size": run.channel.node_size(),
            "node_count": run.channel.node_count(),
            "max_message": run.channel.max_message_len(),
            "timeout_s": run.channel.timeout().as_secs_f64(),
            "writers": run.args.writers,
            "reader_mode": run.args.reader_mode.name(),
            "zero_copy": run.args.zero_copy,
            "batch_send": run.args.batch_send,
            "sizes": run.sizes.label(),
            "size_min": run.sizes.min(),
            "size_max": run.sizes.max(),
            "seed": run.seed,
            "secs": secs(run.args.secs),
            "messages": run.args.messages,
            "forever": run.args.forever,
            "kill_writer_every_s": secs(fa.kill_writer_every),
            "stall_writer_every_s": secs(fa.stall_writer_every),
            "stall_for_s": fa.stall_for.as_secs_f64(),
            "kill_reader_every_s": secs(fa.kill_reader_every),
        },
        "elapsed_s": s.elapsed.as_secs_f64(),
        "writing_s": s.writing.as_secs_f64(),
        "totals": {
            "sent": s.sent,
            "sent_bytes": s.sent_bytes,
            "delivered": s.delivered,
            "delivered_bytes": s.delivered_bytes,
            "msgs_per_s": s.msgs_per_s,
            "mib_per_s": s.mib_per_s,
            "lost": s.lost,
            "lost_gap": s.lost_gap,
            "lost_tail": s.lost_tail,
            "duplicated": s.duplicated,
            "reordered": s.reordered,
            "corrupted": s.corrupted,
            "unattributed": s.unattributed,
            "full": s.full,
            "abandoned": s.abandoned,
        },
        "faults": {
            "writer_kills": faults.writer_kills,
            "writer_kills_mid_send": faults.kills_in_flight,
            "in_flight_delivered": s.in_flight_delivered,
            "in_flight_not_delivered": s.in_flight_not_delivered,
            "writer_stalls": faults.stalls,
            "reader_kills": faults.reader_kills,
            "readers_started": snap.readers,
            "handover_lost": snap.handover_lost,
            "handover_unchecked": snap.handover_unchecked,
            "handover_duplicated": snap.handover_dup,
            "journal_replays": snap.journal_replays,
        },
        "attribution": {
            "lost_to_reader_handover": s.lost_to_handover,
            "lost_to_stalled_writers": s.lost_to_stalled_writers,
            "duplicated_at_handover": s.duplicated_at_handover,
            "unexplained_lost": s.unexplained_lost,
            "unexplained_duplicated": s.unexplained_duplicated,
            "unexplained": s.unexplained,
            "skip_blocks": s.skip_blocks,
            "torn_block_sources": s.torn_block_sources,
            "notes": s.notes,
        },
        "channel": {
            "messages_sent": st.messages_sent,
            "bytes_sent": st.bytes_sent,
            "full": st.full,
            "write_retries": st.write_retries,
            "abandoned": st.abandoned,
            "padding_claims": st.padding_claims,
            "messages_received": st.messages_received,
            "bytes_received": st.bytes_received,
            "timeout_blocks": st.timeout_blocks,
            "dead_writer_blocks": st.dead_writer_blocks,
            "bad_nodes": st.bad_nodes,
            "bad_blocks": st.bad_blocks,
            "crc_failures": st.crc_failures,
            "check_failures": st.check_failures,
            "padding_blocks": st.padding_blocks,
            "handover_nodes": st.handover_nodes,
            "reader_takeovers": st.reader_takeovers,
            "aborted_blocks": st.aborted_blocks,
            "reader_sleeps": st.reader_sleeps,
            "wakeups": st.wakeups,
            "read_cursor": st.read_cursor,
            "write_cursor": st.write_cursor,
        },
        "writers": writers,
    })
}
