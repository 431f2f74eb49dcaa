//! The NATS bridge end to end, against a real `nats-server -js` started by each test:
//! writer processes → channel → `atbus-bridge out` → JetStream → `atbus-bridge in` →
//! channel → reader, every byte and each writer's order checked, with bridges and the
//! server killed mid-stream.

use std::collections::HashSet;
use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use atbus::{Channel, Config, Error};
use atbus_tests::child::ChildGuard;
use atbus_tests::nats::NatsServer;
use atbus_tests::{check_payload, TestChannel};
use futures_util::StreamExt;
use nix::sys::signal::Signal;

mod common;
use common::{peer, signal};

/// How long any one wait of these tests may take before it fails.
const PATIENCE: Duration = Duration::from_secs(120);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn channel(ch: &TestChannel) -> Channel {
    Channel::create(&ch.name, 8 << 20, &Config::default()).unwrap()
}

/// Starts `atbus-bridge DIRECTION` on channel `ch` and stream `stream` (subject
/// `STREAM.msgs`), with `extra` arguments, counters as JSON at exit.
fn bridge(
    direction: &str,
    ch: &TestChannel,
    url: &str,
    stream: &str,
    window: usize,
    extra: &[&str],
) -> ChildGuard {
    let (window, subject) = (window.to_string(), format!("{stream}.msgs"));
    let mut args = vec![
        "bridge",
        direction,
        "--channel",
        &ch.name,
        "--nats",
        url,
        "--stream",
        stream,
        "--subject",
        &subject,
        "--window",
        &window,
        "--json",
    ];
    args.extend_from_slice(extra);
    peer(&args)
}

fn bridge_out(ch: &TestChannel, url: &str, stream: &str, window: usize) -> ChildGuard {
    bridge("out", ch, url, stream, window, &[])
}

fn bridge_in(
    ch: &TestChannel,
    url: &str,
    stream: &str,
    durable: &str,
    window: usize,
) -> ChildGuard {
    bridge("in", ch, url, stream, window, &["--durable", durable])
}

/// Starts `writers` writer processes, each sending `count` messages of 16..=`max` bytes.
fn writers(ch: &TestChannel, writers: u64, count: u64, max: usize) -> Vec<ChildGuard> {
    writers_from(ch, writers, 0, count, max)
}

/// As [`writers`], each writer's sequences starting at `first`.
fn writers_from(
    ch: &TestChannel,
    writers: u64,
    first: u64,
    count: u64,
    max: usize,
) -> Vec<ChildGuard> {
    (0..writers)
        .map(|id| {
            peer(&[
                "writer",
                &ch.name,
                &id.to_string(),
                &count.to_string(),
                "16",
                &max.to_string(),
                &first.to_string(),
            ])
        })
        .collect()
}

fn wait_ok(children: Vec<ChildGuard>) {
    for mut c in children {
        let status = c.wait().unwrap();
        assert!(status.success(), "a peer failed: {status:?}");
    }
}

/// Stops a bridge with SIGTERM; returns its exit status and its `--json` counters.
fn stop_bridge(mut bridge: ChildGuard) -> (ExitStatus, serde_json::Value) {
    signal(&bridge, Signal::SIGTERM);
    let status = bridge.wait().unwrap();
    (status, counters(bridge))
}

/// The `--json` counters an exited bridge printed.
fn counters(mut bridge: ChildGuard) -> serde_json::Value {
    let mut out = String::new();
    bridge
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    serde_json::from_str(out.trim()).unwrap_or(serde_json::Value::Null)
}

fn kill(mut child: ChildGuard) {
    signal(&child, Signal::SIGKILL);
    child.wait().unwrap();
}

/// Checks messages arriving per writer in order: each is the next of its writer, or —
/// when `duplicates` are allowed — one of that writer's already seen (counted).
struct Order {
    next: Vec<u64>,
    duplicates: u64,
    allow_duplicates: bool,
}

impl Order {
    fn new(writers: usize, allow_duplicates: bool) -> Order {
        Order {
            next: vec![0; writers],
            duplicates: 0,
            allow_duplicates,
        }
    }

    fn see(&mut self, msg: &[u8]) {
        let (id, seq) = check_payload(msg).unwrap();
        let next = &mut self.next[id as usize];
        if seq == *next {
            *next += 1;
        } else if seq < *next && self.allow_duplicates {
            self.duplicates += 1;
        } else {
            panic!("writer {id}: message {seq} arrived when {next} was due");
        }
    }

    fn complete(&self, per_writer: u64) -> bool {
        self.next.iter().all(|&n| n == per_writer)
    }
}

/// Reads channel `ch` until every writer's `per_writer` messages arrived, calling
/// `progress` with the number received so far after each message.
fn read_all(
    r: &mut atbus::Reader,
    order: &mut Order,
    per_writer: u64,
    mut progress: impl FnMut(u64),
) {
    let mut buf = vec![0u8; 1 << 20];
    let deadline = Instant::now() + PATIENCE;
    let mut n = 0;
    while !order.complete(per_writer) {
        match r.recv_timeout(&mut buf, Duration::from_millis(100)) {
            Ok(len) => {
                order.see(&buf[..len]);
                n += 1;
                progress(n);
            }
            Err(Error::Timeout) => assert!(
                Instant::now() < deadline,
                "stuck: per-writer progress {:?} of {per_writer}",
                order.next
            ),
            Err(e) => panic!("{e}"),
        }
    }
}

/// Every message of `stream`, in stream order: (Nats-Msg-Id, payload).
fn stream_contents(url: &str, stream: &str) -> Vec<(String, Vec<u8>)> {
    runtime().block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = jetstream::new(client);
        let mut s = js.get_stream(stream).await.unwrap();
        let total = s.info().await.unwrap().state.messages;
        let consumer = s
            .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
            .await
            .unwrap();
        let mut messages = consumer.messages().await.unwrap();
        let mut out = Vec::new();
        while (out.len() as u64) < total {
            let m = messages.next().await.unwrap().unwrap();
            let id = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_string())
                .unwrap_or_default();
            out.push((id, m.payload.to_vec()));
        }
        out
    })
}

/// Waits until `stream` holds at least `n` messages.
fn wait_stream_len(url: &str, stream: &str, n: u64) {
    runtime().block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = jetstream::new(client);
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(mut s) = js.get_stream(stream).await {
                if let Ok(info) = s.info().await {
                    if info.state.messages >= n {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "stream {stream} never reached {n} messages"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// The stream holds each writer's messages exactly once, in order, every byte intact.
fn assert_stream_exact(url: &str, stream: &str, writers: usize, per_writer: u64) {
    let contents = stream_contents(url, stream);
    assert_eq!(
        contents.len() as u64,
        writers as u64 * per_writer,
        "messages in the stream"
    );
    let ids: HashSet<&str> = contents.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), contents.len(), "every Nats-Msg-Id once");
    let mut order = Order::new(writers, false);
    for (_, payload) in &contents {
        order.see(payload);
    }
    assert!(order.complete(per_writer));
}

/// Writer processes → channel → `out` → stream `stream` → `in` → channel → this reader,
/// with neither bridge nor server disturbed: every message arrives once, in order, and
/// both bridges count them all, none re-sent. Returns the server for further checks.
fn round_trip(stream: &str, writer_count: u64, per_writer: u64, max: usize) -> NatsServer {
    let nats = NatsServer::start(stream);
    let (src, dst) = (TestChannel::new("br-src"), TestChannel::new("br-dst"));
    let (_a, b) = (channel(&src), channel(&dst));
    let mut reader = b.reader().unwrap();
    let out = bridge_out(&src, &nats.url(), stream, 256);
    let inb = bridge_in(&dst, &nats.url(), stream, "rt", 256);
    let w = writers(&src, writer_count, per_writer, max);
    let mut order = Order::new(writer_count as usize, false);
    read_all(&mut reader, &mut order, per_writer, |_| {});
    wait_ok(w);
    let total = writer_count * per_writer;
    for bridge in [out, inb] {
        let (status, json) = stop_bridge(bridge);
        assert!(status.success(), "{status:?}");
        assert_eq!(json["forwarded"], total, "{json}");
        assert_eq!(json["acked"], total, "{json}");
        assert_eq!(json["resent"], 0, "{json}");
    }
    assert!(matches!(reader.try_recv_vec(), Err(Error::Empty)));
    nats
}

#[test]
fn out_and_in_carry_three_writer_processes_every_byte_in_order() {
    let nats = round_trip("THREE", 3, 20_000, 2000);
    assert_stream_exact(&nats.url(), "THREE", 3, 20_000);
}

#[test]
fn a_round_trip_of_100000_mixed_size_messages() {
    round_trip("ROUNDTRIP", 2, 50_000, 8000);
}

#[test]
fn out_bridge_killed_mid_stream_loses_nothing_and_stores_nothing_twice() {
    let nats = NatsServer::start("outkill");
    let src = TestChannel::new("br-outkill");
    let a = channel(&src);
    let w = writers(&src, 3, 20_000, 1000);
    let out = bridge_out(&src, &nats.url(), "OUTKILL", 256);
    wait_stream_len(&nats.url(), "OUTKILL", 15_000);
    kill(out);
    // The successor takes the reader role over and resumes at the last commit.
    let out = bridge_out(&src, &nats.url(), "OUTKILL", 256);
    wait_ok(w);
    wait_stream_len(&nats.url(), "OUTKILL", 60_000);
    let (status, json) = stop_bridge(out);
    assert!(status.success(), "{status:?}");
    assert_stream_exact(&nats.url(), "OUTKILL", 3, 20_000);
    // The successor found what the first one had published and not committed (at most
    // its window plus one commit batch) stored already: dropped by JetStream, or
    // skipped at start-up.
    assert_eq!(json["forwarded"], json["acked"], "{json}");
    let bound = 256 + u64::from(atbus_bridge::outbound::COMMIT_EVERY);
    assert!(
        json["duplicates_dropped"].as_u64().unwrap() <= bound,
        "{json}"
    );
    let s = a.stats();
    assert_eq!((s.crc_failures, s.bad_blocks), (0, 0), "{s:?}");
}

/// Waits up to `limit` for `child` to exit; `None` if it still runs.
fn exits_within(child: &mut ChildGuard, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    let mut backoff = atbus::Backoff::new();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        backoff.snooze();
    }
}

#[test]
fn out_bridge_stops_on_sigterm_while_nats_is_down_and_its_successor_stores_everything_once() {
    let mut nats = NatsServer::start("downstop");
    let src = TestChannel::new("br-downstop");
    let a = channel(&src);
    let w = writers(&src, 3, 20_000, 1000);
    let mut out = bridge_out(&src, &nats.url(), "DOWNSTOP", 256);
    wait_stream_len(&nats.url(), "DOWNSTOP", 5_000);
    // The writers go on; the bridge's publishes now fail and it retries for ever.
    nats.stop();
    signal(&out, Signal::SIGTERM);
    let asked = Instant::now();
    // STOP_GRACE (500 ms) plus a descheduled process's slack; before the fix: never.
    let status = exits_within(&mut out, Duration::from_secs(10))
        .expect("the bridge ignored SIGTERM while the NATS server was down");
    eprintln!("stopped {:?} after SIGTERM", asked.elapsed());
    assert!(status.success(), "a stop exits 0: {status:?}");
    let json = counters(out);
    assert!(json["acked"].as_u64().unwrap() < 60_000, "{json}");
    // The server comes back; a successor resumes at the last commit and every message
    // the first one did not get acknowledged is still in the ring.
    nats.restart();
    let out = bridge_out(&src, &nats.url(), "DOWNSTOP", 256);
    wait_ok(w);
    wait_stream_len(&nats.url(), "DOWNSTOP", 60_000);
    let (status, json) = stop_bridge(out);
    assert!(status.success(), "{status:?}");
    assert_stream_exact(&nats.url(), "DOWNSTOP", 3, 20_000);
    assert_eq!(json["forwarded"], json["acked"], "{json}");
    let s = a.stats();
    assert_eq!((s.crc_failures, s.bad_blocks), (0, 0), "{s:?}");
}

#[test]
fn in_bridge_killed_mid_stream_loses_nothing_and_counts_its_duplicates() {
    const WINDOW: u64 = 64;
    let nats = NatsServer::start("inkill");
    let (src, dst) = (
        TestChannel::new("br-inkill-src"),
        TestChannel::new("br-inkill-dst"),
    );
    let (_a, b) = (channel(&src), channel(&dst));
    let out = bridge_out(&src, &nats.url(), "INKILL", 256);
    let w = writers(&src, 3, 10_000, 1000);
    let mut reader = b.reader().unwrap();
    let mut inb = Some(bridge_in(
        &dst,
        &nats.url(),
        "INKILL",
        "inkill",
        WINDOW as usize,
    ));
    let mut order = Order::new(3, true);
    let url = nats.url();
    read_all(&mut reader, &mut order, 10_000, |n| {
        if n == 8_000 {
            kill(inb.take().unwrap());
            inb = Some(bridge_in(&dst, &url, "INKILL", "inkill", WINDOW as usize));
        }
    });
    wait_ok(w);
    let (status, json) = stop_bridge(inb.take().unwrap());
    assert!(status.success(), "{status:?}");
    stop_bridge(out);
    let possible = json["possible_duplicates"].as_u64().unwrap();
    assert!(
        order.duplicates <= possible && possible <= WINDOW,
        "duplicates {} must be counted (possible {possible}) and within the window {WINDOW}",
        order.duplicates
    );
}

/// Every consumer of `stream`: (name, description, creation time).
fn consumers(url: &str, stream: &str) -> Vec<(String, Option<String>, String)> {
    runtime().block_on(async {
        let js = jetstream::new(async_nats::connect(url).await.unwrap());
        let s = js.get_stream(stream).await.unwrap();
        let mut list = s.consumers();
        let mut out = Vec::new();
        while let Some(info) = list.next().await {
            let info = info.unwrap();
            out.push((info.name, info.config.description, info.created.to_string()));
        }
        out.sort();
        out
    })
}

#[test]
fn in_bridges_with_durables_orders_and_orders_r1_keep_to_their_own_consumers() {
    // `orders-r1` is the name of durable `orders`' generation 1 and of durable
    // `orders-r1`'s generation 0: names alone cannot tell whose a consumer is.
    let nats = NatsServer::start("owners");
    let url = nats.url();
    let src = TestChannel::new("br-own-src");
    let (dst_a, dst_b) = (TestChannel::new("br-own-a"), TestChannel::new("br-own-b"));
    let (_s, a, b) = (channel(&src), channel(&dst_a), channel(&dst_b));
    let (mut reader_a, mut reader_b) = (a.reader().unwrap(), b.reader().unwrap());
    let (mut order_a, mut order_b) = (Order::new(2, false), Order::new(2, false));
    let out = bridge_out(&src, &url, "OWNERS", 256);
    wait_ok(writers(&src, 2, 2_000, 500));
    wait_stream_len(&url, "OWNERS", 4_000);

    // `orders-r1` first: it makes consumer orders-r1 and delivers everything.
    let in_b = bridge_in(&dst_b, &url, "OWNERS", "orders-r1", 64);
    read_all(&mut reader_b, &mut order_b, 2_000, |_| {});
    let b_consumer = consumers(&url, "OWNERS");
    assert_eq!(b_consumer.len(), 1, "{b_consumer:?}");
    assert_eq!(b_consumer[0].0, "orders-r1");

    // Then `orders`: it must not take orders-r1 for its own generation 1 (it would
    // start where that one stands, at the end, and deliver nothing) nor delete it.
    let in_a = bridge_in(&dst_a, &url, "OWNERS", "orders", 64);
    read_all(&mut reader_a, &mut order_a, 2_000, |_| {});
    let both = consumers(&url, "OWNERS");
    assert!(both.contains(&b_consumer[0]), "{both:?}");
    assert_eq!(both.len(), 2, "{both:?}");

    // A clean stop moves `orders` to a new generation: not onto orders-r1.
    let (status, json_a) = stop_bridge(in_a);
    assert!(status.success(), "{status:?}");
    assert_eq!(json_a["forwarded"], 4_000, "{json_a}");
    let after = consumers(&url, "OWNERS");
    assert!(after.contains(&b_consumer[0]), "{after:?}");

    // More messages: `orders-r1`, still running on its own consumer, gets them, and
    // `orders`, started again, resumes after what it wrote (Order: nothing twice).
    wait_ok(writers_from(&src, 2, 2_000, 1_000, 500));
    read_all(&mut reader_b, &mut order_b, 3_000, |_| {});
    let in_a = bridge_in(&dst_a, &url, "OWNERS", "orders", 64);
    read_all(&mut reader_a, &mut order_a, 3_000, |_| {});
    for bridge in [in_a, in_b] {
        let (status, json) = stop_bridge(bridge);
        assert!(status.success(), "{status:?}");
        assert_eq!(json["possible_duplicates"], 0, "{json}");
    }
    stop_bridge(out);
    assert!(matches!(reader_a.try_recv_vec(), Err(Error::Empty)));
    assert!(matches!(reader_b.try_recv_vec(), Err(Error::Empty)));
    // Each durable's consumers say whose they are.
    for (name, description, _) in consumers(&url, "OWNERS") {
        let owner = if name.starts_with("orders-r1") {
            "orders-r1"
        } else {
            "orders"
        };
        let description = description.unwrap_or_default();
        assert!(
            description.starts_with(&format!("atbus-bridge in: durable {owner} ")),
            "{name}: {description}"
        );
    }
}

#[test]
fn nats_server_stopped_and_restarted_mid_stream_loses_nothing() {
    let mut nats = NatsServer::start("restart");
    let (src, dst) = (TestChannel::new("br-rs-src"), TestChannel::new("br-rs-dst"));
    let (_a, b) = (channel(&src), channel(&dst));
    let mut reader = b.reader().unwrap();
    let out = bridge_out(&src, &nats.url(), "RESTART", 256);
    let inb = bridge_in(&dst, &nats.url(), "RESTART", "restart", 256);
    let w = writers(&src, 3, 15_000, 1000);
    let mut order = Order::new(3, false);
    read_all(&mut reader, &mut order, 15_000, |n| {
        if n == 10_000 {
            nats.restart(); // SIGTERM, then start again on the same port and store
        }
    });
    wait_ok(w);
    let (status, out_json) = stop_bridge(out);
    assert!(status.success(), "{status:?}");
    let (status, in_json) = stop_bridge(inb);
    assert!(status.success(), "{status:?}");
    assert_stream_exact(&nats.url(), "RESTART", 3, 15_000);
    assert!(matches!(reader.try_recv_vec(), Err(Error::Empty)));
    eprintln!("out {out_json}\nin {in_json}");
}

#[test]
fn in_bridge_waits_while_the_channel_is_full_and_drops_nothing() {
    let nats = NatsServer::start("full");
    let (src, dst) = (
        TestChannel::new("br-full-src"),
        TestChannel::new("br-full-dst"),
    );
    let _a = channel(&src);
    // 64 KiB: the bridge fills it long before the reader starts.
    let b = Channel::create(&dst.name, 64 << 10, &Config::default()).unwrap();
    let out = bridge_out(&src, &nats.url(), "FULL", 256);
    let inb = bridge_in(&dst, &nats.url(), "FULL", "full", 64);
    wait_ok(writers(&src, 1, 5_000, 1000));
    wait_stream_len(&nats.url(), "FULL", 5_000);
    let deadline = Instant::now() + PATIENCE;
    while b.stats().full == 0 {
        assert!(
            Instant::now() < deadline,
            "the bridge never found the channel full"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut reader = b.reader().unwrap();
    let mut order = Order::new(1, false);
    read_all(&mut reader, &mut order, 5_000, |_| {});
    let (status, json) = stop_bridge(inb);
    assert!(status.success(), "{status:?}");
    assert_eq!(json["forwarded"], 5_000, "{json}");
    stop_bridge(out);
}

/// Starts `atbus-bridge out` (without `--json`) with its stderr piped: the child and the
/// lines it prints there.
fn bridge_out_with_stderr(
    ch: &TestChannel,
    url: &str,
    stream: &str,
) -> (
    ChildGuard,
    std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
) {
    use std::io::BufRead;
    let subject = format!("{}.msgs", stream.to_lowercase());
    let mut out = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_atbus-peer"))
            .args(["bridge", "out", "--channel", &ch.name, "--nats", url])
            .args(["--stream", stream, "--subject", &subject])
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )
    .unwrap();
    let lines = std::io::BufReader::new(out.stderr.take().unwrap()).lines();
    (out, lines)
}

#[test]
fn a_bridge_started_before_jetstream_answers_asks_again_and_then_forwards_everything() {
    // A server that serves no JetStream API answers no stream lookup, as one still
    // starting JetStream (or too busy to answer in time) does: the bridge says so and
    // asks again, and once the server is back with JetStream it forwards every message.
    let mut nats = NatsServer::start_without_jetstream("late-js");
    let src = TestChannel::new("br-late-js");
    let _a = channel(&src);
    let (mut out, mut lines) = bridge_out_with_stderr(&src, &nats.url(), "LATE");
    let first = lines.next().expect("the bridge exited").unwrap();
    assert!(
        first.starts_with("atbus-bridge: JetStream did not answer"),
        "{first}"
    );
    nats.restart_with_jetstream();
    wait_ok(writers(&src, 2, 1_000, 300));
    wait_stream_len(&nats.url(), "LATE", 2_000);
    signal(&out, Signal::SIGINT);
    // What it printed while it asked, then its counters at exit.
    let last = lines
        .map(|l| l.unwrap())
        .find(|l| !l.starts_with("atbus-bridge: JetStream did not answer"))
        .expect("no counter line at exit");
    assert!(
        last.starts_with("atbus-bridge out: stopped: forwarded 2000 "),
        "{last}"
    );
    assert!(out.wait().unwrap().success());
    assert_stream_exact(&nats.url(), "LATE", 2, 1_000);
}

#[test]
fn a_bridge_prints_its_counters_on_sigusr1_and_at_exit() {
    let nats = NatsServer::start("usr1");
    let src = TestChannel::new("br-usr1");
    let _a = channel(&src);
    wait_ok(writers(&src, 1, 1_000, 100));
    let (mut out, mut lines) = bridge_out_with_stderr(&src, &nats.url(), "USR1");
    wait_stream_len(&nats.url(), "USR1", 1_000);
    signal(&out, Signal::SIGUSR1);
    let line = lines.next().unwrap().unwrap();
    assert!(
        line.starts_with("atbus-bridge out: forwarded 1000 "),
        "{line}"
    );
    signal(&out, Signal::SIGINT);
    let last = lines.next().unwrap().unwrap();
    assert!(
        last.starts_with("atbus-bridge out: stopped: forwarded 1000 "),
        "{last}"
    );
    assert!(last.contains("acked 1000"), "{last}");
    assert!(out.wait().unwrap().success());
}

/// Runs the bridge with `args`; returns its exit code and stderr.
fn bridge_fails(args: &[&str]) -> (i32, String) {
    let mut all = vec!["bridge"];
    all.extend_from_slice(args);
    let mut child = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_atbus-peer"))
            .args(&all)
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )
    .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (child.wait().unwrap().code().unwrap_or(-1), err)
}

#[test]
fn bridge_errors_exit_2_with_one_line_saying_what_to_do() {
    let nats = NatsServer::start("errors");
    let ch = TestChannel::new("br-err");
    let _c = channel(&ch);

    // No server at that port.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("nats://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let (code, err) = bridge_fails(&[
        "out",
        "--channel",
        &ch.name,
        "--nats",
        &dead,
        "--stream",
        "E",
        "--subject",
        "e.x",
    ]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot reach the NATS server"), "{err}");

    // No such channel.
    let (code, err) = bridge_fails(&[
        "out",
        "--channel",
        "/atbus-no-such-channel",
        "--nats",
        &nats.url(),
        "--stream",
        "E",
        "--subject",
        "e.x",
    ]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("does not exist"), "{err}");

    // A stream that exists for other subjects.
    runtime().block_on(async {
        let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
        js.create_stream(jetstream::stream::Config {
            name: "TAKEN".into(),
            subjects: vec!["taken.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    });
    let url = nats.url();
    for direction in ["out", "in"] {
        let mut args = vec![
            direction,
            "--channel",
            &ch.name,
            "--nats",
            &url,
            "--stream",
            "TAKEN",
            "--subject",
            "other.x",
        ];
        if direction == "in" {
            args.extend(["--durable", "d"]);
        }
        let (code, err) = bridge_fails(&args);
        assert_eq!(code, 2, "{direction}: {err}");
        assert_eq!(err.lines().count(), 1, "{direction}: {err}");
        assert!(err.contains("stream config conflict"), "{direction}: {err}");
    }
}
