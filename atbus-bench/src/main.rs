//! `atbus-bench`: multi-process stress with fault injection, latency, and comparison
//! with reference and OS transports, for atbus. Run with no subcommand for the default
//! stress run.

mod board;
mod compare;
mod faults;
mod futexcheck;
#[cfg(feature = "iceoryx2")]
mod iox;
#[cfg(feature = "iceoryx2")]
mod iox_rpc;
mod latency;
mod limit;
mod payload;
mod placement;
mod procs;
mod report;
mod rpc;
mod stress;
mod transport;
mod units;

use clap::{Parser, Subcommand};

/// Multi-process stress, fault injection, latency and transport comparison for atbus.
///
/// With no subcommand, runs `stress` with the given (or default) options.
#[derive(Parser, Debug)]
#[command(name = "atbus-bench", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    stress: stress::StressArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// N writer processes and one reader, every byte checked (the default).
    Stress(stress::StressArgs),
    /// The same workloads over atbus, the references (a bare shared-memory ring, iceoryx2),
    /// Unix datagram sockets, a pipe and POSIX queues.
    Compare(compare::CompareArgs),
    /// Request/reply round trips over the bus (server spinning or in an event loop),
    /// beside a Unix-socket RPC and iceoryx2's request-response.
    Rpc(rpc::RpcArgs),
    /// One-way latency of 64-byte messages at a fixed rate (HDR histogram).
    Latency(latency::LatencyArgs),
    /// A blocking (or tokio) reader with no writer: its CPU use over one wait.
    Idle(futexcheck::IdleArgs),
    /// How soon a writer parked in `send` on a full ring resumes once the reader frees
    /// space.
    SpaceWake(futexcheck::SpaceWakeArgs),
    /// This process writes to a spinning reader (run under `strace -c` to count the
    /// writer's system calls).
    FastPath(futexcheck::FastPathArgs),
    /// The writer's and the reader's own cost per message, in one process: fill a ring
    /// with try_send, drain it with try_recv, recv_batch or try_recv_in_place.
    Drain(futexcheck::DrainArgs),
    #[command(name = "__spin-reader", hide = true)]
    SpinReader(futexcheck::SpinReaderRole),
    #[command(name = "__hot-loop", hide = true)]
    HotLoop(latency::HotLoopArgs),
    #[command(name = "__latency-writer", hide = true)]
    LatencyWriter(latency::LatencyRole),
    #[command(name = "__latency-reader", hide = true)]
    LatencyReader(latency::LatencyRole),
    #[command(name = "__compare-writer", hide = true)]
    CompareWriter(compare::CompareRole),
    #[command(name = "__compare-reader", hide = true)]
    CompareReader(compare::CompareRole),
    #[command(name = "__rpc-server", hide = true)]
    RpcServer(rpc::RpcRole),
    #[command(name = "__rpc-client", hide = true)]
    RpcClient(rpc::RpcRole),
    #[command(name = "__stress-writer", hide = true)]
    StressWriter(stress::WriterRole),
    #[command(name = "__stress-reader", hide = true)]
    StressReader(stress::ReaderRole),
}

/// How a command failed.
#[derive(Debug)]
pub enum Fail {
    /// Bad arguments: one line, exit code 2.
    Usage(String),
    /// The run could not be set up or went wrong: exit code 1.
    Run(String),
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                e.exit();
            }
            // One line: clap's first line ("error: ...") without the usage block.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("atbus-bench: error: {first} (see --help)");
            std::process::exit(2);
        }
    };
    let result = match cli.command {
        None => stress::run(cli.stress),
        Some(Command::Stress(a)) => stress::run(a),
        Some(Command::Compare(a)) => compare::run(a),
        Some(Command::Rpc(a)) => rpc::run(a),
        Some(Command::Latency(a)) => latency::run(a),
        Some(Command::Idle(a)) => futexcheck::idle(a),
        Some(Command::SpaceWake(a)) => futexcheck::space_wake(a),
        Some(Command::FastPath(a)) => futexcheck::fast_path(a),
        Some(Command::Drain(a)) => futexcheck::drain(a),
        Some(Command::SpinReader(a)) => role(futexcheck::spin_reader_role(a)),
        Some(Command::HotLoop(a)) => latency::hot_loop(a),
        Some(Command::LatencyWriter(a)) => role(latency::writer_role(a)),
        Some(Command::LatencyReader(a)) => role(latency::reader_role(a)),
        Some(Command::CompareWriter(a)) => role(compare::writer_role(a)),
        Some(Command::CompareReader(a)) => role(compare::reader_role(a)),
        Some(Command::RpcServer(a)) => role(rpc::server_role(a)),
        Some(Command::RpcClient(a)) => role(rpc::client_role(a)),
        Some(Command::StressWriter(a)) => role(stress::writer_role(a)),
        Some(Command::StressReader(a)) => role(stress::reader_role(a)),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(Fail::Usage(msg)) => {
            eprintln!("atbus-bench: error: {msg}");
            std::process::exit(2);
        }
        Err(Fail::Run(msg)) => {
            eprintln!("atbus-bench: error: {msg}");
            std::process::exit(1);
        }
    }
}

/// Exit status of a child role.
fn role(r: Result<(), String>) -> Result<i32, Fail> {
    r.map(|()| 0).map_err(Fail::Run)
}
