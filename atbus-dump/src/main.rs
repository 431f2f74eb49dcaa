//! `atbus-dump`: look inside atbus channels.
//!
//! `show`, `nodes`, `watch`, `check` and `list` only read: they map the segment
//! `PROT_READ` through [`atbus::Inspector`] and never take the reader role, so they are
//! safe to run against a channel in production while its writers and reader run. Values
//! are read one at a time, so a picture of a busy channel is not one consistent snapshot.
//!
//! `create`, `unlink`, `send` and `recv` are for manual testing; `recv` takes the reader
//! role. `send` and `recv` refuse a channel owned by another user, or writable by group
//! or others, unless given `--allow-foreign`; the read-only commands open anyone's and
//! show its owner and mode.
//!
//! `bus` lists the endpoints of an atbus-bus directory (read-only); `bus --check`
//! reports what crashes left behind and `bus --reclaim` cleans it up (read-write).
//!
//! Exit codes: 0 success; 1 `check` or `bus --check` found anomalies, or `recv
//! --check-seq` found problems; 2 an error (missing channel, not an atbus segment, bad
//! arguments).

#![forbid(unsafe_code)]

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

mod bus;
mod check;
mod list;
mod load;
mod nodes;
mod resized;
mod rw;
mod show;
mod units;
mod watch;

/// Inspect, watch, check and poke atbus shared-memory channels.
///
/// NAME is a POSIX shared-memory name like `/orders` (the object /dev/shm/orders) or a
/// file path like /tmp/ring.bus. The read-only commands (show, nodes, watch, check,
/// list) never write to a channel and never take the reader role.
#[derive(Parser, Debug)]
#[command(name = "atbus-dump", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Header, configuration, cursors, reader and every counter of a channel.
    Show {
        /// Channel name (`/NAME` or a file path).
        name: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// One line per node head: sequence, flags and the first bytes of data.
    ///
    /// By default shows the nodes between the read and write cursors plus 4 on each side,
    /// at most 256 lines (the output says when it cut); --from and --count choose others.
    Nodes {
        /// Channel name (`/NAME` or a file path).
        name: String,
        /// First node index to show (0-based; the listing wraps around the ring).
        #[arg(long, value_name = "I")]
        from: Option<u64>,
        /// Number of nodes to show (at most the node count).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Bytes of each node's data to print in hex (from the start of the node, so a
        /// block's first node begins with its 32-byte block header).
        #[arg(long, value_name = "BYTES", default_value = "16", value_parser = parse_size_usize)]
        data: usize,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Rates per second (messages, bytes, Full returns, skips, crc failures) and fill.
    ///
    /// On a terminal the display is redrawn in place; otherwise one line per refresh.
    Watch {
        /// Channel name (`/NAME` or a file path).
        name: String,
        /// Time between refreshes, e.g. 1s, 500ms.
        #[arg(long, value_name = "DUR", default_value = "1s", value_parser = parse_interval)]
        interval: Duration,
        /// Stop after N refreshes (default: run until interrupted).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// Walk the blocks between the cursors without consuming them and report anomalies.
    ///
    /// Reports torn blocks (START without WRITTEN, or claimed nodes never flagged) with
    /// the writer process and whether it is alive, bad lengths, crc mismatches and
    /// orphan node heads. A block whose writer is alive and still writing is reported as
    /// in progress, not as an anomaly. A segment whose object was resized after creation
    /// (its size no longer what its header says: shrunk objects crash every process that
    /// maps them with SIGBUS) is reported without being walked. Exit code 0 when clean, 1
    /// when anomalies were found.
    Check {
        /// Channel name (`/NAME` or a file path).
        name: String,
        /// How long to watch unfinished blocks before judging them: a block that changes
        /// within this time was merely in progress.
        #[arg(long, value_name = "DUR", default_value = "50ms", value_parser = units::parse_duration)]
        settle: Duration,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// The atbus channels in /dev/shm, with size, fill and reader.
    List {
        /// Directory to scan (channels found elsewhere are listed by file path).
        #[arg(long, value_name = "DIR", default_value = "/dev/shm")]
        dir: PathBuf,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// The endpoints of an atbus-bus bus: name, generation, pid, liveness, inbox traffic.
    ///
    /// Maps the directory read-only and takes no lock. --check also reports duplicate
    /// names, records held by dead processes and orphan inboxes (exit 1 if any);
    /// --reclaim opens it read-write, reclaims dead records (unlinking their inboxes),
    /// removes orphan inboxes, and reports what is left.
    Bus {
        /// Bus name (`/NAME`).
        name: String,
        /// Report what needs cleaning; exit 1 if anything does.
        #[arg(long)]
        check: bool,
        /// Clean up: reclaim records of dead processes and remove orphan inboxes.
        #[arg(long)]
        reclaim: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Create a channel.
    Create {
        /// Channel name (`/NAME` or a file path).
        name: String,
        /// Size of the whole segment, e.g. 16MiB.
        #[arg(long, value_name = "SIZE", value_parser = parse_size_usize)]
        size: usize,
        /// Bytes per node: a power of two from 64 to 65536.
        #[arg(long, value_name = "N", default_value = "128", value_parser = parse_size_usize)]
        node_size: usize,
        /// Torn-block timeout: how long the reader waits for a stalled writer.
        #[arg(long, value_name = "DUR", default_value = "1s", value_parser = units::parse_duration)]
        timeout: Duration,
        /// File mode of the segment, in octal. Wider than 600 needs --allow-shared-mode.
        #[arg(long, value_name = "OCTAL", default_value = "600", value_parser = units::parse_mode)]
        mode: u32,
        /// Allow a --mode wider than 600: other users may then read or write the channel
        /// (writers forge messages, shrink it, crash its processes; see docs/security.md).
        #[arg(long)]
        allow_shared_mode: bool,
        /// Bytes writers always leave free.
        #[arg(long, value_name = "SIZE", default_value = "0", value_parser = parse_size_usize)]
        protect: usize,
        /// Do not skip blocks of dead writers at once (for processes in different pid
        /// namespaces); rely on the timeout alone.
        #[arg(long)]
        no_dead_writer_detection: bool,
        /// Do not compute or check payload crc32s (faster; damaged payloads go unseen).
        #[arg(long)]
        no_checksums: bool,
    },
    /// Remove a channel's name (processes that have it open keep using it).
    Unlink {
        /// Channel name (`/NAME` or a file path).
        name: String,
    },
    /// Send one message (the argument, a file, or standard input), or generated load
    /// (--count, --size, --seq, --rate).
    Send(rw::SendArgs),
    /// Take the reader role and write received messages to standard output (or check
    /// those of `send --seq` with --check-seq).
    Recv(rw::RecvArgs),
}

/// `--json` for the commands that support it.
#[derive(Args, Debug, Clone, Copy)]
struct JsonFlag {
    /// Print one JSON document instead of text (fields are described in the README).
    #[arg(long)]
    json: bool,
}

fn parse_size_usize(text: &str) -> Result<usize, String> {
    let n = units::parse_size(text)?;
    usize::try_from(n).map_err(|_| format!("size {text:?} is too large"))
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let d = units::parse_duration(text)?;
    if d.is_zero() {
        return Err("the interval must be longer than 0".into());
    }
    Ok(d)
}

/// Why a command failed. Every variant ends the process with one line on stderr and
/// exit code 2.
#[derive(Debug)]
pub enum Failure {
    /// An error from atbus: printed with its own Display, which says what to do.
    Atbus(atbus::Error),
    /// A usage or environment problem found by this tool.
    Message(String),
    /// Writing the output failed (a closed pipe ends the process quietly).
    Io(io::Error),
}

impl From<atbus::Error> for Failure {
    fn from(e: atbus::Error) -> Self {
        Failure::Atbus(e)
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        Failure::Io(e.into())
    }
}

/// What a command returns: its exit code on success.
pub type Outcome = Result<ExitCode, Failure>;

/// Prints a value as one pretty JSON document followed by a newline.
pub fn print_json<T: serde::Serialize>(out: &mut impl Write, value: &T) -> Result<(), Failure> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

fn run(cli: Cli) -> Outcome {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let code = match cli.command {
        Command::Show { name, json } => show::run(&mut out, &name, json.json)?,
        Command::Nodes {
            name,
            from,
            count,
            data,
            json,
        } => nodes::run(&mut out, &name, from, count, data, json.json)?,
        Command::Watch {
            name,
            interval,
            count,
        } => watch::run(&mut out, &name, interval, count)?,
        Command::Check { name, settle, json } => check::run(&mut out, &name, settle, json.json)?,
        Command::List { dir, json } => list::run(&mut out, &dir, json.json)?,
        Command::Bus {
            name,
            check,
            reclaim,
            json,
        } => bus::run(&mut out, &name, check, reclaim, json.json)?,
        Command::Create {
            name,
            size,
            node_size,
            timeout,
            mode,
            allow_shared_mode,
            protect,
            no_dead_writer_detection,
            no_checksums,
        } => {
            let config = atbus::Config::builder()
                .node_size(node_size)
                .timeout(timeout)
                .mode(mode)
                .protect_bytes(protect)
                .detect_dead_writers(!no_dead_writer_detection)
                .checksums(!no_checksums)
                .allow_shared_mode(allow_shared_mode)
                .build()?;
            rw::create(&mut out, &name, size, &config)?
        }
        Command::Unlink { name } => {
            atbus::Channel::unlink(&name)?;
            writeln!(out, "unlinked {name}")?;
            ExitCode::SUCCESS
        }
        Command::Send(args) => rw::send(&mut out, &args)?,
        Command::Recv(args) => rw::recv(&mut out, &args)?,
    };
    out.flush()?;
    Ok(code)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(Failure::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(failure) => {
            let text = match failure {
                Failure::Atbus(e) => e.to_string(),
                Failure::Message(m) => m,
                Failure::Io(e) => format!("writing the output failed: {e}"),
            };
            eprintln!("atbus-dump: {text}");
            ExitCode::from(2)
        }
    }
}
