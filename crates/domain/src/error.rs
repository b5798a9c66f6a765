use std::error::Error as StdError;

/// A value from the outside world that does not satisfy a domain rule.
/// `field` names the offending input so the API can point at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// What a repository can report. Storage details stay inside `Unexpected`,
/// which the API maps to an opaque 500 after logging it.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// A uniqueness rule the caller can act on (an email already registered).
    #[error("email already registered")]
    EmailTaken,
    /// The row changed under us (optimistic check failed); re-read and decide again.
    #[error("the record was changed concurrently")]
    Conflict,
    #[error("storage failure: {0}")]
    Unexpected(#[source] Box<dyn StdError + Send + Sync>),
}

impl RepositoryError {
    pub fn unexpected(error: impl StdError + Send + Sync + 'static) -> Self {
        Self::Unexpected(Box::new(error))
    }
}
