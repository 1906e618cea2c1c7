//! The one error type of the core crate.
//!
//! Every fallible public function returns [`Result`]. The binding crate maps each variant to its own Python
//! exception class (see `bindings/src/errors.rs`), so a new variant here needs a new class there.

use thiserror::Error;

/// Everything that can go wrong in `fluidsched-core`.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Error {
    /// A configuration value is out of range or inconsistent (zero memory, NaN rate, unknown policy option, ...).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// A request's own fields are unusable (zero prompt length, too long to ever fit in the KV cache, ...).
    #[error("invalid request {id}: {reason}")]
    InvalidRequest {
        /// The caller's id for the request.
        id: u64,
        /// What is wrong with it.
        reason: String,
    },

    /// A trace file or workload description could not be read.
    #[error("invalid trace{}: {reason}", location.as_ref().map(|l| format!(" ({l})")).unwrap_or_default())]
    InvalidTrace {
        /// Where the problem is, for example `line 12, column "ContextTokens"`.
        location: Option<String>,
        /// What is wrong.
        reason: String,
    },

    /// A request id that the scheduler does not hold.
    #[error("unknown request id {0}")]
    UnknownRequest(u64),

    /// A request id that the scheduler already holds.
    #[error("duplicate request id {0}")]
    DuplicateRequest(u64),

    /// The step API was driven out of order (for example `complete_step` without a pending `schedule`).
    #[error("invalid call order: {0}")]
    InvalidState(String),

    /// The scheduler has work but can make no progress and has nothing to wait for: a policy bug, surfaced
    /// instead of a hang.
    #[error("scheduler stalled: {0}")]
    Stalled(String),
}

/// `Result` with the crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::InvalidConfig`].
    pub fn config(msg: impl Into<String>) -> Self {
        Error::InvalidConfig(msg.into())
    }

    /// Shorthand for [`Error::InvalidTrace`] without a location.
    pub fn trace(reason: impl Into<String>) -> Self {
        Error::InvalidTrace {
            location: None,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::InvalidTrace`] at a location.
    pub fn trace_at(location: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidTrace {
            location: Some(location.into()),
            reason: reason.into(),
        }
    }
}

/// Checks that `value` is finite and strictly positive, naming it in the error otherwise.
pub fn check_positive(name: &str, value: f64) -> Result<f64> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(Error::config(format!(
            "{name} must be a finite number > 0, got {value}"
        )))
    }
}

/// Checks that `value` is finite and non-negative, naming it in the error otherwise.
pub fn check_non_negative(name: &str, value: f64) -> Result<f64> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(Error::config(format!(
            "{name} must be a finite number >= 0, got {value}"
        )))
    }
}
