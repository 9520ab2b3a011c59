/// What can go wrong in the AWS adapters; mapped once onto the core's error
/// at the port, and onto a retryable or final `Diagnostic` at the handler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("missing environment variables: {0}")]
    Config(String),
    #[error("{service}: {detail}")]
    Sdk {
        service: &'static str,
        detail: String,
    },
    #[error("stored item {key}: {detail}")]
    Decode { key: String, detail: String },
    #[error("encode: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("unknown queue {0:?}: no URL configured")]
    UnknownQueue(String),
    #[error(transparent)]
    Core(#[from] tally_core::Error),
}

impl Error {
    pub(crate) fn sdk<E: std::fmt::Debug>(service: &'static str, e: E) -> Self {
        Error::Sdk {
            service,
            detail: format!("{e:?}"),
        }
    }
}

impl From<Error> for tally_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(c) => c,
            Error::Decode { key, detail } => tally_core::Error::Corrupt { key, detail },
            // Throttling, timeouts, a missing queue URL: nothing the input
            // did; retry later (a misconfiguration shows up in the DLQ).
            other => tally_core::Error::Unavailable(other.to_string()),
        }
    }
}
