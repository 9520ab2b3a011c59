//! The one error type of tally-core, shared by the ports so that every
//! adapter reports conflicts and duplicates the same way.

use crate::Reasons;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is wrong and will stay wrong: a 4xx, a quarantine entry.
    #[error("invalid: {0}")]
    Invalid(Reasons),
    /// A version check failed: somebody wrote first. Retry from a fresh read.
    #[error("conflict: {0} changed since it was read")]
    Conflict(String),
    /// The causing event was applied before (idempotency marker present).
    #[error("event {0} was already applied")]
    AlreadyApplied(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The backend is unreachable, throttled or timed out: retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be decoded: a bug or a manual edit, never input.
    #[error("corrupt record {key}: {detail}")]
    Corrupt { key: String, detail: String },
}

impl Error {
    /// Transient errors are worth retrying; everything else is final.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Conflict(_) | Error::Unavailable(_))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
