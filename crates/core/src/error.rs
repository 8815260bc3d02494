use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error names the thing that is wrong: the op and the argument, the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An op was given inputs whose shapes or dtypes do not fit its spec.
    #[error("{op}: {msg}")]
    Shape { op: &'static str, msg: String },
    /// The backend cannot run this op / dtype / variant; `what` says which and why.
    #[error("backend `{backend}` does not support {what}")]
    Unsupported { backend: String, what: String },
    /// The backend itself is absent here (no adapter, no driver library, ...).
    #[error("backend `{backend}` is unavailable: {reason}")]
    Unavailable { backend: String, reason: String },
    /// A device-side failure (launch, allocation, compile, ...).
    #[error("backend `{backend}`: {msg}")]
    Device { backend: String, msg: String },
    /// Out of device memory: how much was asked for and how much was free ([`FREE_UNKNOWN`] when
    /// the backend cannot tell).
    #[error("{}", oom_message(backend, *requested, *free))]
    OutOfMemory { backend: String, requested: u64, free: u64 },
    /// A load refused before anything was allocated: its estimated memory need (`need` bytes)
    /// exceeds the memory budget (`budget` bytes); `msg` names the model, breaks the need down and
    /// says where the budget came from.
    #[error("{msg}")]
    OverBudget { need: u64, budget: u64, msg: String },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io { path: PathBuf, #[source] source: std::io::Error },
    /// A file was read but its content is wrong: names the file and the field/tensor/record.
    #[error("{file}: {field}: {msg}")]
    Format { file: String, field: String, msg: String },
    #[error("{0}")]
    Msg(String),
}

/// `free` of [`Error::OutOfMemory`] when the backend cannot report its free memory (wgpu).
pub const FREE_UNKNOWN: u64 = u64::MAX;

/// A byte count for people: `1610612736 bytes (1.50 GiB)`; below 1 KiB just the bytes.
pub fn fmt_bytes(n: u64) -> String {
    if n < 1024 {
        return format!("{n} bytes");
    }
    format!("{n} bytes ({})", fmt_bytes_short(n))
}

/// `n` in the largest binary unit that keeps it at least 1, two decimals (`1.50 GiB`), or
/// `N bytes` under 1 KiB.
pub fn fmt_bytes_short(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.2} {}", UNITS[u])
}

/// The text of [`Error::OutOfMemory`]: what was asked for and what was free.
pub fn oom_message(backend: &str, requested: u64, free: u64) -> String {
    let free = if free == FREE_UNKNOWN {
        "free memory unknown: the backend does not report it".to_string()
    } else {
        format!("{} free", fmt_bytes(free))
    };
    format!("backend `{backend}`: out of memory: asked for {}, {free}", fmt_bytes(requested))
}

/// Reads a text file; bytes that are not UTF-8 are an [`Error::Format`] naming the file and the
/// byte offset (not a bare I/O error).
pub fn read_utf8(path: &std::path::Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        Error::format(
            path.display().to_string(),
            "(encoding)",
            format!("not valid UTF-8 (first bad byte at offset {})", e.utf8_error().valid_up_to()),
        )
    })
}

/// Writes `bytes` to `path` through `<path>.tmp` (synced, then renamed into place), so a crash or a
/// full disk leaves either the old file or the new one, never half of one; the temporary file is
/// removed on failure.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

impl Error {
    pub fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape { op, msg: msg.into() }
    }
    pub fn format(file: impl Into<String>, field: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Format { file: file.into(), field: field.into(), msg: msg.into() }
    }
    pub fn unsupported(backend: impl Into<String>, what: impl Into<String>) -> Self {
        Error::Unsupported { backend: backend.into(), what: what.into() }
    }
    pub fn device(backend: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Device { backend: backend.into(), msg: msg.into() }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_says_asked_and_free() {
        let e = Error::OutOfMemory { backend: "cuda".into(), requested: 3 << 30, free: 512 << 20 };
        assert_eq!(
            e.to_string(),
            "backend `cuda`: out of memory: asked for 3221225472 bytes (3.00 GiB), 536870912 bytes (512.00 MiB) free"
        );
        let e = Error::OutOfMemory { backend: "wgpu".into(), requested: 100, free: FREE_UNKNOWN };
        assert_eq!(e.to_string(), "backend `wgpu`: out of memory: asked for 100 bytes, free memory unknown: the backend does not report it");
        assert_eq!(fmt_bytes(1536), "1536 bytes (1.50 KiB)");
    }

    #[test]
    fn non_utf8_file_names_file_and_offset() {
        let p = std::env::temp_dir().join(format!("foveate-core-utf8-{}.json", std::process::id()));
        std::fs::write(&p, b"{\"a\": \"\xff\"}").unwrap();
        let e = read_utf8(&p).unwrap_err().to_string();
        assert!(e.contains(&p.display().to_string()) && e.contains("(encoding): not valid UTF-8 (first bad byte at offset 7)"), "{e}");
        std::fs::write(&p, "{}").unwrap();
        assert_eq!(read_utf8(&p).unwrap(), "{}");
        let _ = std::fs::remove_file(&p);
    }
}
