//! `watch`: rates per second and fill, refreshed every interval.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use atbus::{Inspector, Stats};

use crate::show::{describe_reader, fill_percent};
use crate::units::{format_duration, format_rate, format_size};
use crate::Outcome;

/// Rates between two samples.
struct Rates {
    sent: f64,
    received: f64,
    bytes_sent: f64,
    bytes_received: f64,
    full: f64,
    skips: f64,
    crc: f64,
}

fn rates(a: &Stats, b: &Stats, secs: f64) -> Rates {
    let per = |x: u64, y: u64| y.saturating_sub(x) as f64 / secs;
    // Saturating: the counters come from shared memory and may hold anything.
    let skips = |s: &Stats| {
        s.timeout_blocks
            .saturating_add(s.dead_writer_blocks)
            .saturating_add(s.bad_blocks)
    };
    Rates {
        sent: per(a.messages_sent, b.messages_sent),
        received: per(a.messages_received, b.messages_received),
        bytes_sent: per(a.bytes_sent, b.bytes_sent),
        bytes_received: per(a.bytes_received, b.bytes_received),
        full: per(a.full, b.full),
        skips: per(skips(a), skips(b)),
        crc: per(a.crc_failures, b.crc_failures),
    }
}

pub fn run(out: &mut impl Write, name: &str, interval: Duration, count: Option<u64>) -> Outcome {
    let view = Inspector::open(name)?;
    let info = view.info();
    let tty = std::io::stdout().is_terminal();
    let mut before = view.stats();
    let mut t0 = Instant::now();
    let mut drawn_lines = 0;
    if !tty {
        writeln!(
            out,
            "# {name}: rates per second over {} (skips = torn + bad blocks)",
            format_duration(interval)
        )?;
        out.flush()?;
    }
    let mut refresh = 0u64;
    while count.is_none_or(|c| refresh < c) {
        std::thread::sleep(interval);
        let after = view.stats();
        let t1 = Instant::now();
        let secs = t1.duration_since(t0).as_secs_f64().max(1e-9);
        let r = rates(&before, &after, secs);
        let cursors = view.cursors();
        let fill = fill_percent(&info, &cursors);
        refresh += 1;
        if tty {
            let lines = [
                format!(
                    "{name}   refresh {refresh} every {}",
                    format_duration(interval)
                ),
                format!(
                    "  sent      {:>9} msg/s  {:>11}/s",
                    format_rate(r.sent),
                    format_size(r.bytes_sent as u64)
                ),
                format!(
                    "  received  {:>9} msg/s  {:>11}/s",
                    format_rate(r.received),
                    format_size(r.bytes_received as u64)
                ),
                format!(
                    "  full      {:>9} /s     skips {} /s   crc failures {} /s",
                    format_rate(r.full),
                    format_rate(r.skips),
                    format_rate(r.crc)
                ),
                format!(
                    "  fill      {fill:>8.1}%      {} of {} nodes used   reader {}",
                    cursors.used_nodes,
                    info.node_count,
                    describe_reader(view.reader_owner())
                ),
                format!(
                    "  totals    sent {} received {} torn {} bad {}",
                    after.messages_sent,
                    after.messages_received,
                    after
                        .timeout_blocks
                        .saturating_add(after.dead_writer_blocks),
                    after.bad_blocks
                ),
            ];
            if drawn_lines > 0 {
                // Back to the top of the previous drawing.
                write!(out, "\x1b[{drawn_lines}A")?;
            }
            for l in &lines {
                write!(out, "\r\x1b[2K{l}\n")?;
            }
            drawn_lines = lines.len();
        } else {
            writeln!(
                out,
                "sent={}/s recv={}/s bytes_sent={}/s bytes_recv={}/s full={}/s skips={}/s \
                 crc={}/s fill={fill:.1}% used={}",
                format_rate(r.sent),
                format_rate(r.received),
                format_rate(r.bytes_sent),
                format_rate(r.bytes_received),
                format_rate(r.full),
                format_rate(r.skips),
                format_rate(r.crc),
                cursors.used_nodes
            )?;
        }
        out.flush()?;
        before = after;
        t0 = t1;
    }
    Ok(ExitCode::SUCCESS)
}
