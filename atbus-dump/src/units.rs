//! Human units for sizes and durations: parsing command-line values and printing them.
//!
//! Sizes: a whole number of bytes with an optional suffix. `K`, `KiB`, `M`, `MiB`, `G`,
//! `GiB` (case-insensitive, the `i` and `B` optional) are powers of 1024, as shared
//! memory is sized in pages; `KB`, `MB`, `GB` are powers of 1000. `16MiB`, `16M`, `4096`.
//!
//! Durations: a number (fractions allowed) and a unit: `ns`, `us` (or `µs`), `ms`, `s`,
//! `m`, `h`. `4ms`, `1s`, `250us`, `1.5s`. A bare number is refused, except `0`: "1000"
//! could mean anything.

use std::time::Duration;

/// Parses a size such as `16MiB`, `16M`, `64k` or `4096` into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "size {text:?} does not start with a number (e.g. 16MiB, 64K, 4096)"
        ));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("size {text:?} is too large"))?;
    let mult: u64 = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" => 1 << 10,
        "m" | "mi" | "mib" => 1 << 20,
        "g" | "gi" | "gib" => 1 << 30,
        "t" | "ti" | "tib" => 1 << 40,
        "kb" => 1000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "size {text:?} has an unknown unit {suffix:?}: use B, K/KiB, M/MiB, G/GiB \
                 (powers of 1024) or KB, MB, GB (powers of 1000)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// Parses a duration such as `4ms`, `1s`, `250us` or `1.5s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    if number.is_empty() || number == "." {
        return Err(format!(
            "duration {text:?} does not start with a number (e.g. 4ms, 1s, 250us)"
        ));
    }
    let unit_ns: f64 = match unit.trim() {
        "ns" => 1.0,
        "us" | "µs" | "μs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        "" if number.bytes().all(|b| b == b'0' || b == b'.') => 0.0,
        "" => {
            return Err(format!(
                "duration {text:?} has no unit: add ns, us, ms, s, m or h (e.g. {number}ms)"
            ))
        }
        other => {
            return Err(format!(
                "duration {text:?} has an unknown unit {other:?}: use ns, us, ms, s, m or h"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("duration {text:?} is not a number followed by a unit"))?;
    let ns = value * unit_ns;
    if !ns.is_finite() || ns >= u64::MAX as f64 {
        return Err(format!("duration {text:?} is too long"));
    }
    Ok(Duration::from_nanos(ns.round() as u64))
}

/// Parses an octal file mode such as `600`, `0o660` or `0640`.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("mode {text:?} is not an octal file mode like 600 or 0660"))
}

/// Formats bytes with a binary unit: `16 MiB`, `1.5 KiB`, `100 B`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut scaled = bytes as f64;
    while scaled >= 1024.0 && unit + 1 < UNITS.len() {
        scaled /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if scaled.fract() == 0.0 {
        format!("{scaled:.0} {}", UNITS[unit])
    } else {
        format!("{scaled:.1} {}", UNITS[unit])
    }
}

/// Formats a duration in its largest whole-ish unit: `1s`, `4ms`, `250us`, `1.5s`.
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    let (value, unit) = if ns >= 1_000_000_000 {
        (ns as f64 / 1e9, "s")
    } else if ns >= 1_000_000 {
        (ns as f64 / 1e6, "ms")
    } else if ns >= 1_000 {
        (ns as f64 / 1e3, "us")
    } else {
        (ns as f64, "ns")
    };
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{unit}")
}

/// Formats a rate per second compactly: `12`, `3.4k`, `1.2M`.
pub fn format_rate(per_second: f64) -> String {
    if per_second >= 1e9 {
        format!("{:.1}G", per_second / 1e9)
    } else if per_second >= 1e6 {
        format!("{:.1}M", per_second / 1e6)
    } else if per_second >= 1e4 {
        format!("{:.1}k", per_second / 1e3)
    } else {
        format!("{per_second:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_binary_and_decimal_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("16m"), Ok(16 << 20));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("100B"), Ok(100));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert_eq!(parse_size(" 8 K "), Ok(8 << 10));
    }

    #[test]
    fn sizes_refuse_garbage_with_a_reason() {
        for bad in ["", "M", "-1", "1.5M", "16XB", "99999999999999999999"] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
        assert!(parse_size("20000000T").unwrap_err().contains("too large"));
    }

    #[test]
    fn durations_accept_every_unit_and_fractions() {
        assert_eq!(parse_duration("4ms"), Ok(Duration::from_millis(4)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("250µs"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("10ns"), Ok(Duration::from_nanos(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_refuse_bare_numbers_and_unknown_units() {
        assert!(parse_duration("100").unwrap_err().contains("no unit"));
        assert!(parse_duration("5 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1.2.3s").is_err());
        assert!(parse_duration("1e30h").is_err());
    }

    #[test]
    fn modes_are_octal() {
        assert_eq!(parse_mode("600"), Ok(0o600));
        assert_eq!(parse_mode("0660"), Ok(0o660));
        assert_eq!(parse_mode("0o644"), Ok(0o644));
        assert!(parse_mode("999").is_err());
        assert!(parse_mode("7777").is_err());
    }

    #[test]
    fn formatting_round_trips_common_values() {
        assert_eq!(format_size(16 << 20), "16 MiB");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(100), "100 B");
        assert_eq!(format_duration(Duration::from_secs(1)), "1s");
        assert_eq!(format_duration(Duration::from_millis(4)), "4ms");
        assert_eq!(format_duration(Duration::from_micros(250)), "250us");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_rate(12.0), "12");
        assert_eq!(format_rate(34_567.0), "34.6k");
        assert_eq!(format_rate(1_234_567.0), "1.2M");
    }
}
