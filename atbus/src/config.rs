//! Channel configuration, fixed at creation and stored in the segment header.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::layout;

/// How a channel is created. `Config::default()` suits most uses; [`Config::builder`]
/// changes fields and checks the result.
///
/// ```
/// use std::time::Duration;
/// let config = atbus::Config::builder()
///     .node_size(256)
///     .timeout(Duration::from_millis(500))
///     .build()?;
/// assert_eq!((config.node_size, config.write_retries), (256, 4));
/// // Out-of-range values are refused, saying which and why.
/// let err = atbus::Config::builder().node_size(100).build().unwrap_err();
/// assert!(err.to_string().contains("node size 100"));
/// # Ok::<(), atbus::Error>(())
/// ```
///
/// The struct is `#[non_exhaustive]`, so fields can be added without breaking callers:
/// build it with [`Config::builder`] (or change fields of `Config::default()`), not with
/// a struct literal.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
    /// Compute a crc32c of every payload (writers) and check it (the reader). Default true.
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
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config::default(),
        }
    }

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

/// Builds a [`Config`] from the defaults, one field at a time; [`build`](Self::build)
/// checks the result. Each method documents its field on [`Config`].
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ConfigBuilder {
    config: Config,
}

impl ConfigBuilder {
    /// Sets [`Config::node_size`]: a power of two from 64 to 65536.
    pub fn node_size(mut self, node_size: usize) -> Self {
        self.config.node_size = node_size;
        self
    }

    /// Sets [`Config::timeout`], the torn-block timeout: 1 ns to 1 hour.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Sets [`Config::write_retries`].
    pub fn write_retries(mut self, write_retries: u32) -> Self {
        self.config.write_retries = write_retries;
        self
    }

    /// Sets [`Config::protect_bytes`].
    pub fn protect_bytes(mut self, protect_bytes: usize) -> Self {
        self.config.protect_bytes = protect_bytes;
        self
    }

    /// Sets [`Config::mode`]: must include 0o600 and nothing beyond 0o777.
    pub fn mode(mut self, mode: u32) -> Self {
        self.config.mode = mode;
        self
    }

    /// Sets [`Config::detect_dead_writers`].
    pub fn detect_dead_writers(mut self, detect_dead_writers: bool) -> Self {
        self.config.detect_dead_writers = detect_dead_writers;
        self
    }

    /// Sets [`Config::checksums`].
    pub fn checksums(mut self, checksums: bool) -> Self {
        self.config.checksums = checksums;
        self
    }

    /// Sets [`Config::allow_shared_mode`]: needed for a `mode` wider than 0o600.
    pub fn allow_shared_mode(mut self, allow: bool) -> Self {
        self.config.allow_shared_mode = allow;
        self
    }

    /// The configuration, if every field is in range ([`Config::validate`]); otherwise
    /// [`Error::InvalidConfig`] saying which field is wrong and why. (Whether the
    /// protect area leaves room in the ring depends on the channel's size, so
    /// `Channel::create` checks that.)
    pub fn build(self) -> Result<Config> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_sets_every_field_and_starts_from_the_defaults() {
        assert_eq!(Config::builder().build().unwrap(), Config::default());
        let c = Config::builder()
            .node_size(1024)
            .timeout(Duration::from_millis(7))
            .write_retries(9)
            .protect_bytes(4096)
            .mode(0o640)
            .allow_shared_mode(true)
            .detect_dead_writers(false)
            .checksums(false)
            .build()
            .unwrap();
        let expected = Config {
            node_size: 1024,
            timeout: Duration::from_millis(7),
            write_retries: 9,
            protect_bytes: 4096,
            mode: 0o640,
            allow_shared_mode: true,
            detect_dead_writers: false,
            checksums: false,
        };
        assert_eq!(c, expected);
    }

    #[test]
    fn the_builder_refuses_values_out_of_range_naming_them() {
        let reason = |b: ConfigBuilder| match b.build() {
            Err(Error::InvalidConfig { reason }) => reason,
            other => panic!("expected InvalidConfig, got {other:?}"),
        };
        assert!(reason(Config::builder().node_size(100)).contains("node size 100"));
        assert!(reason(Config::builder().node_size(1 << 17)).contains("node size"));
        assert!(reason(Config::builder().timeout(Duration::ZERO)).contains("timeout"));
        assert!(reason(Config::builder().timeout(Duration::from_secs(3601))).contains("timeout"));
        assert!(reason(Config::builder().mode(0o660)).contains("allow_shared_mode"));
        assert!(reason(Config::builder().mode(0o400)).contains("owner read and write"));
        assert!(reason(Config::builder().mode(0o1600)).contains("beyond 0o777"));
    }
}
