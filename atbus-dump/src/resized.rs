//! `check` of a segment whose object was resized after creation (`ftruncate` by anyone
//! with write access). Shared-memory objects cannot be sealed against it (only memfds
//! can), so `check` reports it: a segment shrunk under its mappings kills every process
//! that touches the lost pages with SIGBUS, this tool included, so it is judged from
//! `fstat` and never walked.

use std::io::Write;
use std::process::ExitCode;

use serde::Serialize;

use atbus::Inspector;

use crate::units::format_size;
use crate::{print_json, Outcome};

/// `check --json` of a resized segment.
#[derive(Serialize)]
struct ResizedReport {
    name: String,
    clean: bool,
    /// "shrunk" or "grown".
    resized: &'static str,
    /// The object's size now (fstat).
    file_size: u64,
    /// What the header declares (or, for an object too small to hold a header, the
    /// header's own size).
    declared_size: u64,
    detail: String,
}

/// Reports `name`, `file_size` bytes against the `declared_size` its header declares,
/// and exits 1.
pub fn report(
    out: &mut impl Write,
    name: &str,
    file_size: u64,
    declared_size: u64,
    json: bool,
) -> Outcome {
    let shrunk = file_size < declared_size;
    let detail = if shrunk {
        format!(
            "the object is {file_size} bytes ({}) but its header declares {declared_size} \
             ({}): it was shrunk after creation, and every process that has it mapped dies \
             with SIGBUS when it touches the lost pages; stop its writers and reader, \
             unlink it and create it again, and let no other user write it (see \
             docs/security.md)",
            format_size(file_size),
            format_size(declared_size)
        )
    } else {
        format!(
            "the object is {file_size} bytes ({}) but its header declares {declared_size} \
             ({}): it was resized after creation by someone with write access; the channel \
             still works, but find out who (see docs/security.md)",
            format_size(file_size),
            format_size(declared_size)
        )
    };
    let r = ResizedReport {
        name: name.into(),
        clean: false,
        resized: if shrunk { "shrunk" } else { "grown" },
        file_size,
        declared_size,
        detail,
    };
    if json {
        print_json(out, &r)?;
    } else {
        writeln!(out, "check {}: {} segment", r.name, r.resized)?;
        writeln!(out, "  {}", r.detail)?;
        writeln!(out, "1 anomaly found")?;
    }
    Ok(ExitCode::from(1))
}

/// Reports the segment behind `view` if its object's size no longer matches its header;
/// `None` when it does.
pub fn check(
    out: &mut impl Write,
    view: &Inspector,
    json: bool,
) -> Result<Option<ExitCode>, crate::Failure> {
    let info = view.info();
    let now = view.file_size()?;
    if now == info.declared_size {
        return Ok(None);
    }
    report(out, &info.name, now, info.declared_size, json).map(Some)
}
