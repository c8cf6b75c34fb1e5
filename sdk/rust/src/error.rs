use std::fmt;

use crate::__private::bindings::latch::workflow::types as wit;

/// The result of SDK calls and of a workflow's `run`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failure: returned by engine calls, and by `run` to fail the run with this code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// A stable machine-readable code, such as `bad-input`, `closed` or `token-taken`.
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

impl Error {
    /// Makes an error with this code and message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Error { code: code.into(), message: message.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

/// JSON that cannot be read or written becomes an error with code `json`.
impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Error::new("json", error.to_string())
    }
}

impl From<wit::Error> for Error {
    fn from(error: wit::Error) -> Self {
        Error::new(error.code, error.message)
    }
}
