//! `nodes`: one line per node head.

use std::io::Write;
use std::process::ExitCode;

use serde::Serialize;

use atbus::inspect::NodeView;
use atbus::Head;
use atbus::Inspector;

use crate::{print_json, Failure, Outcome};

/// Nodes shown before the read cursor and after the write cursor by default.
pub const AROUND: u64 = 4;
/// Most lines printed when `--count` is not given.
pub const DEFAULT_CAP: u64 = 256;

/// The `nodes --json` document.
#[derive(Serialize)]
struct NodesReport {
    name: String,
    node_count: u64,
    node_size: usize,
    read_cursor: u64,
    write_cursor: u64,
    read_index: u64,
    write_index: u64,
    from: u64,
    count: u64,
    /// True when the default listing was cut at `DEFAULT_CAP` lines.
    truncated: bool,
    nodes: Vec<NodeJson>,
}

#[derive(Serialize)]
struct NodeJson {
    index: u64,
    /// The position this node holds (between the cursors, or the next it may be claimed
    /// at).
    position: u64,
    /// What its first word says about that position, as the reader reads it: `free`,
    /// `published`, `aborted`, `padding`, `consumed`, or `other` (payload
    /// inside a block, or a word no atbus process leaves there).
    head: &'static str,
    /// The raw 64-bit first word, in hex.
    raw: String,
    free: bool,
    start: bool,
    written: bool,
    padding: bool,
    /// A reservation dropped without commit (START | WRITTEN | ABORTED).
    aborted: bool,
    /// Sequence (the block's position) of a block head; null otherwise.
    seq: Option<u64>,
    /// Position a free node may next be claimed at; null otherwise.
    next: Option<u64>,
    /// `read` and/or `write` when a cursor points at this node.
    cursors: Vec<&'static str>,
    /// The first bytes of the node's data, in hex.
    data: String,
}

fn head_name(head: Option<Head>) -> &'static str {
    match head {
        Some(Head::Free) => "free",
        Some(Head::Published) => "published",
        Some(Head::Aborted) => "aborted",
        Some(Head::Padding) => "padding",
        Some(Head::Consumed) => "consumed",
        Some(Head::Other) | None => "other",
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the node of position `pos` between the cursors is doing there, when its word
/// is not a block head (as the reader classifies it).
fn free_note(head: Option<Head>) -> Option<&'static str> {
    match head? {
        Head::Free => Some("(claimed: being written, or its writer stopped)"),
        Head::Consumed => Some("(consumed, not yet released)"),
        Head::Other => Some("(inside a block: payload)"),
        _ => None,
    }
}

/// One text line for a node.
fn line(node: &NodeView, data: &[u8], marks: &[&str], note: Option<&str>) -> String {
    let payload_word = note == Some("(inside a block: payload)");
    let mut s = if payload_word {
        format!("node {} word={:#018x}", node.index, node.raw)
    } else if node.free {
        format!("node {} free next={}", node.index, node.tag)
    } else {
        format!(
            "node {} seq={} start={} written={} padding={}",
            node.index,
            node.tag,
            yes_no(node.start),
            yes_no(node.written),
            yes_no(node.padding)
        )
    };
    if node.aborted && !payload_word {
        s.push_str(" aborted=yes");
    }
    if !data.is_empty() {
        s.push_str(" data=");
        s.push_str(&hex(data));
    }
    if let Some(note) = note {
        s.push(' ');
        s.push_str(note);
    }
    for m in marks {
        s.push_str(" <- ");
        s.push_str(m);
    }
    s
}

pub fn run(
    out: &mut impl Write,
    name: &str,
    from: Option<u64>,
    count: Option<u64>,
    data: usize,
    json: bool,
) -> Outcome {
    let view = Inspector::open(name)?;
    let info = view.info();
    let n = info.node_count;
    let cursors = view.cursors();
    let read_index = cursors.read % n;
    let write_index = cursors.write % n;
    if let Some(f) = from {
        if f >= n {
            return Err(Failure::Message(format!(
                "--from {f} is past the last node: {name} has nodes 0 to {}",
                n - 1
            )));
        }
    }
    // Default window: a few nodes before the read cursor to a few past the write cursor.
    let around_before = AROUND.min(n.saturating_sub(cursors.used_nodes) / 2);
    let window = (cursors.used_nodes + 2 * AROUND).min(n);
    let start = from.unwrap_or((read_index + n - around_before) % n);
    let (count, truncated) = match count {
        Some(c) => (c.min(n), false),
        None if from.is_some() => (DEFAULT_CAP.min(n), false),
        None => (window.min(DEFAULT_CAP), window > DEFAULT_CAP),
    };

    let mut nodes = Vec::new();
    let mut lines = Vec::new();
    for k in 0..count {
        let index = (start + k) % n;
        let Some(node) = view.node(index) else {
            continue;
        };
        let bytes = view.node_bytes(index, data);
        let mut marks = Vec::new();
        if index == read_index {
            marks.push("read");
        }
        if index == write_index {
            marks.push("write");
        }
        // The position this node holds: between the cursors, or the one it may next be
        // claimed at.
        let pos = cursors.read + (index + n - read_index) % n;
        let head = view.classify(index, pos);
        if json {
            let is_head = !matches!(head, Some(Head::Other) | None);
            let block = is_head && !node.free;
            nodes.push(NodeJson {
                index,
                position: pos,
                head: head_name(head),
                raw: format!("{:#018x}", node.raw),
                free: is_head && node.free,
                start: block && node.start,
                written: block && node.written,
                padding: block && node.padding,
                aborted: block && node.aborted,
                seq: block.then_some(node.tag),
                next: (is_head && node.free).then_some(node.tag),
                cursors: marks,
                data: hex(&bytes),
            });
        } else {
            let note = if pos < cursors.write {
                free_note(head)
            } else if head != Some(Head::Free) {
                Some("(not free for its next position: see atbus-dump check)")
            } else {
                None
            };
            lines.push(line(&node, &bytes, &marks, note));
        }
    }

    if json {
        print_json(
            out,
            &NodesReport {
                name: info.name,
                node_count: n,
                node_size: info.node_size,
                read_cursor: cursors.read,
                write_cursor: cursors.write,
                read_index,
                write_index,
                from: start,
                count,
                truncated,
                nodes,
            },
        )?;
        return Ok(ExitCode::SUCCESS);
    }

    writeln!(
        out,
        "channel {}: {} nodes of {} bytes; read={} (node {}) write={} (node {}), {} used",
        info.name,
        n,
        info.node_size,
        cursors.read,
        read_index,
        cursors.write,
        write_index,
        cursors.used_nodes
    )?;
    writeln!(
        out,
        "nodes {} to {} ({} nodes); free nodes show the position they may next be claimed \
         at; heads are read one by one while the channel runs",
        start,
        (start + count.max(1) - 1) % n,
        count
    )?;
    for l in &lines {
        writeln!(out, "{l}")?;
    }
    if truncated {
        writeln!(
            out,
            "... cut at {DEFAULT_CAP} of {window} nodes ({} used plus {AROUND} around the \
             cursors): use --from {} --count {window} to see them all",
            cursors.used_nodes, start
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
