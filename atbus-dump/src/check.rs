//! `check`: walk the blocks between the cursors, without consuming them, and report
//! every anomaly.
//!
//! A busy channel changes while we look, so each finding is verified before it is
//! reported:
//! * an unfinished block (claimed below the write cursor, not published) is
//!   looked at again after `--settle`; if its heads changed, it was merely in progress;
//! * a finding the reader moved past during the check is dropped (the reader dealt with
//!   it, and the nodes may since hold a newer block);
//! * a published block is checked on a copy and its head re-read afterwards: if the head
//!   changed, the reader consumed the block under us and the copy proves nothing.
//!
//! An unfinished block whose writer process is alive is reported as in progress, never as
//! an anomaly: the writer may just be descheduled, and the reader's timeout is the judge.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use atbus::inspect::BlockHeaderView;
use atbus::Inspector;
use atbus::{BlockProblem, Head};

use crate::units::format_duration;
use crate::{print_json, Outcome};

/// What a finding is.
#[derive(Serialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Claimed and not published, and the writer named in the block header no longer
    /// exists.
    Torn,
    /// Unfinished and unchanged during the settle time, with no writer to ask: nodes
    /// claimed (below the write cursor) whose block header is not written.
    Stuck,
    /// Claimed and not published, and the writer process is alive: not an anomaly.
    InProgress,
    /// A block header whose length is impossible (too large, past the end of the ring or
    /// past the write cursor).
    BadLength,
    /// A published block whose header sequence is not its position.
    BadHeader,
    /// A published block whose payload does not match the crc32c in its header.
    CrcMismatch,
    /// A node head in a state no atbus process leaves it in at that place.
    Orphan,
}

impl Kind {
    fn is_anomaly(self) -> bool {
        self != Kind::InProgress
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Torn => "torn block",
            Kind::Stuck => "stuck block",
            Kind::InProgress => "in progress",
            Kind::BadLength => "bad length",
            Kind::BadHeader => "bad header",
            Kind::CrcMismatch => "crc mismatch",
            Kind::Orphan => "orphan node",
        }
    }
}

/// One finding.
#[derive(Serialize, Clone, Debug)]
pub struct Finding {
    pub kind: Kind,
    /// Absolute position of the first node.
    pub position: u64,
    /// Node index of the first node.
    pub index: u64,
    /// Nodes the finding covers.
    pub nodes: u64,
    /// Sequence (the block's position) from the node head (block heads only).
    pub seq: Option<u64>,
    /// Payload length from the block header (when the header is written).
    pub len: Option<u32>,
    /// crc32c in the block header (crc mismatches), sealed with the sequence
    /// (`Inspector::sealed_crc`).
    pub crc_header: Option<u32>,
    /// crc32c of the payload copy, sealed the same way (crc mismatches).
    pub crc_payload: Option<u32>,
    /// Writer process id from the block header (when the header is written).
    pub writer_pid: Option<u32>,
    /// Whether that process exists (not a zombie).
    pub writer_alive: Option<bool>,
    /// Its state letter from /proc (R running, S sleeping, T stopped, ...).
    pub writer_state: Option<String>,
    /// Nodes claimed after this block: how far behind the newest claim it is.
    pub nodes_since: Option<u64>,
    /// Nanoseconds the finding was watched without change (unfinished blocks).
    pub unchanged_for_ns: Option<u64>,
    /// What it means, in words.
    pub detail: String,
    /// Raw head words of the nodes, to tell whether they changed.
    #[serde(skip)]
    heads: Vec<u64>,
}

/// The `check --json` document.
#[derive(Serialize)]
pub struct CheckReport {
    pub name: String,
    pub node_count: u64,
    /// Cursors when the walk started.
    pub read_cursor: u64,
    pub write_cursor: u64,
    /// Cursors when the check ended.
    pub read_cursor_after: u64,
    pub write_cursor_after: u64,
    /// Nodes walked between the cursors.
    pub nodes_walked: u64,
    /// Published blocks whose header and crc32c checked out.
    pub blocks_ok: u64,
    /// Their payload bytes.
    pub bytes_ok: u64,
    pub padding_blocks: u64,
    /// Reservations dropped without commit (skipped by the reader, not an anomaly).
    pub aborted_blocks: u64,
    /// False when the channel has checksums off: payload crc32s are then not verified.
    pub checksums: bool,
    /// Nodes the reader consumed but has not released to writers yet (normal).
    pub consumed_unreleased_nodes: u64,
    /// Findings dropped because the channel moved on (block completed, or consumed).
    pub changed_during_check: u64,
    pub anomalies: Vec<Finding>,
    pub in_progress: Vec<Finding>,
    /// True when there is no anomaly (exit code 0).
    pub clean: bool,
}

struct Walker<'a> {
    view: &'a Inspector,
    n: u64,
    max_len: usize,
    write: u64,
    detect_dead: bool,
    timeout: Duration,
    findings: Vec<Finding>,
    blocks_ok: u64,
    bytes_ok: u64,
    padding: u64,
    aborted: u64,
    checksums: bool,
    consumed: u64,
    changed: u64,
}

/// The raw first word of node `index` (0 past the end of the ring).
fn word(view: &Inspector, index: u64) -> u64 {
    view.node(index).map_or(0, |v| v.raw)
}

impl Walker<'_> {
    /// What the first word of the node of position `p` says, as the reader reads it.
    fn head(&self, p: u64) -> Head {
        self.view.classify(p % self.n, p).unwrap_or(Head::Other)
    }

    fn finding(&self, kind: Kind, position: u64, nodes: u64, detail: String) -> Finding {
        let index = position % self.n;
        let heads = (0..nodes)
            .map(|k| word(self.view, (index + k) % self.n))
            .collect();
        // A block's head, or a claimed node whose header this lap's writer wrote.
        let is_block = match self.head(position) {
            Head::Published | Head::Aborted | Head::Padding => true,
            Head::Free => self
                .view
                .check_block(index, position)
                .is_some_and(|r| r != Err(BlockProblem::Sequence)),
            _ => false,
        };
        Finding {
            kind,
            position,
            index,
            nodes,
            seq: is_block.then_some(position),
            len: None,
            crc_header: None,
            crc_payload: None,
            writer_pid: None,
            writer_alive: None,
            writer_state: None,
            nodes_since: None,
            unchanged_for_ns: None,
            detail,
            heads,
        }
    }

    /// Nodes claimed after a block of `nodes` nodes at `p`.
    fn nodes_since(&self, p: u64, nodes: u64) -> u64 {
        self.write.saturating_sub(p + nodes)
    }

    /// How many consecutive nodes from `p` (below the write cursor) are claimed but not
    /// published: free and tagged with their own position.
    fn unflagged_run(&self, p: u64) -> u64 {
        let mut q = p;
        while q < self.write && self.head(q) == Head::Free {
            q += 1;
            if q.is_multiple_of(self.n) {
                break; // blocks never wrap
            }
        }
        q - p
    }

    /// Examines the block or node at `p`; returns the position after it.
    fn step(&mut self, p: u64) -> u64 {
        let i = p % self.n;
        let raw = word(self.view, i);
        match self.head(p) {
            Head::Published => self.published(p, i),
            Head::Aborted => self.aborted(p, i),
            Head::Padding => {
                let nodes = self.n - i;
                if p + nodes > self.write {
                    let f = self.finding(
                        Kind::Orphan,
                        p,
                        1,
                        format!(
                            "padding block to the end of the ring ({nodes} nodes) runs past \
                             the write cursor {}",
                            self.write
                        ),
                    );
                    self.findings.push(f);
                    return p + 1;
                }
                self.padding += 1;
                p + nodes
            }
            // Claimed (we walk below the write cursor) and not published: a writer at
            // work, or one that stopped. Its header names it once written.
            Head::Free if self.view.check_block(i, p) != Some(Err(BlockProblem::Sequence)) => {
                self.started(p, i)
            }
            Head::Free => {
                let run = self.unflagged_run(p);
                let f = self.finding(
                    Kind::Stuck,
                    p,
                    run,
                    format!(
                        "{run} node(s) claimed (below the write cursor) with no block header: \
                         the writer is between its claim and its header, or died there; no \
                         block header names it"
                    ),
                );
                self.findings.push(f);
                p + run
            }
            Head::Consumed => {
                // Consumed by the reader, not yet handed back (it releases in batches).
                self.consumed += 1;
                p + 1
            }
            Head::Other => {
                let f = self.finding(
                    Kind::Orphan,
                    p,
                    1,
                    format!(
                        "the first word of the node of position {p} is {raw:#018x}, not a head \
                         for this position: a block's head here would read \
                         {:#018x} (published), a claimed node {:#018x} (free)",
                        self.view.head_word(Head::Published, p).unwrap_or(0),
                        self.view.head_word(Head::Free, p).unwrap_or(0)
                    ),
                );
                self.findings.push(f);
                p + 1
            }
        }
    }

    /// The header of the block at `p` as the reader checks it, plus the write cursor:
    /// `Ok((header, nodes))` or why it does not check out.
    fn block_nodes(&self, p: u64, i: u64) -> Result<(BlockHeaderView, u64), (Kind, String)> {
        let bh = self
            .view
            .block_header(i)
            .ok_or((Kind::Orphan, "node past the end of the ring".to_string()))?;
        let len = bh.len as usize;
        match self.view.check_block(i, p) {
            Some(Ok(nodes)) if p + nodes <= self.write => Ok((bh, nodes)),
            Some(Ok(nodes)) => Err((
                Kind::BadLength,
                format!(
                    "length {len} needs {nodes} nodes, past the write cursor {}",
                    self.write
                ),
            )),
            Some(Err(BlockProblem::Sequence)) => Err((
                Kind::BadHeader,
                format!("header sequence {} is not the block's position {p}", bh.seq),
            )),
            Some(Err(BlockProblem::TooLong)) => Err((
                Kind::BadLength,
                format!(
                    "length {len} exceeds the largest message this channel takes ({})",
                    self.max_len
                ),
            )),
            Some(Err(BlockProblem::PastRingEnd)) | None => Err((
                Kind::BadLength,
                format!(
                    "length {len} needs {} nodes, past the end of the ring (node {i} of {})",
                    self.view.nodes_for(len),
                    self.n
                ),
            )),
        }
    }

    /// The header and node count of a published (or aborted) block at `p`, or `None`
    /// after recording why it does not check out.
    fn checked_header(&mut self, p: u64, i: u64, what: &str) -> Option<(BlockHeaderView, u64)> {
        match self.block_nodes(p, i) {
            Ok(ok) => Some(ok),
            Err((kind, why)) => {
                let mut f = self.finding(kind, p, 1, format!("{what}: {why}"));
                if let Some(bh) = self.view.block_header(i) {
                    f.len = Some(bh.len);
                    f.writer_pid = Some(bh.writer_pid);
                }
                self.findings.push(f);
                None
            }
        }
    }

    /// A reservation its writer dropped: no data, the reader skips its nodes.
    fn aborted(&mut self, p: u64, i: u64) -> u64 {
        let Some((_, nodes)) = self.checked_header(p, i, "aborted block") else {
            return p + 1;
        };
        self.aborted += 1;
        p + nodes
    }

    fn published(&mut self, p: u64, i: u64) -> u64 {
        let raw = word(self.view, i);
        let Some((bh, nodes)) = self.checked_header(p, i, "published block") else {
            return p + 1;
        };
        let Some(payload) = self.view.payload(i, bh.len as usize) else {
            return p + 1;
        };
        // The header stores the crc sealed with the sequence of the published head.
        let crc = self.view.sealed_crc(&payload, p);
        // If the head changed, the reader consumed the block while we copied it.
        if word(self.view, i) != raw {
            self.changed += 1;
            return p + nodes;
        }
        if self.checksums && crc != bh.crc {
            let mut f = self.finding(
                Kind::CrcMismatch,
                p,
                nodes,
                format!(
                    "published block of {} bytes: payload crc32c (sealed with seq) {crc:#010x}, \
                     header says {:#010x} (a writer stalled past the timeout may have written into \
                     reused nodes); the reader will skip it and count crc_failures",
                    bh.len, bh.crc
                ),
            );
            f.len = Some(bh.len);
            f.crc_header = Some(bh.crc);
            f.crc_payload = Some(crc);
            f.writer_pid = Some(bh.writer_pid);
            self.findings.push(f);
        } else {
            self.blocks_ok += 1;
            self.bytes_ok += u64::from(bh.len);
        }
        p + nodes
    }

    /// A block claimed and not published whose header its writer has written.
    fn started(&mut self, p: u64, i: u64) -> u64 {
        let Some(bh) = self.view.block_header(i) else {
            return p + 1;
        };
        let (nodes, len_problem) = match self.block_nodes(p, i) {
            Ok((_, nodes)) => (nodes, None),
            Err((_, why)) => (1 + self.unflagged_run(p + 1), Some(why)),
        };
        let since = self.nodes_since(p, nodes);
        let process = self.view.writer_process(bh.writer_pid);
        let alive = process.alive;
        let state = process.state.map(|c| c.to_string());
        let (kind, detail) = if let Some(why) = len_problem {
            (Kind::BadLength, format!("unfinished block: {why}"))
        } else if !alive {
            let skip = if self.detect_dead {
                "the reader skips it at once (dead-writer detection is on)".to_string()
            } else {
                format!(
                    "the reader skips it after the timeout ({}; dead-writer detection is off)",
                    format_duration(self.timeout)
                )
            };
            (
                Kind::Torn,
                format!(
                    "claimed, not published; writer pid {} is dead{}; {} bytes in {nodes} \
                     node(s), {}; {skip}",
                    bh.writer_pid,
                    if process.state.is_some() {
                        " (zombie)"
                    } else {
                        " (no such process)"
                    },
                    bh.len,
                    age(since)
                ),
            )
        } else {
            let how = match state.as_deref() {
                Some("T") | Some("t") => {
                    "stopped (SIGSTOP or a debugger): it cannot finish until resumed, and the \
                     reader skips the block once the timeout passes"
                }
                Some("R") => "running",
                Some("S") | Some("D") => "sleeping",
                _ => "alive",
            };
            (
                Kind::InProgress,
                format!(
                    "claimed, not published; writer pid {} is alive, {how}; {} bytes in \
                     {nodes} node(s), {} (timeout {})",
                    bh.writer_pid,
                    bh.len,
                    age(since),
                    format_duration(self.timeout)
                ),
            )
        };
        let mut f = self.finding(kind, p, nodes, detail);
        f.len = Some(bh.len);
        f.writer_pid = Some(bh.writer_pid);
        f.writer_alive = Some(alive);
        f.writer_state = state;
        f.nodes_since = Some(since);
        self.findings.push(f);
        p + nodes
    }

    /// Free nodes (from the write cursor to a lap past the read cursor) must be tagged
    /// with the position they will next be claimed at.
    fn free_region(&mut self, read: u64) {
        for q in self.write..read + self.n {
            if self.head(q) == Head::Free {
                continue;
            }
            // Claimed since we read the write cursor?
            let now = self.view.cursors().write;
            if q < now {
                continue;
            }
            let f = self.finding(
                Kind::Orphan,
                q,
                1,
                format!(
                    "node beyond the write cursor has head {:#018x}; a free node here must \
                     read {:#018x}",
                    word(self.view, q % self.n),
                    self.view.head_word(Head::Free, q).unwrap_or(0)
                ),
            );
            self.findings.push(f);
        }
    }
}

/// How recent a block is, in nodes claimed after it: the only clock the segment keeps.
fn age(nodes_since: u64) -> String {
    match nodes_since {
        0 => "the newest block claimed".into(),
        1 => "1 node claimed after it".into(),
        n => format!("{n} nodes claimed after it"),
    }
}

fn heads_now(view: &Inspector, f: &Finding, n: u64) -> Vec<u64> {
    (0..f.nodes)
        .map(|k| word(view, (f.index + k) % n))
        .collect()
}

pub fn run(out: &mut impl Write, name: &str, settle: Duration, json: bool) -> Outcome {
    // A resized object is reported from fstat and not walked (see `resized`).
    let view = match Inspector::open(name) {
        Err(atbus::Error::Truncated {
            actual, expected, ..
        }) => return crate::resized::report(out, name, actual, expected, json),
        other => other?,
    };
    if let Some(code) = crate::resized::check(out, &view, json)? {
        return Ok(code);
    }
    let info = view.info();
    let n = info.node_count;
    let c0 = view.cursors();
    let (read, write) = (c0.read, c0.write);
    let mut w = Walker {
        view: &view,
        n,
        max_len: info.max_message_len,
        write,
        detect_dead: info.detect_dead_writers,
        timeout: info.timeout,
        findings: Vec::new(),
        blocks_ok: 0,
        bytes_ok: 0,
        padding: 0,
        aborted: 0,
        checksums: view.checksums(),
        consumed: 0,
        changed: 0,
    };
    let end = if write < read || write - read > n {
        let f = w.finding(
            Kind::Orphan,
            read,
            0,
            format!(
                "the write cursor {write} is not within one ring ({n} nodes) ahead of the \
                 read cursor {read}: the header is corrupt"
            ),
        );
        w.findings.push(f);
        read
    } else {
        write
    };
    let mut p = read;
    while p < end {
        p = w.step(p);
    }
    if end == write {
        w.free_region(read);
    }

    // Give unfinished blocks a chance to show they are merely in progress.
    let unfinished = |f: &Finding| matches!(f.kind, Kind::Stuck | Kind::InProgress);
    if w.findings.iter().any(unfinished) && !settle.is_zero() {
        std::thread::sleep(settle);
        let mut kept = Vec::new();
        for mut f in std::mem::take(&mut w.findings) {
            if unfinished(&f) {
                if heads_now(&view, &f, n) != f.heads {
                    w.changed += 1;
                    continue;
                }
                f.unchanged_for_ns = Some(settle.as_nanos() as u64);
                f.detail
                    .push_str(&format!("; unchanged for {}", format_duration(settle)));
            }
            kept.push(f);
        }
        w.findings = kept;
    }
    // Drop what the reader moved past meanwhile: it dealt with it.
    let c1 = view.cursors();
    let before = w.findings.len();
    w.findings
        .retain(|f| f.position + f.nodes.max(1) > c1.read || f.position >= write);
    w.changed += (before - w.findings.len()) as u64;

    let (anomalies, in_progress): (Vec<_>, Vec<_>) =
        w.findings.into_iter().partition(|f| f.kind.is_anomaly());
    let report = CheckReport {
        name: info.name.clone(),
        node_count: n,
        read_cursor: read,
        write_cursor: write,
        read_cursor_after: c1.read,
        write_cursor_after: c1.write,
        nodes_walked: end - read,
        blocks_ok: w.blocks_ok,
        bytes_ok: w.bytes_ok,
        padding_blocks: w.padding,
        aborted_blocks: w.aborted,
        checksums: w.checksums,
        consumed_unreleased_nodes: w.consumed,
        changed_during_check: w.changed,
        clean: anomalies.is_empty(),
        anomalies,
        in_progress,
    };
    let code = if report.clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    if json {
        print_json(out, &report)?;
    } else {
        print_text(out, &report)?;
    }
    Ok(code)
}

fn print_text(out: &mut impl Write, r: &CheckReport) -> std::io::Result<()> {
    writeln!(
        out,
        "check {}: read={} (node {}) write={} (node {}), {} nodes between the cursors",
        r.name,
        r.read_cursor,
        r.read_cursor % r.node_count,
        r.write_cursor,
        r.write_cursor % r.node_count,
        r.nodes_walked
    )?;
    writeln!(
        out,
        "  {} published block(s) ok ({} bytes, {}), {} padding block(s), {} aborted \
         reservation(s), {} node(s) consumed and not yet released by the reader",
        r.blocks_ok,
        r.bytes_ok,
        if r.checksums {
            "crc32c verified on a copy"
        } else {
            "crc32c not verified: the channel has checksums off"
        },
        r.padding_blocks,
        r.aborted_blocks,
        r.consumed_unreleased_nodes
    )?;
    for f in r.anomalies.iter().chain(&r.in_progress) {
        let tag = if f.kind.is_anomaly() {
            "ANOMALY"
        } else {
            "note   "
        };
        let seq = f.seq.map(|s| format!(" seq {s}")).unwrap_or_default();
        writeln!(
            out,
            "  {tag} {} at position {} (node {}){seq}: {}",
            f.kind.label(),
            f.position,
            f.index,
            f.detail
        )?;
    }
    if r.read_cursor != r.read_cursor_after
        || r.write_cursor != r.write_cursor_after
        || r.changed_during_check > 0
    {
        writeln!(
            out,
            "  the channel is live: during the check the read cursor moved {} -> {} and the \
             write cursor {} -> {}; {} finding(s) resolved themselves meanwhile (blocks \
             completed or consumed) and are not reported",
            r.read_cursor,
            r.read_cursor_after,
            r.write_cursor,
            r.write_cursor_after,
            r.changed_during_check
        )?;
    }
    let n = r.anomalies.len();
    if n == 0 {
        writeln!(
            out,
            "clean: no anomaly{}",
            if r.in_progress.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} block(s) in progress by live writers)",
                    r.in_progress.len()
                )
            }
        )
    } else {
        writeln!(out, "{n} anomal{} found", if n == 1 { "y" } else { "ies" })
    }
}
