//! Process liveness, judged by existence in `/proc`, never by heartbeats.
//!
//! A process is identified by its pid and its start time (field 22 of `/proc/PID/stat`,
//! clock ticks since boot), so a pid reused by a new process is not mistaken for the old
//! one. A zombie (killed but not yet reaped) counts as dead: it will never write again.
//!
//! This needs the processes sharing a channel to share a pid namespace and see the same
//! `/proc` (in containers: run them in one pod, or with `--pid=host`/`--pid=container:X`).
//! Otherwise turn dead-writer detection off in [`crate::Config`] and rely on the timeout.

use std::io::Read;

/// What `/proc/PID/stat` says of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// One-letter state: R, S, D, T, Z, X, …
    pub state: u8,
    /// Start time in clock ticks after boot.
    pub start_time: u64,
}

/// Reads `/proc/PID/stat`; `None` when the process does not exist.
pub fn stat(pid: u32) -> Option<ProcStat> {
    if pid == 0 {
        return None;
    }
    let mut buf = [0u8; 1024];
    let mut file = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(_) => return None,
        }
    }
    parse_stat(&buf[..len])
}

/// Parses the text of `/proc/PID/stat`. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &[u8]) -> Option<ProcStat> {
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    // Field 3 is the state; field 22 the start time: 19 fields after the state.
    let state = *fields.next()?.as_bytes().first()?;
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

/// True when process `pid` exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    matches!(stat(pid), Some(s) if s.state != b'Z' && s.state != b'X')
}

/// True when process `pid` exists, is not a zombie, and started at `start_time` (compared
/// on the low 32 bits, as stored in the reader record).
pub fn is_same_alive(pid: u32, start_time_low: u32) -> bool {
    matches!(stat(pid), Some(s) if s.state != b'Z' && s.state != b'X'
        && s.start_time as u32 == start_time_low)
}

/// The calling process's pid and start time.
pub fn current() -> (u32, u64) {
    let pid = std::process::id();
    let start = stat(pid).map_or(0, |s| s.start_time);
    (pid, start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_spaces_and_parentheses() {
        let line = b"1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 \
                     20 0 1 0 987654 1000 10 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.state, b'S');
        assert_eq!(s.start_time, 987654);
    }

    #[test]
    fn garbage_does_not_parse() {
        assert_eq!(parse_stat(b"no parenthesis here"), None);
        assert_eq!(parse_stat(b"1 (x) S 1 2"), None);
    }

    #[test]
    fn this_process_is_alive_and_pid_zero_is_not() {
        let (pid, start) = current();
        assert!(is_alive(pid));
        assert!(is_same_alive(pid, start as u32));
        assert!(!is_same_alive(pid, start as u32 ^ 1));
        assert!(!is_alive(0));
    }
}
