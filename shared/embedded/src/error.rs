/// What can go wrong inside the SQLite adapter; mapped once onto the
/// core's error at the port.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored JSON of {key}: {source}")]
    Decode {
        key: String,
        source: serde_json::Error,
    },
    #[error("encode: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("the database worker stopped: {0}")]
    Worker(String),
    /// A core error raised inside a transaction (conflict, duplicate).
    #[error(transparent)]
    Core(#[from] tally_core::Error),
}

impl From<Error> for tally_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(c) => c,
            Error::Decode { key, source } => tally_core::Error::Corrupt {
                key,
                detail: source.to_string(),
            },
            // A locked or busy file, a full disk, a stopped worker: worth a
            // retry later; never the input's fault.
            other => tally_core::Error::Unavailable(other.to_string()),
        }
    }
}
