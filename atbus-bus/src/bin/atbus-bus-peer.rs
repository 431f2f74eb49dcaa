//! A peer process for the bus's multi-process tests. Every role prints one line per
//! event on stdout (flushed), so tests synchronise on lines, never on sleeps.
//!
//! Roles:
//! * `join BUS NAME`: prints `ready`, waits for a stdin line, then joins NAME and prints
//!   `joined GEN` or `taken PID` (or `error MSG`); then holds the endpoint until stdin
//!   closes, and leaves.
//! * `hold BUS NAME`: joins NAME at once, prints `joined GEN INBOX`, holds until stdin
//!   closes, and leaves.
//! * `send BUS FROM TO ID COUNT`: joins as FROM, sends COUNT checkable messages (see
//!   tests/common/payload.rs) to TO with the blocking `send_to`, prints `done`, leaves.
//! * `serve BUS NAME`: joins NAME, prints `ready GEN`; for each request sends the
//!   requester a data message `note CORR` and then replies with the payload reversed;
//!   a data message `stop` makes it print `stopped` and leave.
//! * `crash BUS NAME POINT`: makes itself die by SIGKILL at step POINT (see
//!   `atbus_bus::fault::CrashPoint::ALL`, e.g. `join-claimed`), joins NAME and leaves;
//!   prints `survived` and exits 3 if it got through.
//! * `silent BUS NAME`: joins NAME, prints `ready GEN`; for each request prints
//!   `got CORR` and never replies (a test kills it).

use std::io::{BufRead, Write};

use atbus_bus::fault::{self, CrashPoint};
use atbus_bus::{Bus, Error, Kind};

#[path = "../../tests/common/payload.rs"]
#[allow(dead_code)] // `check` is for the tests
mod payload;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> &str {
        args.get(i)
            .map(String::as_str)
            .unwrap_or_else(|| fail(&format!("missing argument {i}")))
    };
    let num = |i: usize| -> u32 {
        arg(i)
            .parse()
            .unwrap_or_else(|_| fail(&format!("argument {i} is not a number")))
    };
    let bus = Bus::open(arg(1)).unwrap_or_else(|e| fail(&e.to_string()));
    match arg(0) {
        "join" => {
            say("ready");
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
            match bus.join(arg(2)) {
                Ok(endpoint) => {
                    say(&format!("joined {}", endpoint.generation()));
                    hold_until_stdin_closes();
                    drop(endpoint);
                }
                Err(Error::NameTaken { pid, .. }) => say(&format!("taken {pid}")),
                Err(e) => say(&format!("error {e}")),
            }
        }
        "hold" => {
            let endpoint = bus.join(arg(2)).unwrap_or_else(|e| fail(&e.to_string()));
            say(&format!(
                "joined {} {}",
                endpoint.generation(),
                endpoint.inbox()
            ));
            hold_until_stdin_closes();
            drop(endpoint);
        }
        "send" => {
            let mut endpoint = bus.join(arg(2)).unwrap_or_else(|e| fail(&e.to_string()));
            let (to, id, count) = (arg(3), num(4), num(5));
            for seq in 0..count {
                endpoint
                    .send_to(to, &payload::payload(id, seq))
                    .unwrap_or_else(|e| fail(&format!("send {seq}: {e}")));
            }
            say("done");
        }
        "crash" => {
            let Some((point, _)) = CrashPoint::ALL.iter().find(|(_, n)| *n == arg(3)) else {
                fail(&format!("unknown crash point {}", arg(3)));
            };
            fault::crash_at(*point);
            let endpoint = bus.join(arg(2)).unwrap_or_else(|e| fail(&e.to_string()));
            drop(endpoint);
            say("survived");
            std::process::exit(3);
        }
        "serve" | "silent" => {
            let silent = arg(0) == "silent";
            let mut endpoint = bus.join(arg(2)).unwrap_or_else(|e| fail(&e.to_string()));
            say(&format!("ready {}", endpoint.generation()));
            loop {
                let msg = endpoint.recv().unwrap_or_else(|e| fail(&e.to_string()));
                let env = msg.envelope;
                match env.kind {
                    Kind::Request if silent => say(&format!("got {}", env.correlation)),
                    Kind::Request => {
                        let note = format!("note {}", env.correlation);
                        endpoint
                            .send_to(env.from(), note.as_bytes())
                            .unwrap_or_else(|e| fail(&format!("note: {e}")));
                        let mut answer = msg.payload;
                        answer.reverse();
                        endpoint
                            .reply(&env, &answer)
                            .unwrap_or_else(|e| fail(&format!("reply: {e}")));
                    }
                    Kind::Data if msg.payload == b"stop" => {
                        say("stopped");
                        return;
                    }
                    _ => {}
                }
            }
        }
        other => fail(&format!("unknown role {other}")),
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn hold_until_stdin_closes() {
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut sink);
}

fn fail(msg: &str) -> ! {
    say(&format!("error {msg}"));
    eprintln!("atbus-bus-peer: {msg}");
    std::process::exit(1);
}
