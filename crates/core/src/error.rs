use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum CoreError {
    #[error("unknown {kind} '{id}' (known: {known})")]
    UnknownId {
        kind: &'static str,
        id: String,
        known: String,
    },
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// A count or size past what emorl accepts (the message names it).
    #[error("{0}")]
    OutOfBounds(String),
    /// A checkpointed state could not be saved or does not fit.
    #[error("checkpoint state: {0}")]
    State(String),
    #[error("environment '{env}' is not deterministic: {detail}")]
    NotDeterministic { env: String, detail: String },
}
