//! `create`, `send` and `recv`: for manual testing.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use atbus::{Backoff, Channel, Config, Error};

use crate::load::{self, SeqCheck, SizeRange};
use crate::units::{format_duration, format_rate, format_size};
use crate::{Failure, Outcome};

pub fn create(out: &mut impl Write, name: &str, size: usize, config: &Config) -> Outcome {
    let ch = Channel::create(name, size, config)?;
    writeln!(
        out,
        "created {name}: {} ({} nodes of {} bytes), messages up to {} bytes, timeout {}",
        format_size(size as u64),
        ch.node_count(),
        ch.node_size(),
        ch.max_message_len(),
        format_duration(ch.timeout())
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `send`.
#[derive(Args, Debug)]
pub struct SendArgs {
    /// Channel name (`/NAME` or a file path).
    name: String,
    /// The message; `-` reads it from standard input.
    #[arg(conflicts_with = "file", required_unless_present_any = ["file", "count"])]
    message: Option<String>,
    /// Send the contents of this file.
    #[arg(long, value_name = "F")]
    file: Option<PathBuf>,
    /// Send the message this many times (for load).
    #[arg(long, value_name = "N", default_value = "1")]
    repeat: u64,
    /// Send N generated messages instead of one given (for load): their bytes follow from
    /// their sequence number, see --seq.
    #[arg(long, value_name = "N", conflicts_with_all = ["message", "file", "repeat"])]
    count: Option<u64>,
    /// Sizes of the generated messages: N or MIN-MAX, e.g. 8-2048 or 1KiB-16KiB (each
    /// length follows from the message's sequence).
    #[arg(long, value_name = "SIZES", default_value = "64", requires = "count",
          value_parser = SizeRange::parse)]
    size: SizeRange,
    /// Start each generated message with its sender id and sequence number (8 bytes),
    /// which `recv --check-seq` checks: order, gaps, repeats and every byte.
    #[arg(long, requires = "count")]
    seq: bool,
    /// The sender id in the --seq header (0 to 65535), to tell several senders apart.
    #[arg(long, value_name = "ID", default_value = "0", requires = "seq")]
    sender: u16,
    /// The sequence number of the first message (--seq), e.g. to go on where an earlier
    /// send stopped.
    #[arg(long, value_name = "SEQ", default_value = "0", requires = "seq")]
    first_seq: u64,
    /// Send at most this many messages per second (sleeping in between, never spinning).
    #[arg(long, value_name = "MSGS_PER_S", value_parser = parse_rate)]
    rate: Option<f64>,
    /// How long to wait while the channel is full before giving up.
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = crate::units::parse_duration)]
    timeout: Duration,
    /// Write even to a channel owned by another user or writable by group/others
    /// (refused by default: whoever can write it controls what is sent).
    #[arg(long)]
    allow_foreign: bool,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "rate {text:?}: give messages per second, a number above 0"
        )),
    }
}

/// Sleeps until message `i` of a send limited to `rate` per second is due, if it is at
/// least a millisecond ahead (shorter waits are caught up by the next messages).
fn pace(start: Instant, rate: Option<f64>, i: u64) {
    if let Some(rate) = rate {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        let ahead = due.saturating_duration_since(Instant::now());
        if ahead >= Duration::from_millis(1) {
            std::thread::sleep(ahead);
        }
    }
}

/// Maps a send error: a full channel is the likely one, with what to check.
fn send_failure(name: &str, timeout: Duration) -> impl Fn(Error) -> Failure + '_ {
    move |e| match e {
        Error::Timeout => Failure::Message(format!(
            "channel {name} stayed full for {}: is a reader running?",
            format_duration(timeout)
        )),
        other => Failure::Atbus(other),
    }
}

pub fn send(out: &mut impl Write, args: &SendArgs) -> Outcome {
    if let Some(count) = args.count {
        return send_generated(out, args, count);
    }
    let message = match (&args.message, &args.file) {
        (_, Some(path)) => std::fs::read(path)
            .map_err(|e| Failure::Message(format!("cannot read {}: {e}", path.display())))?,
        (Some(m), None) if m == "-" => {
            let mut v = Vec::new();
            std::io::stdin()
                .read_to_end(&mut v)
                .map_err(|e| Failure::Message(format!("cannot read standard input: {e}")))?;
            v
        }
        (Some(m), None) => m.as_bytes().to_vec(),
        (None, None) => unreachable!("clap requires a message or --file"),
    };
    let writer = open(&args.name, args.allow_foreign)?.writer();
    let start = Instant::now();
    for i in 0..args.repeat {
        pace(start, args.rate, i);
        writer
            .send_timeout(&message, args.timeout)
            .map_err(send_failure(&args.name, args.timeout))?;
    }
    if args.repeat == 1 {
        writeln!(out, "sent {} bytes to {}", message.len(), args.name)?;
    } else {
        writeln!(
            out,
            "sent {} messages of {} bytes to {}",
            args.repeat,
            message.len(),
            args.name
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `send --count`: generated messages, paced by --rate, then a summary line.
fn send_generated(out: &mut impl Write, args: &SendArgs, count: u64) -> Outcome {
    let sizes = args.size;
    if args.seq && sizes.min < load::HEADER {
        return Err(Failure::Message(format!(
            "--seq needs messages of at least {} bytes (its header), not --size {}",
            load::HEADER,
            sizes.min
        )));
    }
    let last_seq = args.first_seq.checked_add(count.saturating_sub(1));
    if args.seq && last_seq.is_none_or(|last| last > load::MAX_SEQ) {
        return Err(Failure::Message(format!(
            "--seq numbers go up to {}: --first-seq {} with --count {count} goes past it",
            load::MAX_SEQ,
            args.first_seq
        )));
    }
    let channel = open(&args.name, args.allow_foreign)?;
    if sizes.max > channel.max_message_len() {
        return Err(Failure::Message(format!(
            "--size up to {} bytes, but channel {} takes messages up to {} bytes",
            sizes.max,
            args.name,
            channel.max_message_len()
        )));
    }
    let writer = channel.writer();
    let mut message = Vec::with_capacity(sizes.max);
    let mut bytes = 0u64;
    let start = Instant::now();
    for i in 0..count {
        pace(start, args.rate, i);
        let word = if args.seq {
            load::word(args.sender, args.first_seq + i)
        } else {
            i
        };
        load::fill(&mut message, sizes, word, args.seq);
        writer
            .send_timeout(&message, args.timeout)
            .map_err(send_failure(&args.name, args.timeout))?;
        bytes += message.len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    let sizes_text = if sizes.min == sizes.max {
        format!("{} B", sizes.min)
    } else {
        format!("{}-{} B", sizes.min, sizes.max)
    };
    let seq_text = if args.seq && count > 0 {
        format!(
            ", sender {} seq {}-{}",
            args.sender,
            args.first_seq,
            args.first_seq + count - 1
        )
    } else {
        String::new()
    };
    writeln!(
        out,
        "sent {count} messages ({sizes_text}, {} in all{seq_text}) to {} in {secs:.3} s: \
         {} msgs/s, {}/s",
        format_size(bytes),
        args.name,
        format_rate(count as f64 / secs.max(1e-9)),
        format_size((bytes as f64 / secs.max(1e-9)) as u64),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `recv`.
#[derive(Args, Debug)]
pub struct RecvArgs {
    /// Channel name (`/NAME` or a file path).
    name: String,
    /// Stop after N messages.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Wait for more messages when the channel is empty (until --count or interrupted).
    #[arg(long)]
    follow: bool,
    /// Print each message as one line of hex instead of its raw bytes.
    #[arg(long)]
    hex: bool,
    /// Write raw messages without the newline that otherwise follows each.
    #[arg(long, conflicts_with = "hex")]
    no_newline: bool,
    /// Check messages of `send --seq` instead of printing them: per sender, consecutive
    /// sequences (from the first one seen) and every byte as sent. Prints each problem on stderr and a
    /// summary line; exits 1 if there was any.
    #[arg(long, conflicts_with_all = ["hex", "no_newline"])]
    check_seq: bool,
    /// Take the reader role even of a channel owned by another user or writable by
    /// group/others (refused by default: whoever can write it controls what is read).
    #[arg(long)]
    allow_foreign: bool,
}

/// Opens `name` read-write, refusing another user's object unless `allow_foreign`.
fn open(name: &str, allow_foreign: bool) -> Result<Channel, Failure> {
    Ok(atbus::OpenOptions::new()
        .allow_foreign_owner(allow_foreign)
        .open(name)?)
}

pub fn recv(out: &mut impl Write, args: &RecvArgs) -> Outcome {
    let channel = open(&args.name, args.allow_foreign)?;
    let mut reader = channel.reader()?;
    eprintln!(
        "atbus-dump: took the reader role of {} (pid {}); other readers are refused until \
         this exits",
        args.name,
        std::process::id()
    );
    let mut received = 0u64;
    let mut check = args.check_seq.then(SeqCheck::new);
    let mut backoff = Backoff::new();
    let mut follow_buf: Option<Vec<u8>> = None;
    let mut waiting = false;
    while args.count.is_none_or(|c| received < c) {
        match reader.try_recv_with(|m| handle(out, m, args, &mut check)) {
            Ok(written) => {
                written?;
                received += 1;
                waiting = false;
                backoff.reset();
                if args.follow {
                    out.flush()?;
                }
            }
            Err(Error::Empty) if args.follow => {
                out.flush()?;
                // Sleep on the channel's futex until a writer publishes (no polling).
                let buf = follow_buf.get_or_insert_with(|| vec![0u8; channel.max_message_len()]);
                match reader.recv_timeout(buf, Duration::from_secs(1)) {
                    Ok(n) => {
                        handle(out, &buf[..n], args, &mut check)?;
                        received += 1;
                        out.flush()?;
                    }
                    Err(Error::Timeout) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(Error::Empty) => {
                // Claimed nodes ahead: a block being written, or a torn one the reader
                // skips once its writer is found dead or the timeout passes. Wait for it
                // rather than stop short of the messages behind it.
                if channel.stats().write_cursor <= reader.position() {
                    break;
                }
                if !waiting {
                    waiting = true;
                    out.flush()?;
                    eprintln!(
                        "atbus-dump: waiting for an unfinished block at position {} (at \
                         most the channel's timeout, {})",
                        reader.position(),
                        format_duration(channel.timeout())
                    );
                }
                backoff.snooze();
            }
            Err(e) => return Err(e.into()),
        }
    }
    out.flush()?;
    drop(reader);
    eprintln!(
        "atbus-dump: received {received} message{} and gave the reader role back",
        if received == 1 { "" } else { "s" }
    );
    if let Some(check) = check {
        writeln!(out, "{}", check.summary())?;
        if !check.ok() {
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// At most this many problems are printed by `recv --check-seq`; the summary counts all.
const PROBLEMS_PRINTED: u64 = 20;

/// Writes a received message, or checks it with `--check-seq` (problems on stderr).
fn handle(
    out: &mut impl Write,
    message: &[u8],
    args: &RecvArgs,
    check: &mut Option<SeqCheck>,
) -> std::io::Result<()> {
    let Some(check) = check else {
        return write_message(out, message, args);
    };
    if let Some(problem) = check.observe(message) {
        let n = check.problems();
        if n <= PROBLEMS_PRINTED {
            eprintln!("atbus-dump: {problem}");
        }
        if n == PROBLEMS_PRINTED {
            eprintln!("atbus-dump: (further problems are counted, not printed)");
        }
    }
    Ok(())
}

fn write_message(out: &mut impl Write, message: &[u8], args: &RecvArgs) -> std::io::Result<()> {
    if args.hex {
        for b in message {
            write!(out, "{b:02x}")?;
        }
        writeln!(out)
    } else {
        out.write_all(message)?;
        if args.no_newline {
            Ok(())
        } else {
            writeln!(out)
        }
    }
}
