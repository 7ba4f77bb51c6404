//! Why `hvm` failed, and the exit status that says so.

/// Why `hvm` failed.
#[derive(Debug)]
pub enum Error {
    /// Bad command line (exit status 2).
    Usage(String),
    /// Anything else (exit status 1).
    Failed(String),
}

impl Error {
    /// A failure with this message.
    pub fn failed(msg: impl Into<String>) -> Error {
        Error::Failed(msg.into())
    }

    /// A usage error with this message.
    pub fn usage(msg: impl Into<String>) -> Error {
        Error::Usage(msg.into())
    }
}
