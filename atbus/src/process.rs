//! Process liveness, judged by existence, never by heartbeats.
//!
//! Whether a pid exists is asked of the kernel with `kill(pid, 0)`, which tells "no such
//! process" (`ESRCH`) from "exists, but you may not signal it" (`EPERM`: a process of
//! another user). `/proc/PID/stat` then adds what `kill` cannot: a zombie (killed but not
//! yet reaped) counts as dead, and the start time (field 22, clock ticks since boot)
//! tells a pid reused by a new process from the old one. A process whose main thread
//! ended with `pthread_exit` while other threads run also shows state `Z`: it is a
//! zombie only when it has no other thread left (field 20, `num_threads`). A recorded
//! start time of 0 means the recorder could not read its own entry: unknown, not
//! compared. When `/proc/PID/stat` cannot be
//! read (`hidepid`, another user's process, `/proc` of another pid namespace) those two
//! checks are skipped: a process that cannot be judged is alive. A live process must
//! never be judged dead (its reader role or its blocks would be taken from under it); a
//! dead one judged alive only costs the timeout.
//!
//! This needs the processes sharing a channel to share a pid namespace (in containers:
//! run them in one pod, or with `--pid=host`/`--pid=container:X`); a pid from another
//! namespace names some other process here, or none. Otherwise turn dead-writer
//! detection off in [`crate::Config`] and rely on the timeout.

use std::io::Read;

/// What `/proc/PID/stat` says of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// One-letter state: R, S, D, T, Z, X, …
    pub state: u8,
    /// Threads in the process (field 20).
    pub num_threads: u64,
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
    // Field 3 is the state; field 20 the thread count, 17 fields after the state; field
    // 22 the start time, 2 after that.
    let state = *fields.next()?.as_bytes().first()?;
    let num_threads = fields.nth(16)?.parse().ok()?;
    let start_time = fields.nth(1)?.parse().ok()?;
    Some(ProcStat {
        state,
        num_threads,
        start_time,
    })
}

/// Whether a pid names a process, as far as this process can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existence {
    /// It exists (we may or may not be allowed to signal it).
    Exists,
    /// No such process.
    Gone,
    /// The kernel would not say: treated as existing.
    Unknown,
}

/// Classifies the result of `kill(pid, 0)`: success or `EPERM` (a process we may not
/// signal, e.g. another user's) means it exists, `ESRCH` that it does not; anything else
/// means we cannot tell.
pub fn classify_kill(result: nix::Result<()>) -> Existence {
    match result {
        Ok(()) | Err(nix::errno::Errno::EPERM) => Existence::Exists,
        Err(nix::errno::Errno::ESRCH) => Existence::Gone,
        Err(_) => Existence::Unknown,
    }
}

/// Whether process `pid` exists, by `kill(pid, 0)` (no signal is sent). Pid 0 and pids
/// above `i32::MAX` (which `kill` would take for process groups) name no process.
pub fn exists(pid: u32) -> Existence {
    let Ok(raw) = i32::try_from(pid) else {
        return Existence::Gone;
    };
    if raw == 0 {
        return Existence::Gone;
    }
    classify_kill(nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(raw),
        None,
    ))
}

/// The verdict on a process from what `kill` said and what `/proc/PID/stat` said (`None`
/// when it could not be read), optionally comparing its start time's low 32 bits.
/// Dead only on evidence: `Gone`, a zombie with no thread left running, or (when /proc
/// is readable) another start time. Everything else, including "cannot tell", is alive.
/// A recorded start time of 0 is "unknown" (the recorder could not read its own `/proc`
/// entry) and is not compared.
pub fn judge(existence: Existence, stat: Option<ProcStat>, start_time_low: Option<u32>) -> bool {
    if existence == Existence::Gone {
        return false;
    }
    match stat {
        Some(s) => {
            // `Z` with other threads: the main thread called pthread_exit, the rest run.
            let zombie = matches!(s.state, b'Z' | b'X') && s.num_threads <= 1;
            let other_process =
                matches!(start_time_low, Some(low) if low != 0 && s.start_time as u32 != low);
            !zombie && !other_process
        }
        None => true,
    }
}

fn verdict(pid: u32, start_time_low: Option<u32>) -> bool {
    let existence = exists(pid);
    if existence == Existence::Gone {
        return false;
    }
    match stat(pid) {
        Some(s) => judge(existence, Some(s), start_time_low),
        // Unreadable: hidden from us, or gone since `kill` looked. Ask `kill` again so a
        // process that just exited is not kept alive until the next look.
        None => judge(exists(pid), None, start_time_low),
    }
}

/// True unless process `pid` is known to be dead: no such process, or a zombie with no
/// thread left. A process of another user, or one `/proc` hides from us, is alive.
pub fn is_alive(pid: u32) -> bool {
    verdict(pid, None)
}

/// True unless process `pid` is known to be dead or to be another process than the one
/// that started at `start_time` (compared on the low 32 bits, as stored in the reader
/// record). The start time can only be compared where `/proc/PID/stat` is readable;
/// elsewhere an existing pid counts as the same process, and so does any existing pid
/// when `start_time_low` is 0 (the recorder could not read its own start time).
pub fn is_same_alive(pid: u32, start_time_low: u32) -> bool {
    verdict(pid, Some(start_time_low))
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
        assert_eq!(s.num_threads, 1);
        assert_eq!(s.start_time, 987654);
    }

    #[test]
    fn garbage_does_not_parse() {
        assert_eq!(parse_stat(b"no parenthesis here"), None);
        assert_eq!(parse_stat(b"1 (x) S 1 2"), None);
    }

    #[test]
    fn kill_results_are_classified_without_taking_eperm_for_gone() {
        use nix::errno::Errno;
        assert_eq!(classify_kill(Ok(())), Existence::Exists);
        assert_eq!(classify_kill(Err(Errno::EPERM)), Existence::Exists);
        assert_eq!(classify_kill(Err(Errno::ESRCH)), Existence::Gone);
        assert_eq!(classify_kill(Err(Errno::EINVAL)), Existence::Unknown);
    }

    #[test]
    fn only_evidence_of_death_makes_a_process_dead() {
        let running = |start| ProcStat {
            state: b'S',
            num_threads: 1,
            start_time: start,
        };
        let zombie = ProcStat {
            state: b'Z',
            num_threads: 1,
            start_time: 7,
        };
        // The main thread called pthread_exit; another thread runs on.
        let main_thread_gone = ProcStat {
            state: b'Z',
            num_threads: 2,
            start_time: 7,
        };
        // Another user's process under hidepid: kill says EPERM, /proc says nothing.
        assert!(judge(Existence::Exists, None, None));
        assert!(judge(Existence::Exists, None, Some(7)));
        assert!(judge(Existence::Unknown, None, Some(7)));
        // Evidence: no such process, a zombie, or another start time (pid reuse).
        assert!(!judge(Existence::Gone, None, None));
        assert!(!judge(Existence::Gone, Some(running(7)), Some(7)));
        assert!(!judge(Existence::Exists, Some(zombie), None));
        assert!(!judge(Existence::Exists, Some(running(8)), Some(7)));
        assert!(judge(Existence::Exists, Some(running(7)), Some(7)));
        assert!(judge(
            Existence::Exists,
            Some(running(1 << 32 | 7)),
            Some(7)
        ));
        // A zombie main thread with live threads is a live process.
        assert!(judge(Existence::Exists, Some(main_thread_gone), Some(7)));
        // A start time recorded as 0 is unknown: an existing pid is alive.
        assert!(judge(Existence::Exists, Some(running(8)), Some(0)));
        assert!(!judge(Existence::Gone, Some(running(8)), Some(0)));
    }

    #[test]
    fn a_process_whose_main_thread_exited_while_others_run_is_alive() {
        // A child whose main thread exits (as with pthread_exit) while a second thread
        // waits on a pipe: /proc shows it as `Z` with two threads, and it is alive.
        let mut fds = [0; 2];
        // SAFETY: `fds` is two writable ints.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        extern "C" fn wait_on_pipe(fd: *mut libc::c_void) -> *mut libc::c_void {
            let mut byte = 0u8;
            // SAFETY: reads one byte into our stack from a descriptor the child owns;
            // returns when the parent closes its end, or on error.
            unsafe { libc::read(fd as usize as libc::c_int, (&mut byte as *mut u8).cast(), 1) };
            // SAFETY: ends the process from its last thread.
            unsafe { libc::_exit(0) }
        }
        // SAFETY: fork in a test process; the child calls only pthread_create and system
        // calls, and never returns into the test.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: the child. The thread gets the pipe's read end; no allocation.
            unsafe {
                libc::close(fds[1]);
                let mut thread: libc::pthread_t = std::mem::zeroed();
                let arg = fds[0] as usize as *mut libc::c_void;
                if libc::pthread_create(&mut thread, std::ptr::null(), wait_on_pipe, arg) != 0 {
                    libc::_exit(3);
                }
                // What pthread_exit does in the end, without unwinding through the test
                // harness: the exit system call ends this thread only (exit_group would
                // end the process). This thread leads the child's thread group.
                libc::syscall(libc::SYS_exit, 0);
                libc::_exit(4);
            }
        }
        // SAFETY: the parent closes the read end it does not use.
        unsafe { libc::close(fds[0]) };
        let pid = pid as u32;
        // Kills and reaps the child when the test ends, pass or fail.
        struct Reap(u32, libc::c_int);
        impl Drop for Reap {
            fn drop(&mut self) {
                // SAFETY: our own child and our own pipe end.
                unsafe {
                    libc::close(self.1);
                    libc::kill(self.0 as i32, libc::SIGKILL);
                    libc::waitpid(self.0 as i32, std::ptr::null_mut(), 0);
                }
            }
        }
        let _reap = Reap(pid, fds[1]);
        // Wait (bounded) until the main thread has exited: state Z, two threads.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let s = loop {
            let s = stat(pid).expect("the child exists");
            if s.state == b'Z' && s.num_threads == 2 {
                break s;
            }
            assert!(std::time::Instant::now() < deadline, "child stat: {s:?}");
            std::thread::yield_now();
        };
        assert!(is_alive(pid), "{s:?}");
        assert!(is_same_alive(pid, s.start_time as u32), "{s:?}");
    }

    #[test]
    fn pids_that_name_no_process_or_a_process_group_are_gone() {
        for pid in [0, u32::MAX, 1 << 31, i32::MAX as u32 + 1] {
            assert_eq!(exists(pid), Existence::Gone, "{pid}");
            assert!(!is_alive(pid), "{pid}");
        }
        // The largest pid Linux ever hands out is 2^22: past it, ESRCH.
        assert_eq!(exists(i32::MAX as u32), Existence::Gone);
    }

    #[test]
    fn a_process_of_another_user_is_alive_and_a_reaped_one_is_not() {
        use std::os::unix::process::CommandExt;
        // A process of uid nobody, waiting on a pipe until we close it.
        let mut child = std::process::Command::new("cat")
            .uid(65534)
            .gid(65534)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn cat as uid 65534 (the tests run as root)");
        let pid = child.id();
        let start = stat(pid).map_or(0, |s| s.start_time);
        assert!(is_alive(pid));
        assert!(is_same_alive(pid, start as u32));
        assert!(!is_same_alive(pid, start as u32 ^ 1));
        drop(child.stdin.take());
        child.wait().unwrap();
        assert!(!is_alive(pid));
        assert!(!is_same_alive(pid, start as u32));
    }

    #[test]
    fn an_existing_process_whose_start_time_was_recorded_as_zero_is_alive() {
        let (pid, _) = current();
        assert!(is_same_alive(pid, 0));
        assert!(!is_same_alive(0, 0));
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
