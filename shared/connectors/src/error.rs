/// Why a delivery was refused at the door. All of these are answered 401
/// and nothing of the body is kept (design rule 7).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("missing {0} header")]
    MissingSignature(&'static str),
    #[error("malformed {0} header")]
    MalformedSignature(&'static str),
    #[error("signature does not match the body")]
    BadSignature,
    #[error("signature timestamp is {0} s away from now (more than 300 s)")]
    StaleSignature(i64),
}
