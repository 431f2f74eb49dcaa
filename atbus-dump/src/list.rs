//! `list`: the atbus channels in a directory (by default /dev/shm).

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;

use atbus::Inspector;

use crate::show::{describe_reader, fill_percent, owner_text, reader_json, ReaderJson};
use crate::units::format_size;
use crate::{print_json, Failure, Outcome};

/// One channel in `list --json`.
#[derive(Serialize)]
struct Entry {
    /// The name to pass to the other commands.
    name: String,
    /// Bytes of the object.
    size: u64,
    /// The object's owner uid and user name (null when unknown).
    owner_uid: u32,
    owner_name: Option<String>,
    /// Its permission bits, in octal ("0600").
    mode: String,
    node_size: Option<usize>,
    node_count: Option<u64>,
    used_nodes: Option<u64>,
    fill_percent: Option<f64>,
    reader: Option<ReaderJson>,
    /// The path of the reader's doorbell FIFO (an event-loop reader created it; it may
    /// have died since), or null.
    doorbell: Option<String>,
    /// Set when the object has the atbus magic but does not open (e.g. corrupt).
    error: Option<String>,
}

/// True when the file starts with the atbus magic.
fn has_magic(path: &Path) -> bool {
    let mut magic = [0u8; 8];
    // No following of a link, no hanging on a FIFO swapped in since the directory read.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && u64::from_le_bytes(magic) == atbus::MAGIC
}

pub fn run(out: &mut impl Write, dir: &Path, json: bool) -> Outcome {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Failure::Message(format!("cannot list {}: {e}", dir.display())))?;
    let shm = dir == Path::new("/dev/shm");
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() || !has_magic(&path) {
            continue;
        }
        let name = match (shm, entry.file_name().to_str()) {
            (true, Some(file)) => format!("/{file}"),
            _ => path.display().to_string(),
        };
        let mut e = Entry {
            name,
            size: meta.len(),
            owner_uid: meta.uid(),
            owner_name: None,
            mode: format!("{:04o}", meta.mode() & 0o7777),
            node_size: None,
            node_count: None,
            used_nodes: None,
            fill_percent: None,
            reader: None,
            doorbell: None,
            error: None,
        };
        if atbus::doorbell::exists(&e.name) {
            e.doorbell = Some(atbus::doorbell::path(&e.name).display().to_string());
        }
        match Inspector::open(&e.name) {
            Ok(view) => {
                let info = view.info();
                let c = view.cursors();
                e.owner_uid = info.owner_uid;
                e.owner_name = info.owner_name.clone();
                e.mode = format!("{:04o}", info.mode);
                e.node_size = Some(info.node_size);
                e.node_count = Some(info.node_count);
                e.used_nodes = Some(c.used_nodes);
                e.fill_percent = Some(fill_percent(&info, &c));
                e.reader = reader_json(view.reader_owner(), view.reader_sleeping());
            }
            // Unreadable to us (permissions): skip it, as for any file we cannot read.
            Err(atbus::Error::PermissionDenied { .. }) | Err(atbus::Error::NotFound { .. }) => {
                continue
            }
            Err(err) => e.error = Some(err.to_string()),
        }
        found.push(e);
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    if json {
        print_json(out, &found)?;
        return Ok(ExitCode::SUCCESS);
    }
    if found.is_empty() {
        writeln!(out, "no atbus channels in {}", dir.display())?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{:<32} {:>10} {:>18} {:>7}  {:<20} READER",
        "NAME", "SIZE", "NODES", "FILL", "OWNER, MODE"
    )?;
    for e in &found {
        match &e.error {
            Some(err) => writeln!(
                out,
                "{:<32} {:>10}  unreadable: {err}",
                e.name,
                format_size(e.size)
            )?,
            None => {
                let mut reader =
                    describe_reader(e.reader.as_ref().map(|r| atbus::inspect::ReaderOwner {
                        pid: r.pid,
                        start_time: r.start_time,
                        alive: r.alive,
                    }));
                if let Some(bell) = &e.doorbell {
                    reader.push_str(&format!(", doorbell {bell}"));
                }
                writeln!(
                    out,
                    "{:<32} {:>10} {:>18} {:>6.1}%  {:<20} {reader}",
                    e.name,
                    format_size(e.size),
                    format!(
                        "{} x {}",
                        e.node_count.unwrap_or(0),
                        e.node_size.unwrap_or(0)
                    ),
                    e.fill_percent.unwrap_or(0.0),
                    format!(
                        "{}, {}",
                        owner_text(e.owner_uid, e.owner_name.as_deref()),
                        e.mode
                    )
                )?
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
