//! Channel configuration, fixed at creation and stored in the segment header.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::layout;

/// How a channel is created. `Config::default()` suits most uses.
///
/// ```
/// use std::time::Duration;
/// let config = atbus::Config {
///     timeout: Duration::from_millis(500),
///     ..atbus::Config::default()
/// };
/// assert_eq!(config.node_size, 128);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Bytes per node: a power of two from 64 to 65536. Default 128. A message occupies
    /// `ceil((32 + len) / node_size)` nodes.
    pub node_size: usize,
    /// Torn-block timeout: how long a block may stay claimed but unwritten before the
    /// reader skips it as the work of a stalled writer. Default 1 s.
    ///
    /// Blocks of writers whose process no longer exists are skipped at once (see
    /// `detect_dead_writers`), so the timeout only matters for live writers that stall:
    /// a writer preempted for a few milliseconds on a busy host is normal, not dead, so
    /// keep the timeout well above a scheduler slice.
    pub timeout: Duration,
    /// Failed claim compare-exchanges a writer retries before it yields the CPU to the
    /// writer that won. Default 4.
    pub write_retries: u32,
    /// Bytes writers always leave free (rounded up to whole nodes). Default 0.
    pub protect_bytes: usize,
    /// File mode of the shared-memory object. Default 0o600. A mode that gives group or
    /// others any access needs `allow_shared_mode`.
    pub mode: u32,
    /// Allow a `mode` wider than 0o600. Default false. Other users that may write the
    /// segment can forge messages and cursors (the reader skips and counts what fails
    /// its checks) and can shrink it under every mapping (SIGBUS); writers of another
    /// user then also need [`OpenOptions::allow_foreign_owner`](crate::OpenOptions).
    /// See docs/security.md.
    pub allow_shared_mode: bool,
    /// Skip a torn block at once when its writer's process no longer exists. Needs all
    /// processes in one pid namespace. Default true.
    pub detect_dead_writers: bool,
    /// Compute a crc32 of every payload (writers) and check it (the reader). Default true.
    ///
    /// Turning it off saves ~0.7 us per 16 KiB on each side, but then a writer that
    /// stalled past the timeout and woke to scribble on reused nodes can get damaged
    /// bytes delivered: only for channels whose writers never stall that long.
    pub checksums: bool,
}

/// Default torn-block timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

impl Default for Config {
    fn default() -> Self {
        Config {
            node_size: 128,
            timeout: DEFAULT_TIMEOUT,
            write_retries: 4,
            protect_bytes: 0,
            mode: 0o600,
            allow_shared_mode: false,
            detect_dead_writers: true,
            checksums: true,
        }
    }
}

impl Config {
    /// Checks every field; the error says which one is wrong and why.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::InvalidConfig { reason });
        if !layout::valid_node_size(self.node_size) {
            return bad(format!(
                "node size {} is not a power of two from {} to {}",
                self.node_size,
                layout::MIN_NODE_SIZE,
                layout::MAX_NODE_SIZE
            ));
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(3600) {
            return bad(format!(
                "timeout {:?} is outside 1 ns to 1 hour",
                self.timeout
            ));
        }
        if self.mode & !0o777 != 0 {
            return bad(format!("mode {:o} has bits beyond 0o777", self.mode));
        }
        if self.mode & 0o600 != 0o600 {
            return bad(format!(
                "mode {:o} does not let the owner read and write",
                self.mode
            ));
        }
        if self.mode & !0o600 != 0 && !self.allow_shared_mode {
            return bad(format!(
                "mode {:o} lets other users at the channel (other writers can forge \
                 messages, shrink the segment and crash every process mapping it); set \
                 allow_shared_mode to true if that is intended, or use mode 600",
                self.mode
            ));
        }
        Ok(())
    }
}
