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
    #[error("environment '{env}' is not deterministic: {detail}")]
    NotDeterministic { env: String, detail: String },
}
