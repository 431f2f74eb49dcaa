//! `atbus-bridge bench`: the bridge's rate against the engine's own, in one run.
//!
//! For each message size and round, in turn: a plain async-nats JetStream publisher
//! sending `count` messages with `window` acknowledgements outstanding (the reference);
//! `out` forwarding the same number from a channel a writer thread keeps full; and `in`
//! writing them from the stream into a channel a reader thread drains. Each run uses a
//! fresh stream. Reports min / median / max msgs/s and MB/s and `out ÷ plain`.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use clap::Args;
use tokio::sync::watch;

use crate::counters::Counters;
use crate::inbound::{self, InOptions};
use crate::nats::{self, BridgeError, Endpoint};
use crate::outbound::{self, OutOptions};

/// What `atbus-bridge bench` is told.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// NATS server URL (a JetStream server the bench may create and delete streams on).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Message sizes in bytes, comma-separated.
    #[arg(long, default_value = "64,1024", value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Messages per run.
    #[arg(long, default_value_t = 200_000)]
    count: u64,
    /// Acknowledgements outstanding, for the plain publisher and the bridge alike.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Rounds (each runs plain, out and in once).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Runs the benchmark and prints its table.
pub async fn run(args: BenchArgs) -> Result<(), BridgeError> {
    let client = nats::connect(&args.nats).await?;
    let js = nats::jetstream(client, args.window);
    let mut rows = Vec::new();
    for &size in &args.sizes {
        let (mut plain, mut ids, mut out, mut inward) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 0..args.rounds {
            plain.push(run_plain(&js, &args, size, round, false).await?);
            ids.push(run_plain(&js, &args, size, round, true).await?);
            let (o, i) = run_bridge(&js, &args, size, round).await?;
            out.push(o);
            inward.push(i);
            eprintln!(
                "bench {size} B round {round}: plain {:.0}, plain with the bridge's headers \
                 {:.0}, out {o:.0}, in {i:.0} msgs/s",
                plain[round], ids[round]
            );
        }
        rows.push((size, plain, ids, out, inward));
    }
    let cpu = cpu_model();
    println!(
        "atbus-bridge bench: {} msgs per run, window {}, {} rounds, CPU {cpu}",
        args.count, args.window, args.rounds
    );
    println!(
        "{:>6} | {:>24} | {:>24} | {:>24} | {:>24} | {:>9} | {:>8} | {:>8}",
        "size",
        "plain msgs/s",
        "plain+headers msgs/s",
        "out msgs/s",
        "in msgs/s",
        "out/plain",
        "out MB/s",
        "in MB/s"
    );
    let mut json_rows = Vec::new();
    for (size, plain, ids, out, inward) in &rows {
        let (p, h, o, i) = (stats(plain), stats(ids), stats(out), stats(inward));
        let mb = |r: f64| r * *size as f64 / 1e6;
        println!(
            "{size:>6} | {:>24} | {:>24} | {:>24} | {:>24} | {:>8.2}x | {:>8.1} | {:>8.1}",
            p.show(),
            h.show(),
            o.show(),
            i.show(),
            o.median / p.median,
            mb(o.median),
            mb(i.median)
        );
        json_rows.push(serde_json::json!({
            "size": size, "plain": p.json(), "plain_with_headers": h.json(), "out": o.json(),
            "in": i.json(), "out_over_plain": o.median / p.median,
        }));
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({"cpu": cpu, "count": args.count, "window": args.window,
                "rows": json_rows})
        );
    }
    Ok(())
}

struct Stats {
    min: f64,
    median: f64,
    max: f64,
}

impl Stats {
    fn show(&self) -> String {
        format!("{:.0} / {:.0} / {:.0}", self.min, self.median, self.max)
    }
    fn json(&self) -> serde_json::Value {
        serde_json::json!({"min": self.min, "median": self.median, "max": self.max})
    }
}

fn stats(v: &[f64]) -> Stats {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    Stats {
        min: s[0],
        median: s[s.len() / 2],
        max: s[s.len() - 1],
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// A fresh stream `name` for `subject`.
async fn fresh_stream(
    js: &jetstream::Context,
    name: &str,
    subject: &str,
) -> Result<(), BridgeError> {
    let _ = js.delete_stream(name).await;
    js.create_stream(jetstream::stream::Config {
        name: name.into(),
        subjects: vec![subject.into()],
        ..Default::default()
    })
    .await
    .map(drop)
    .map_err(|e| BridgeError(format!("bench: cannot create stream {name}: {e}")))
}

/// The plain publisher: msgs/s from the first publish to the last acknowledgement.
/// `headers`: with the headers the bridge sends (message id, predecessor, origin), to
/// tell the engine's cost of them from the bridge's own.
async fn run_plain(
    js: &jetstream::Context,
    args: &BenchArgs,
    size: usize,
    round: usize,
    headers: bool,
) -> Result<f64, BridgeError> {
    let (name, subject) = (
        format!("BENCH_PLAIN_{size}_{round}_{headers}"),
        format!("bench.plain.{size}.{round}.{headers}"),
    );
    fresh_stream(js, &name, &subject).await?;
    let payload = Bytes::from(vec![0x5au8; size]);
    let subject = async_nats::Subject::from(subject);
    let mut acks = VecDeque::with_capacity(args.window);
    let fail = |e: &dyn std::fmt::Display| BridgeError(format!("bench: plain publish failed: {e}"));
    let t = Instant::now();
    for seq in 0..args.count {
        if acks.len() == args.window {
            let ack: jetstream::context::PublishAckFuture = acks.pop_front().expect("full");
            ack.await.map_err(|e| fail(&e))?;
        }
        let ack = if headers {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", nats::message_id(1, seq).as_str());
            if seq > 0 {
                h.insert(
                    "Nats-Expected-Last-Msg-Id",
                    nats::message_id(1, seq - 1).as_str(),
                );
            }
            h.insert(nats::HEADER_SEQ, seq.to_string().as_str());
            h.insert(nats::HEADER_WRITER_PID, "4242");
            js.publish_with_headers(subject.clone(), h, payload.clone())
                .await
        } else {
            js.publish(subject.clone(), payload.clone()).await
        }
        .map_err(|e| fail(&e))?;
        acks.push_back(ack);
    }
    for ack in acks {
        ack.await.map_err(|e| fail(&e))?;
    }
    let rate = args.count as f64 / t.elapsed().as_secs_f64();
    let _ = js.delete_stream(&name).await;
    Ok(rate)
}

/// `out` then `in` through a fresh stream: msgs/s of each, from start to the last
/// message acknowledged (out) or written (in).
async fn run_bridge(
    js: &jetstream::Context,
    args: &BenchArgs,
    size: usize,
    round: usize,
) -> Result<(f64, f64), BridgeError> {
    let tag = format!("{size}_{round}_{}", std::process::id());
    let (name, subject) = (format!("BENCH_BRIDGE_{tag}"), format!("bench.bridge.{tag}"));
    fresh_stream(js, &name, &subject).await?;
    let endpoint = Endpoint {
        url: args.nats.clone(),
        stream: name.clone(),
        subject,
    };
    let count = args.count;

    // out: a writer thread keeps the channel full.
    let src = format!("/atbus-bridge-bench-src-{tag}");
    let _ = atbus::Channel::unlink(&src);
    let channel = atbus::Channel::create(&src, 16 << 20, &atbus::Config::default())?;
    let writer = channel.writer();
    let feeder = std::thread::spawn(move || -> atbus::Result<()> {
        let msg = vec![0xa5u8; size];
        for _ in 0..count {
            writer.send(&msg)?;
        }
        Ok(())
    });
    let out_opts = OutOptions {
        channel: src.clone(),
        endpoint: endpoint.clone(),
        window: args.window,
        duplicate_window: Duration::from_secs(120),
    };
    let counters = Arc::new(Counters::default());
    let t = Instant::now();
    let out_rate = {
        let c = counters.clone();
        timed_until(count, &counters.acked, t, move |stop| async move {
            outbound::run(&out_opts, &c, stop).await
        })
        .await?
    };
    feeder
        .join()
        .map_err(|_| BridgeError("bench: writer thread panicked".into()))??;
    drop(channel);
    let _ = atbus::Channel::unlink(&src);

    // in: a reader thread drains the channel.
    let dst = format!("/atbus-bridge-bench-dst-{tag}");
    let _ = atbus::Channel::unlink(&dst);
    let channel = atbus::Channel::create(&dst, 16 << 20, &atbus::Config::default())?;
    let mut reader = channel.reader()?;
    let drain = std::thread::spawn(move || -> atbus::Result<u64> {
        let mut buf = vec![0u8; 1 << 16];
        let mut n = 0;
        while n < count {
            reader.recv_timeout(&mut buf, Duration::from_secs(30))?;
            n += 1;
        }
        Ok(n)
    });
    let in_opts = InOptions {
        endpoint,
        durable: "bench".into(),
        channel: dst.clone(),
        window: args.window,
        duplicate_window: Duration::from_secs(120),
    };
    let counters = Arc::new(Counters::default());
    let t = Instant::now();
    let in_rate = {
        let c = counters.clone();
        timed_until(count, &counters.forwarded, t, move |stop| async move {
            inbound::run(&in_opts, &c, stop).await
        })
        .await?
    };
    drain
        .join()
        .map_err(|_| BridgeError("bench: reader thread panicked".into()))??;
    drop(channel);
    let _ = atbus::Channel::unlink(&dst);
    let _ = js.delete_stream(&name).await;
    Ok((out_rate, in_rate))
}

/// Runs a bridge until `counter` reaches `count`, then stops it; returns msgs/s.
async fn timed_until<F, Fut>(
    count: u64,
    counter: &std::sync::atomic::AtomicU64,
    start: Instant,
    body: F,
) -> Result<f64, BridgeError>
where
    F: FnOnce(watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = Result<(), BridgeError>>,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let bridge = body(stop_rx);
    tokio::pin!(bridge);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut elapsed = None;
    loop {
        tokio::select! {
            done = &mut bridge => {
                done?;
                break;
            }
            _ = tick.tick(), if elapsed.is_none() => {
                if counter.load(Ordering::Relaxed) >= count {
                    elapsed = Some(start.elapsed());
                    let _ = stop_tx.send(true);
                }
            }
        }
    }
    let elapsed = elapsed.ok_or_else(|| BridgeError("bench: the bridge stopped early".into()))?;
    Ok(count as f64 / elapsed.as_secs_f64())
}
