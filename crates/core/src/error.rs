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
    /// Out of device memory: how much was asked for and how much was free.
    #[error("backend `{backend}`: out of memory allocating {requested} bytes ({free} bytes free)")]
    OutOfMemory { backend: String, requested: u64, free: u64 },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io { path: PathBuf, #[source] source: std::io::Error },
    /// A file was read but its content is wrong: names the file and the field/tensor/record.
    #[error("{file}: {field}: {msg}")]
    Format { file: String, field: String, msg: String },
    #[error("{0}")]
    Msg(String),
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
