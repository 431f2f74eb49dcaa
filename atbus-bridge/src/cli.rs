//! The `atbus-bridge` command line: `out`, `in` and `bench`.

use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::counters::Counters;
use crate::inbound::{self, InOptions};
use crate::nats::{BridgeError, Endpoint};
use crate::outbound::{self, OutOptions};

/// Forwards atbus channels into NATS JetStream and back.
#[derive(Parser, Debug)]
#[command(name = "atbus-bridge", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Takes a channel's reader role and publishes every message to a JetStream stream.
    Out(OutArgs),
    /// Writes every message of a JetStream subject into a channel (durable consumer).
    In(InArgs),
    /// Measures out and in against a plain async-nats publisher (see docs/bridge.md).
    Bench(crate::bench::BenchArgs),
}

#[derive(Args, Debug)]
struct NatsArgs {
    /// NATS server URL(s), comma-separated.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// JetStream stream (created with the subject if missing).
    #[arg(long)]
    stream: String,
    /// Subject to publish to / consume from.
    #[arg(long)]
    subject: String,
    /// Acknowledgements outstanding at most.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Duplicate window of the stream when the bridge creates it, in seconds.
    #[arg(long, default_value_t = 120)]
    duplicate_window: u64,
    /// Print the counters as JSON on stdout at exit.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct OutArgs {
    /// The channel to forward (its reader role is taken).
    #[arg(long)]
    channel: String,
    #[command(flatten)]
    nats: NatsArgs,
}

#[derive(Args, Debug)]
struct InArgs {
    /// Durable consumer name.
    #[arg(long)]
    durable: String,
    /// The channel to write into (must exist).
    #[arg(long)]
    channel: String,
    #[command(flatten)]
    nats: NatsArgs,
}

impl NatsArgs {
    fn endpoint(&self) -> Endpoint {
        Endpoint {
            url: self.nats.clone(),
            stream: self.stream.clone(),
            subject: self.subject.clone(),
        }
    }
}

/// Runs the command line `args` (program name first) and returns the exit code: 0 when
/// it finished or was stopped by SIGINT/SIGTERM, 2 on an error (one line on stderr).
pub fn run(args: impl IntoIterator<Item = String>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("atbus-bridge: error: cannot start the async runtime: {e}");
            return 2;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Out(a) => {
                let opts = OutOptions {
                    channel: a.channel,
                    endpoint: a.nats.endpoint(),
                    window: a.nats.window,
                    duplicate_window: Duration::from_secs(a.nats.duplicate_window),
                };
                supervise("out", a.nats.json, |c, stop| async move {
                    outbound::run(&opts, &c, stop).await
                })
                .await
            }
            Command::In(a) => {
                let opts = InOptions {
                    endpoint: a.nats.endpoint(),
                    durable: a.durable,
                    channel: a.channel,
                    window: a.nats.window,
                    duplicate_window: Duration::from_secs(a.nats.duplicate_window),
                };
                supervise("in", a.nats.json, |c, stop| async move {
                    inbound::run(&opts, &c, stop).await
                })
                .await
            }
            Command::Bench(a) => crate::bench::run(a).await,
        }
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("atbus-bridge: error: {e}");
            2
        }
    }
}

/// Runs one direction with its signals: SIGINT/SIGTERM stop it (in-flight work is
/// finished), SIGUSR1 prints the counters; they are printed at exit too.
async fn supervise<F, Fut>(direction: &str, json: bool, body: F) -> Result<(), BridgeError>
where
    F: FnOnce(Arc<Counters>, watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = Result<(), BridgeError>>,
{
    let counters = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut int = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let mut term = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(signal_error)?;
    let progress = counters.clone();
    let tag = direction.to_string();
    let watcher = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = int.recv() => { let _ = stop_tx.send(true); }
                _ = term.recv() => { let _ = stop_tx.send(true); }
                _ = usr1.recv() => eprintln!("atbus-bridge {tag}: {}", progress.line()),
            }
        }
    });
    let result = body(counters.clone(), stop_rx).await;
    watcher.abort();
    // A failure before the first message is the error line alone.
    if result.is_ok()
        || counters
            .forwarded
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    {
        let state = if result.is_ok() { "stopped" } else { "failed" };
        eprintln!("atbus-bridge {direction}: {state}: {}", counters.line());
    }
    if json {
        println!("{}", counters.json());
    }
    result
}

fn signal_error(e: std::io::Error) -> BridgeError {
    BridgeError(format!("cannot install the signal handlers: {e}"))
}
