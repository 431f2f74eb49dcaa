//! `show`: everything the header says about a channel.

use std::io::Write;
use std::process::ExitCode;

use serde::Serialize;

use atbus::inspect::{Cursors, ReaderOwner, SegmentInfo};
use atbus::{Inspector, Stats};

use crate::units::{format_duration, format_size};
use crate::{print_json, Outcome};

/// The whole `show --json` document.
#[derive(Serialize)]
pub struct ShowReport {
    pub name: String,
    pub header: HeaderJson,
    pub config: ConfigJson,
    pub cursors: CursorsJson,
    pub reader: Option<ReaderJson>,
    pub stats: StatsJson,
}

#[derive(Serialize)]
pub struct HeaderJson {
    /// The magic, as the hex of the little-endian u64 (validated at open).
    pub magic: String,
    pub version: u32,
    pub size: u64,
    pub node_size: usize,
    pub node_count: u64,
    pub data_offset: usize,
    pub data_size: u64,
    pub max_message_len: usize,
    pub created_unix_ns: u64,
    /// Random id given at creation (hex): with a block's sequence it names a message.
    pub channel_id: String,
    /// The object's owner uid and user name (null when unknown), from fstat.
    pub owner_uid: u32,
    pub owner_name: Option<String>,
    /// The object's permission bits, in octal ("0600").
    pub mode: String,
    /// The size the header declares, and the object's size now (fstat). `file_size`
    /// below `declared_size` means the object was shrunk under its mappings.
    pub declared_size: u64,
    pub file_size: u64,
}

#[derive(Serialize)]
pub struct ConfigJson {
    pub timeout_ns: u64,
    pub write_retries: u32,
    pub protect_nodes: u64,
    pub detect_dead_writers: bool,
    pub checksums: bool,
}

#[derive(Serialize)]
pub struct CursorsJson {
    pub read: u64,
    pub write: u64,
    pub read_index: u64,
    pub write_index: u64,
    pub used_nodes: u64,
    pub free_nodes: u64,
    pub fill_percent: f64,
}

#[derive(Serialize)]
pub struct ReaderJson {
    pub pid: u32,
    pub start_time: u32,
    pub alive: bool,
    /// True while it sleeps on the channel's futex (a blocking receive).
    pub sleeping: bool,
}

/// Every field of [`atbus::Stats`], plus the derived in-flight estimate.
#[derive(Serialize)]
pub struct StatsJson {
    pub messages_sent: u64,
    pub bytes_sent: u64,
    pub full: u64,
    pub write_retries: u64,
    pub abandoned: u64,
    pub padding_claims: u64,
    pub messages_received: u64,
    pub bytes_received: u64,
    pub timeout_blocks: u64,
    pub dead_writer_blocks: u64,
    pub bad_nodes: u64,
    pub bad_blocks: u64,
    pub crc_failures: u64,
    pub check_failures: u64,
    pub padding_blocks: u64,
    pub handover_nodes: u64,
    pub reader_takeovers: u64,
    pub aborted_blocks: u64,
    pub reader_sleeps: u64,
    pub wakeups: u64,
    pub read_cursor: u64,
    pub write_cursor: u64,
    pub in_flight: u64,
}

impl From<&Stats> for StatsJson {
    fn from(s: &Stats) -> Self {
        StatsJson {
            messages_sent: s.messages_sent,
            bytes_sent: s.bytes_sent,
            full: s.full,
            write_retries: s.write_retries,
            abandoned: s.abandoned,
            padding_claims: s.padding_claims,
            messages_received: s.messages_received,
            bytes_received: s.bytes_received,
            timeout_blocks: s.timeout_blocks,
            dead_writer_blocks: s.dead_writer_blocks,
            bad_nodes: s.bad_nodes,
            bad_blocks: s.bad_blocks,
            crc_failures: s.crc_failures,
            check_failures: s.check_failures,
            padding_blocks: s.padding_blocks,
            handover_nodes: s.handover_nodes,
            reader_takeovers: s.reader_takeovers,
            aborted_blocks: s.aborted_blocks,
            reader_sleeps: s.reader_sleeps,
            wakeups: s.wakeups,
            read_cursor: s.read_cursor,
            write_cursor: s.write_cursor,
            in_flight: s.in_flight(),
        }
    }
}

/// Percentage of the claimable nodes in use.
pub fn fill_percent(info: &SegmentInfo, c: &Cursors) -> f64 {
    let capacity = info
        .node_count
        .saturating_sub(1 + info.protect_nodes)
        .max(1);
    let pct = c.used_nodes as f64 * 100.0 / capacity as f64;
    (pct * 100.0).round() / 100.0
}

/// `pid 123 (alive)`, `pid 123 (dead: the next reader takes the role over)` or `none`.
pub fn describe_reader(owner: Option<ReaderOwner>) -> String {
    match owner {
        None => "none".into(),
        Some(o) if o.alive => format!("pid {} (alive)", o.pid),
        Some(o) => format!(
            "pid {} (dead: its role is taken over by the next reader)",
            o.pid
        ),
    }
}

pub fn reader_json(owner: Option<ReaderOwner>, sleeping: bool) -> Option<ReaderJson> {
    owner.map(|o| ReaderJson {
        pid: o.pid,
        start_time: o.start_time,
        alive: o.alive,
        sleeping,
    })
}

pub fn report(view: &Inspector) -> ShowReport {
    let info = view.info();
    let cursors = view.cursors();
    let stats = view.stats();
    let owner = view.reader_owner();
    ShowReport {
        name: info.name.clone(),
        header: HeaderJson {
            magic: format!("{:#018x}", atbus::MAGIC),
            version: info.version,
            size: info.size,
            node_size: info.node_size,
            node_count: info.node_count,
            data_offset: info.data_offset,
            data_size: info.node_count * info.node_size as u64,
            max_message_len: info.max_message_len,
            created_unix_ns: info.created_unix_ns,
            channel_id: format!("{:016x}", info.channel_id),
            owner_uid: info.owner_uid,
            owner_name: info.owner_name.clone(),
            mode: format!("{:04o}", info.mode),
            declared_size: info.declared_size,
            file_size: info.file_size,
        },
        config: ConfigJson {
            timeout_ns: info.timeout.as_nanos() as u64,
            write_retries: info.write_retries,
            protect_nodes: info.protect_nodes,
            detect_dead_writers: info.detect_dead_writers,
            checksums: view.checksums(),
        },
        cursors: CursorsJson {
            read: cursors.read,
            write: cursors.write,
            read_index: cursors.read % info.node_count,
            write_index: cursors.write % info.node_count,
            used_nodes: cursors.used_nodes,
            free_nodes: cursors.free_nodes,
            fill_percent: fill_percent(&info, &cursors),
        },
        reader: reader_json(owner, view.reader_sleeping()),
        stats: StatsJson::from(&stats),
    }
}

/// "uid 1000 (alice)", or "uid 1000" when the user database does not know it.
pub fn owner_text(uid: u32, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("uid {uid} ({n})"),
        None => format!("uid {uid}"),
    }
}

/// A counter line: name, value, meaning.
type Row<'a> = (&'a str, u64, &'a str);

pub fn run(out: &mut impl Write, name: &str, json: bool) -> Outcome {
    let view = Inspector::open(name)?;
    let r = report(&view);
    if json {
        print_json(out, &r)?;
        return Ok(ExitCode::SUCCESS);
    }
    let info = view.info();
    let h = &r.header;
    let c = &r.cursors;
    let s = &r.stats;
    writeln!(out, "channel {}", r.name)?;
    writeln!(
        out,
        "  (values are read one by one: while writers and the reader run they are not one \
         consistent snapshot)"
    )?;
    writeln!(out, "header")?;
    writeln!(
        out,
        "  magic          {} (\"ATBUSv01\")   version {}",
        h.magic, h.version
    )?;
    writeln!(
        out,
        "  size           {} bytes ({})",
        h.size,
        format_size(h.size)
    )?;
    writeln!(
        out,
        "  nodes          {} x {} bytes = {} of data at offset {}",
        h.node_count,
        h.node_size,
        format_size(h.data_size),
        h.data_offset
    )?;
    writeln!(out, "  max message    {} bytes", h.max_message_len)?;
    writeln!(
        out,
        "  owner          {}, mode {}{}",
        owner_text(h.owner_uid, h.owner_name.as_deref()),
        h.mode,
        if info.mode & 0o022 != 0 {
            " (writable by group/others: writers must opt in, see docs/security.md)"
        } else {
            ""
        }
    )?;
    if h.file_size != h.declared_size {
        writeln!(
            out,
            "  file size      {} bytes, the header says {}: resized after creation{}",
            h.file_size,
            h.declared_size,
            if h.file_size < h.size {
                " (shrunk: processes touching the lost pages die with SIGBUS)"
            } else {
                ""
            }
        )?;
    }
    writeln!(
        out,
        "  created        {}",
        format_unix_ns(h.created_unix_ns)
    )?;
    writeln!(out, "  channel id     {}", h.channel_id)?;
    writeln!(out, "config")?;
    writeln!(out, "  timeout        {}", format_duration(info.timeout))?;
    writeln!(
        out,
        "  write retries  {} (failed claims before yielding)",
        r.config.write_retries
    )?;
    writeln!(
        out,
        "  protect area   {} nodes ({})",
        r.config.protect_nodes,
        format_size(r.config.protect_nodes * h.node_size as u64)
    )?;
    writeln!(
        out,
        "  dead writers   {}",
        if r.config.detect_dead_writers {
            "detected (blocks of dead writers are skipped at once)"
        } else {
            "not detected (torn blocks wait for the timeout)"
        }
    )?;
    writeln!(
        out,
        "  checksums      {}",
        if r.config.checksums {
            "crc32c of every payload, checked by the reader"
        } else {
            "off (payloads are not checked)"
        }
    )?;
    writeln!(out, "cursors")?;
    writeln!(out, "  read           {} (node {})", c.read, c.read_index)?;
    writeln!(out, "  write          {} (node {})", c.write, c.write_index)?;
    writeln!(
        out,
        "  used           {} nodes, free {} nodes, fill {:.1}%",
        c.used_nodes, c.free_nodes, c.fill_percent
    )?;
    let sleeping = if r.reader.as_ref().is_some_and(|r| r.sleeping) {
        ", asleep in a blocking receive"
    } else {
        ""
    };
    writeln!(
        out,
        "reader           {}{sleeping}",
        describe_reader(view.reader_owner())
    )?;
    let sections: [(&str, &[Row]); 3] = [
        (
            "writer counters",
            &[
                ("messages_sent", s.messages_sent, "messages published"),
                ("bytes_sent", s.bytes_sent, "payload bytes published"),
                ("full", s.full, "send calls that returned Full"),
                (
                    "write_retries",
                    s.write_retries,
                    "claim CASes lost and retried",
                ),
                (
                    "abandoned",
                    s.abandoned,
                    "sends skipped as stalled (Abandoned)",
                ),
                ("padding_claims", s.padding_claims, "padding blocks claimed"),
                ("wakeups", s.wakeups, "futex wake-ups of a sleeping reader"),
            ],
        ),
        (
            "reader counters",
            &[
                (
                    "messages_received",
                    s.messages_received,
                    "messages delivered",
                ),
                (
                    "bytes_received",
                    s.bytes_received,
                    "payload bytes delivered",
                ),
                (
                    "timeout_blocks",
                    s.timeout_blocks,
                    "torn blocks skipped after the timeout",
                ),
                (
                    "dead_writer_blocks",
                    s.dead_writer_blocks,
                    "torn blocks of dead writers skipped",
                ),
                ("bad_nodes", s.bad_nodes, "nodes skipped without delivery"),
                (
                    "bad_blocks",
                    s.bad_blocks,
                    "published blocks that failed a check",
                ),
                (
                    "crc_failures",
                    s.crc_failures,
                    "  of which crc32c mismatches",
                ),
                (
                    "check_failures",
                    s.check_failures,
                    "  of which bad length/sequence",
                ),
                ("padding_blocks", s.padding_blocks, "padding blocks skipped"),
                (
                    "aborted_blocks",
                    s.aborted_blocks,
                    "reservations dropped without commit",
                ),
                (
                    "handover_nodes",
                    s.handover_nodes,
                    "nodes a dead reader had not released",
                ),
                (
                    "reader_takeovers",
                    s.reader_takeovers,
                    "reader roles taken from dead owners",
                ),
                (
                    "reader_sleeps",
                    s.reader_sleeps,
                    "times a blocking reader went to sleep",
                ),
            ],
        ),
        (
            "derived",
            &[(
                "in_flight",
                s.in_flight,
                "published, not yet delivered (estimate)",
            )],
        ),
    ];
    for (title, rows) in sections {
        writeln!(out, "{title}")?;
        for (key, value, what) in rows {
            writeln!(out, "  {key:<20} {value:>14}   {what}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `2026-11-21 12:34:56 UTC` from nanoseconds since the epoch (civil-from-days).
pub fn format_unix_ns(ns: u64) -> String {
    if ns == 0 {
        return "unknown".into();
    }
    let secs = ns / 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_is_formatted_as_utc() {
        assert_eq!(format_unix_ns(0), "unknown");
        assert_eq!(format_unix_ns(1_000_000_000), "1970-01-01 00:00:01 UTC");
        // 2024-02-29 12:00:00 UTC
        assert_eq!(
            format_unix_ns(1_709_208_000 * 1_000_000_000),
            "2024-02-29 12:00:00 UTC"
        );
    }
}
