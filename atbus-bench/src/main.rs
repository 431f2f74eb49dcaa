//! `atbus-bench`: multi-process stress with fault injection, latency, and comparison
//! with OS transports, for atbus. Run with no subcommand for the default stress run.

mod board;
mod faults;
mod payload;
mod procs;
mod report;
mod stress;
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
