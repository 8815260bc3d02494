//! The memory budget of a load (`--max-memory`, MemAvailable) and byte sizes as people write them
//! (`8G`, `500MiB`, `1.5GB`, `4096`); the estimate it bounds is in [`crate::budget`].

/// The host memory a load may take: the smaller of `--max-memory` and the kernel's MemAvailable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    /// `--max-memory`, in bytes.
    pub flag: Option<u64>,
    /// MemAvailable from /proc/meminfo, in bytes (None: not Linux, or unreadable).
    pub available: Option<u64>,
}

impl Budget {
    /// `--max-memory` (if given) and MemAvailable read now.
    pub fn host(flag: Option<u64>) -> Self {
        Budget {
            flag,
            available: mem_available(),
        }
    }

    /// The limit: the smaller of the two (None: neither is known, nothing to check against).
    pub fn bytes(&self) -> Option<u64> {
        match (self.flag, self.available) {
            (Some(f), Some(a)) => Some(f.min(a)),
            (f, a) => f.or(a),
        }
    }

    /// Where the limit comes from, for messages: `set by --max-memory (MemAvailable in
    /// /proc/meminfo is 21.30 GiB)`.
    pub fn source(&self) -> String {
        const AVAIL: &str = "MemAvailable in /proc/meminfo";
        match (self.flag, self.available) {
            (Some(f), Some(a)) if f <= a => {
                format!("set by --max-memory ({AVAIL} is {})", short(a))
            }
            (Some(f), Some(_)) => format!("set by {AVAIL} (--max-memory is {})", short(f)),
            (Some(_), None) => "set by --max-memory".into(),
            (None, Some(_)) => format!("set by {AVAIL} (no --max-memory given)"),
            (None, None) => "none".into(),
        }
    }
}

/// MemAvailable from /proc/meminfo, in bytes.
pub fn mem_available() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let l = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    l.split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}

/// A byte count written short: `512 bytes`, `4.00 KiB`, `1.50 GiB`.
pub fn short(n: u64) -> String {
    foveate_core::fmt_bytes_short(n)
}

/// A size: plain bytes (`4096`, `4096B`), binary units `K M G T` with or without `iB` (`8G`,
/// `8GiB`: 8·2³⁰), or decimal `KB MB GB TB` (`8GB`: 8·10⁹); a fraction is allowed (`1.5G`),
/// units are case-insensitive. Zero, negative, empty or unknown units are refused by name.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim());
    let bad = |why: &str| {
        format!("`{s}` is not a size ({why}; e.g. 8G, 8GiB, 500M, 1.5GB or plain bytes)")
    };
    if num.is_empty() {
        return Err(bad("no number"));
    }
    let v: f64 = num.parse().map_err(|_| bad("bad number"))?;
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024f64.powi(2),
        "g" | "gib" => 1024f64.powi(3),
        "t" | "tib" => 1024f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => return Err(bad(&format!("unknown unit `{unit}`"))),
    };
    let bytes = (v * mult).round();
    if bytes < 1.0 {
        return Err(bad("must be at least 1 byte"));
    }
    if bytes >= u64::MAX as f64 {
        return Err(bad("too large"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_every_spelling() {
        let g = 1u64 << 30;
        for (s, want) in [
            ("8G", 8 * g),
            ("8GiB", 8 * g),
            ("8gib", 8 * g),
            (" 8 G ", 8 * g),
            ("1.5G", 3 * g / 2),
            ("500M", 500 << 20),
            ("500MiB", 500 << 20),
            ("1K", 1024),
            ("1k", 1024),
            ("2T", 2 << 40),
            ("8GB", 8_000_000_000),
            ("500MB", 500_000_000),
            ("1KB", 1000),
            ("4096", 4096),
            ("4096B", 4096),
        ] {
            assert_eq!(parse_size(s), Ok(want), "{s}");
        }
        for s in ["", "G", "0", "0G", "-1G", "1.2.3G", "8X", "8 gigs", "1e3"] {
            let e = parse_size(s).expect_err(s);
            assert!(e.contains(&format!("`{s}` is not a size")), "{s}: {e}");
        }
        assert!(parse_size("8X").unwrap_err().contains("unknown unit `X`"));
        assert!(parse_size("99999999999T")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn budget_is_the_smaller_limit_and_says_which() {
        let g = 1u64 << 30;
        let b = Budget {
            flag: Some(g),
            available: Some(8 * g),
        };
        assert_eq!(b.bytes(), Some(g));
        assert_eq!(
            b.source(),
            "set by --max-memory (MemAvailable in /proc/meminfo is 8.00 GiB)"
        );
        let b = Budget {
            flag: Some(16 * g),
            available: Some(8 * g),
        };
        assert_eq!(b.bytes(), Some(8 * g));
        assert_eq!(
            b.source(),
            "set by MemAvailable in /proc/meminfo (--max-memory is 16.00 GiB)"
        );
        assert_eq!(Budget::default().bytes(), None);
        assert_eq!(short(1536), "1.50 KiB");
        assert_eq!(short(100), "100 bytes");
    }
}
