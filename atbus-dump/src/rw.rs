//! `create`, `send` and `recv`: for manual testing.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use atbus::{Backoff, Channel, Config, Error};

use crate::units::{format_duration, format_size};
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
    #[arg(conflicts_with = "file", required_unless_present = "file")]
    message: Option<String>,
    /// Send the contents of this file.
    #[arg(long, value_name = "F")]
    file: Option<PathBuf>,
    /// Send the message this many times (for load).
    #[arg(long, value_name = "N", default_value = "1")]
    repeat: u64,
    /// How long to wait while the channel is full before giving up.
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = crate::units::parse_duration)]
    timeout: Duration,
    /// Write even to a channel owned by another user or writable by group/others
    /// (refused by default: whoever can write it controls what is sent).
    #[arg(long)]
    allow_foreign: bool,
}

pub fn send(out: &mut impl Write, args: &SendArgs) -> Outcome {
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
    for _ in 0..args.repeat {
        writer
            .send_timeout(&message, args.timeout)
            .map_err(|e| match e {
                Error::Timeout => Failure::Message(format!(
                    "channel {} stayed full for {}: is a reader running?",
                    args.name,
                    format_duration(args.timeout)
                )),
                other => Failure::Atbus(other),
            })?;
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
    let mut backoff = Backoff::new();
    let mut follow_buf: Option<Vec<u8>> = None;
    let mut waiting = false;
    while args.count.is_none_or(|c| received < c) {
        match reader.try_recv_with(|m| write_message(out, m, args)) {
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
                        write_message(out, &buf[..n], args)?;
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
    Ok(ExitCode::SUCCESS)
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
