//! The doorbell FIFO: who may open it, whose it is, what a reader that lost its role may
//! do with it, and the descriptors writers keep.
#![cfg(not(loom))]

use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;

use atbus::{Arm, Channel, Config, Error};

mod common;
use common::Named;

/// The tests here count descriptors and FIFO opens of the whole process: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether `fd` becomes readable within `ms` milliseconds.
fn readable_within(fd: i32, ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd on our stack.
    unsafe { libc::poll(&mut pfd, 1, ms) == 1 }
}

/// Points the reader-role record of channel `name` at a process that cannot exist.
fn orphan_reader_role(name: &str) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm{name}"))
        .unwrap();
    let offset = std::mem::offset_of!(atbus::layout::Header, reader)
        + std::mem::offset_of!(atbus::layout::ReaderRecord, owner);
    file.write_all_at(&(i32::MAX as u64).to_le_bytes(), offset as u64)
        .unwrap();
}

fn inode(path: &std::path::Path) -> u64 {
    std::fs::symlink_metadata(path).unwrap().ino()
}

#[test]
fn a_user_who_may_only_read_the_channel_cannot_open_its_doorbell() {
    let _serial = serial();
    for (mode, fifo_mode) in [(0o600, 0o600), (0o640, 0o600), (0o644, 0o600)] {
        let name = Named::new("bell-mode");
        let config = Config::builder()
            .mode(mode)
            .allow_shared_mode(mode != 0o600)
            .build()
            .unwrap();
        let ch = Channel::create(&name.0, 1 << 16, &config).unwrap();
        let mut r = ch.reader().unwrap();
        r.readiness_fd().unwrap();
        let path = atbus::doorbell::path(&name.0);
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_fifo());
        assert_eq!(
            meta.permissions().mode() & 0o777,
            fifo_mode,
            "channel {mode:o}"
        );
        // uid nobody may read the channel (0644) but must not read (or ring) the bell.
        let out = std::process::Command::new("sh")
            .args(["-c", "exec 3<\"$0\" && echo opened", path.to_str().unwrap()])
            .uid(65534)
            .gid(65534)
            .output()
            .expect("run sh as uid 65534 (the tests run as root)");
        assert!(!out.status.success(), "channel {mode:o}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
            "{out:?}"
        );
        // The armed reader still gets its wake-up.
        assert_eq!(r.arm().unwrap(), Arm::Armed);
        ch.writer().send(b"ding").unwrap();
        let fd = r.readiness_fd().unwrap().as_raw_fd();
        assert!(readable_within(fd, 5000));
        assert_eq!(r.try_recv_vec().unwrap(), b"ding");
    }
}

#[test]
fn those_who_may_write_the_channel_may_open_its_doorbell() {
    let _serial = serial();
    for (mode, fifo_mode) in [(0o620, 0o660), (0o662, 0o666), (0o660, 0o660)] {
        let name = Named::new("bell-shared");
        let config = Config::builder()
            .mode(mode)
            .allow_shared_mode(true)
            .build()
            .unwrap();
        let ch = Channel::create(&name.0, 1 << 16, &config).unwrap();
        let mut r = ch.reader().unwrap();
        r.readiness_fd().unwrap();
        let meta = std::fs::symlink_metadata(atbus::doorbell::path(&name.0)).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o777,
            fifo_mode,
            "channel {mode:o}"
        );
    }
}

/// A forked child, killed and reaped when dropped (pass or fail).
struct Child(libc::pid_t);

impl Child {
    /// Waits for the child's exit code.
    fn exit_code(self) -> i32 {
        let mut status = 0;
        // SAFETY: waits for our own child.
        assert_eq!(unsafe { libc::waitpid(self.0, &mut status, 0) }, self.0);
        std::mem::forget(self);
        assert!(libc::WIFEXITED(status), "child status {status:#x}");
        libc::WEXITSTATUS(status)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // SAFETY: our own child: kill and reap it.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), 0);
        }
    }
}

/// Forks a child that runs `f` and exits with its code, never returning into the
/// harness.
fn fork_child(f: impl FnOnce() -> i32) -> Child {
    // SAFETY: fork in a test; the child runs `f` (atbus calls and system calls on memory
    // it owns) and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = f();
        // SAFETY: ends the child without running the harness's exit handlers.
        unsafe { libc::_exit(code) };
    }
    Child(pid)
}

#[test]
fn a_reader_that_lost_its_role_leaves_the_doorbell_to_the_new_reader() {
    let _serial = serial();
    let name = Named::new("bell-stale");
    let ch = Channel::create(&name.0, 1 << 16, &Config::default()).unwrap();
    let mut stale = ch.reader().unwrap();
    orphan_reader_role(&name.0);
    // The current reader: another process, which takes the role over, arms its doorbell,
    // says so on a pipe, and waits (at most 10 s) to be rung with the message.
    let mut pipe = [0; 2];
    // SAFETY: `pipe` is two writable ints.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    let child_name = name.0.clone();
    let current = fork_child(move || {
        let Ok(mut r) = Channel::open(&child_name).and_then(|c| c.reader()) else {
            return 2;
        };
        if r.arm().ok() != Some(Arm::Armed) {
            return 3;
        }
        // SAFETY: one byte from our stack to the pipe's write end.
        unsafe { libc::write(pipe[1], b"r".as_ptr().cast(), 1) };
        let Ok(fd) = r.readiness_fd().map(|fd| fd.as_raw_fd()) else {
            return 4;
        };
        if !readable_within(fd, 10_000) {
            return 5;
        }
        match r.try_recv_vec() {
            Ok(m) if m == b"to the current reader" => 0,
            _ => 6,
        }
    });
    let mut byte = 0u8;
    // SAFETY: reads one byte into our stack from the pipe's read end.
    let got = unsafe { libc::read(pipe[0], (&mut byte as *mut u8).cast(), 1) };
    assert_eq!(got, 1, "the current reader did not start");
    let path = atbus::doorbell::path(&name.0);
    let fifo = inode(&path);
    // The stale handle may not create, replace or arm the doorbell.
    assert!(matches!(
        stale.readiness_fd(),
        Err(Error::ReaderRoleLost { .. })
    ));
    assert!(matches!(stale.arm(), Err(Error::ReaderRoleLost { .. })));
    assert_eq!(inode(&path), fifo, "the stale reader replaced the FIFO");
    drop(stale);
    assert_eq!(inode(&path), fifo, "the stale reader removed the FIFO");
    // Writers still reach the current reader.
    ch.writer().send(b"to the current reader").unwrap();
    assert_eq!(current.exit_code(), 0, "the current reader was not woken");
    // SAFETY: closing our pipe's ends.
    unsafe {
        libc::close(pipe[0]);
        libc::close(pipe[1]);
    }
}

#[test]
fn a_reader_of_an_unlinked_channel_leaves_the_new_channels_doorbell_alone() {
    let _serial = serial();
    let name = Named::new("bell-reborn");
    let old = Channel::create(&name.0, 1 << 16, &Config::default()).unwrap();
    let mut old_reader = old.reader().unwrap();
    old_reader.readiness_fd().unwrap();
    Channel::unlink(&name.0).unwrap();
    // The name is created anew, and its reader makes its own doorbell.
    let new = Channel::create(&name.0, 1 << 16, &Config::default()).unwrap();
    let mut new_reader = new.reader().unwrap();
    assert_eq!(new_reader.arm().unwrap(), Arm::Armed);
    let path = atbus::doorbell::path(&name.0);
    let fifo = inode(&path);
    drop(old_reader);
    drop(old);
    assert_eq!(inode(&path), fifo, "the old reader removed the new FIFO");
    // A writer that opens the channel now rings the new reader.
    Channel::open(&name.0)
        .unwrap()
        .writer()
        .send(b"new")
        .unwrap();
    let fd = new_reader.readiness_fd().unwrap().as_raw_fd();
    assert!(readable_within(fd, 5000), "the new reader was not woken");
    assert_eq!(new_reader.try_recv_vec().unwrap(), b"new");
}

#[test]
fn a_doorbell_that_cannot_be_made_leaves_no_fifo_behind() {
    let _serial = serial();
    let name = Named::new("bell-emfile");
    let ch = Channel::create(&name.0, 1 << 16, &Config::default()).unwrap();
    let path = atbus::doorbell::path(&name.0);
    // In a child (the limit is process-wide): leave exactly one descriptor free, so the
    // doorbell's second descriptor fails with EMFILE.
    let child_path = path.clone();
    let child = fork_child(move || {
        let Ok(mut r) = ch.reader() else {
            return 3;
        };
        // SAFETY: dup of stdin returns the lowest free descriptor, closed at once.
        let free = unsafe { libc::dup(0) };
        // SAFETY: closing the descriptor dup just gave us.
        unsafe { libc::close(free) };
        let limit = libc::rlimit {
            rlim_cur: free as libc::rlim_t + 1,
            rlim_max: free as libc::rlim_t + 1,
        };
        // SAFETY: a valid rlimit on our stack.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return 3;
        }
        let failed = r.readiness_fd().is_err();
        let left = std::fs::symlink_metadata(&child_path).is_ok();
        if failed && !left {
            0
        } else {
            1 + left as i32
        }
    });
    match child.exit_code() {
        0 => {}
        2 => panic!("a FIFO was left behind after the doorbell failed"),
        1 => panic!("the doorbell did not fail with one descriptor free"),
        other => panic!("child setup failed ({other})"),
    }
    assert!(std::fs::symlink_metadata(&path).is_err());
}

/// Open descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn writers_keep_no_doorbell_open_after_the_channel_is_closed() {
    let _serial = serial();
    let before = open_fds();
    for _ in 0..300 {
        let name = Named::new("bell-fds");
        let ch = Channel::create(&name.0, 1 << 16, &Config::default()).unwrap();
        let mut r = ch.reader().unwrap();
        assert_eq!(r.arm().unwrap(), Arm::Armed);
        ch.writer().send(b"ring").unwrap();
        assert_eq!(r.try_recv_vec().unwrap(), b"ring");
        drop(r);
        drop(ch);
    }
    assert_eq!(open_fds(), before, "descriptors left open by 300 channels");
}

#[test]
fn a_thread_ringing_many_channels_opens_each_doorbell_once() {
    let _serial = serial();
    const CHANNELS: usize = 17;
    const ROUNDS: usize = 1000;
    let names: Vec<Named> = (0..CHANNELS).map(|_| Named::new("bell-lru")).collect();
    let mut channels: Vec<_> = names
        .iter()
        .map(|n| {
            let ch = Channel::create(&n.0, 1 << 16, &Config::default()).unwrap();
            let r = ch.reader().unwrap();
            (ch.writer(), r)
        })
        .collect();
    let opened = atbus::doorbell::opened_to_ring();
    let mut rung = 0;
    for _ in 0..ROUNDS {
        for (w, r) in &mut channels {
            assert_eq!(r.arm().unwrap(), Arm::Armed);
            w.send(b"x").unwrap();
            assert_eq!(r.try_recv_vec().unwrap(), b"x");
            rung += 1;
        }
    }
    let opens = atbus::doorbell::opened_to_ring() - opened;
    assert_eq!(rung, CHANNELS * ROUNDS);
    assert_eq!(
        opens, CHANNELS as u64,
        "{opens} FIFO opens for {rung} rings"
    );
}
