//! The model's maximum sequence length (vLLM's `--max-model-len`, Vidur's `max_tokens`) and what happens to a
//! request whose prompt + output exceeds it ([`OverLength`]).
//!
//! A request of prompt `p` and output `o` tokens fits a model length `N` when `p + o <= N` (vLLM's and Vidur's
//! rule: the prompt plus the requested output tokens must not exceed the context). One that does not is:
//! - [`OverLength::Reject`]: not served at all (vLLM's server answers such a request with an error);
//! - [`OverLength::Trim`]: served with its prompt cut to `N − o` tokens, as Vidur's `trace_replay` request
//!   generator cuts it; when the output alone leaves no room for a prompt (`o >= N`), the output is cut to
//!   `N − 1` tokens and the prompt to 1 (Vidur would compute a prompt of `N − o <= 0` tokens there);
//! - [`OverLength::Keep`]: served unchanged, as if there were no limit.
//!
//! [`ModelLen::apply`] turns a workload into the requests that are served, with their lengths; the simulator
//! runs exactly those, so a run with `Reject` equals a run without the rejected requests.

use std::fmt;

use super::{RequestSpec, Workload};
use crate::error::{Error, Result};

/// Smallest model length: one prompt token and one output token.
pub const MIN_MODEL_LEN: u32 = 2;

/// The error for a bad `max_model_len` value (anything that is not an integer from [`MIN_MODEL_LEN`] to
/// `u32::MAX`), shared with the bindings so every caller sees the same message.
pub fn max_model_len_error(value: impl fmt::Display) -> Error {
    Error::config(format!(
        "max_model_len must be an integer from {MIN_MODEL_LEN} to {} tokens (prompt + output), got {value}",
        u32::MAX
    ))
}

/// What happens to a request whose prompt + output exceeds the model length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverLength {
    /// Not served; counted in `num_rejected` (vLLM's server returns an error for it).
    Reject,
    /// Prompt cut so that prompt + output fits (Vidur's behaviour); the default.
    #[default]
    Trim,
    /// Served unchanged (the limit is ignored).
    Keep,
}

impl OverLength {
    /// Every mode's name, in the order the CLI lists them.
    pub const NAMES: &'static [&'static str] = &["reject", "trim", "keep"];

    /// The mode called `name` (`"reject"`, `"trim"` or `"keep"`).
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "reject" => Ok(OverLength::Reject),
            "trim" => Ok(OverLength::Trim),
            "keep" => Ok(OverLength::Keep),
            other => Err(Error::config(format!("over_length must be \"reject\", \"trim\" or \"keep\", got {other:?}"))),
        }
    }

    /// The mode's name.
    pub fn name(self) -> &'static str {
        match self {
            OverLength::Reject => "reject",
            OverLength::Trim => "trim",
            OverLength::Keep => "keep",
        }
    }
}

impl fmt::Display for OverLength {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The model length limit of a simulation. The default (`max_model_len: None`) is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModelLen {
    /// Most prompt + output tokens a request may have; `None`: unlimited.
    pub max_model_len: Option<u32>,
    /// What happens to a request above the limit.
    pub over_length: OverLength,
}

/// What [`ModelLen::apply`] did to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthOutcome {
    /// Served with its own lengths (within the limit, no limit, or [`OverLength::Keep`]).
    Unchanged,
    /// Served with shorter lengths ([`OverLength::Trim`]).
    Trimmed,
    /// Not served ([`OverLength::Reject`]).
    Rejected,
}

/// The requests a simulation serves, after the model length limit.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedWorkload {
    /// The served requests, in the original order, with the lengths they are served with (trimmed ones cut);
    /// rejected requests are left out. Ids and warnings are the original workload's.
    pub workload: Workload,
    /// For each served request, its position in the original workload.
    pub positions: Vec<usize>,
    /// For each request of the original workload, what the limit did to it.
    pub outcomes: Vec<LengthOutcome>,
}

impl ServedWorkload {
    /// Requests rejected by the limit.
    pub fn num_rejected(&self) -> usize {
        self.outcomes.iter().filter(|&&o| o == LengthOutcome::Rejected).count()
    }

    /// Requests served with trimmed lengths.
    pub fn num_trimmed(&self) -> usize {
        self.outcomes.iter().filter(|&&o| o == LengthOutcome::Trimmed).count()
    }
}

impl ModelLen {
    /// A limit of `max_model_len` tokens (`None`: unlimited) with the given mode, validated.
    pub fn new(max_model_len: Option<u32>, over_length: OverLength) -> Result<Self> {
        let m = ModelLen { max_model_len, over_length };
        m.validate()?;
        Ok(m)
    }

    /// Checks that the limit, if any, is at least [`MIN_MODEL_LEN`].
    pub fn validate(&self) -> Result<()> {
        match self.max_model_len {
            Some(n) if n < MIN_MODEL_LEN => Err(max_model_len_error(n)),
            _ => Ok(()),
        }
    }

    /// The lengths request `(prompt_len, output_len)` is served with, or `None` when it is rejected.
    pub fn limit(&self, prompt_len: u32, output_len: u32) -> Option<(u32, u32)> {
        let Some(n) = self.max_model_len else {
            return Some((prompt_len, output_len));
        };
        if u64::from(prompt_len) + u64::from(output_len) <= u64::from(n) {
            return Some((prompt_len, output_len));
        }
        match self.over_length {
            OverLength::Keep => Some((prompt_len, output_len)),
            OverLength::Reject => None,
            OverLength::Trim if output_len < n => Some((n - output_len, output_len)),
            OverLength::Trim => Some((1, n - 1)),
        }
    }

    /// The requests of `workload` that are served, with the lengths they are served with.
    pub fn apply(&self, workload: &Workload) -> Result<ServedWorkload> {
        self.validate()?;
        let n = workload.requests.len();
        let mut requests = Vec::with_capacity(n);
        let mut positions = Vec::with_capacity(n);
        let mut outcomes = Vec::with_capacity(n);
        for (i, r) in workload.requests.iter().enumerate() {
            match self.limit(r.prompt_len, r.output_len) {
                None => outcomes.push(LengthOutcome::Rejected),
                Some((prompt_len, output_len)) => {
                    let changed = (prompt_len, output_len) != (r.prompt_len, r.output_len);
                    outcomes.push(if changed { LengthOutcome::Trimmed } else { LengthOutcome::Unchanged });
                    requests.push(RequestSpec { prompt_len, output_len, ..*r });
                    positions.push(i);
                }
            }
        }
        Ok(ServedWorkload { workload: Workload { requests, warnings: workload.warnings.clone() }, positions, outcomes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(n: u32, mode: OverLength) -> ModelLen {
        ModelLen::new(Some(n), mode).unwrap()
    }

    #[test]
    fn no_limit_serves_everything_unchanged() {
        let m = ModelLen::default();
        assert_eq!(m.over_length, OverLength::Trim);
        assert_eq!(m.limit(u32::MAX, u32::MAX), Some((u32::MAX, u32::MAX)));
    }

    #[test]
    fn requests_within_the_limit_are_untouched_in_every_mode() {
        for mode in [OverLength::Reject, OverLength::Trim, OverLength::Keep] {
            let m = limit(100, mode);
            assert_eq!(m.limit(60, 40), Some((60, 40)), "{mode}");
            assert_eq!(m.limit(1, 1), Some((1, 1)), "{mode}");
            assert_eq!(m.limit(99, 1), Some((99, 1)), "{mode}");
        }
    }

    #[test]
    fn each_mode_handles_an_over_length_request() {
        assert_eq!(limit(100, OverLength::Reject).limit(61, 40), None);
        assert_eq!(limit(100, OverLength::Keep).limit(61, 40), Some((61, 40)));
        // Trim cuts the prompt (Vidur's trace_replay rule) ...
        assert_eq!(limit(100, OverLength::Trim).limit(61, 40), Some((60, 40)));
        assert_eq!(limit(100, OverLength::Trim).limit(5000, 99), Some((1, 99)));
        // ... and, when the output alone leaves no room for a prompt, the output to N - 1 and the prompt to 1.
        assert_eq!(limit(100, OverLength::Trim).limit(1, 100), Some((1, 99)));
        assert_eq!(limit(100, OverLength::Trim).limit(30, 5000), Some((1, 99)));
        assert_eq!(limit(2, OverLength::Trim).limit(u32::MAX, u32::MAX), Some((1, 1)));
    }

    #[test]
    fn apply_maps_positions_and_outcomes() {
        let spec = |id: u64, p: u32, o: u32| RequestSpec {
            id,
            arrival: id as f64,
            prompt_len: p,
            output_len: o,
            type_id: None,
        };
        let w = Workload {
            requests: vec![spec(10, 50, 50), spec(11, 90, 20), spec(12, 5, 200), spec(13, 1, 1)],
            warnings: vec!["w".into()],
        };
        let served = limit(100, OverLength::Reject).apply(&w).unwrap();
        assert_eq!(served.positions, vec![0, 3]);
        assert_eq!(served.workload.requests, vec![w.requests[0], w.requests[3]]);
        assert_eq!(served.workload.warnings, w.warnings);
        assert_eq!((served.num_rejected(), served.num_trimmed()), (2, 0));

        let served = limit(100, OverLength::Trim).apply(&w).unwrap();
        assert_eq!(served.positions, vec![0, 1, 2, 3]);
        let lengths: Vec<(u64, u32, u32)> =
            served.workload.requests.iter().map(|r| (r.id, r.prompt_len, r.output_len)).collect();
        assert_eq!(lengths, vec![(10, 50, 50), (11, 80, 20), (12, 1, 99), (13, 1, 1)]);
        use LengthOutcome::*;
        assert_eq!(served.outcomes, vec![Unchanged, Trimmed, Trimmed, Unchanged]);

        let served = limit(100, OverLength::Keep).apply(&w).unwrap();
        assert_eq!(served.workload.requests, w.requests);
        assert_eq!((served.num_rejected(), served.num_trimmed()), (0, 0));
        assert_eq!(ModelLen::default().apply(&w).unwrap().workload, w);
    }

    #[test]
    fn bad_values_name_the_option() {
        for n in [0, 1] {
            let err = ModelLen::new(Some(n), OverLength::Trim).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidConfig(m) if m.contains("max_model_len") && m.contains(&format!("got {n}"))),
                "{err}"
            );
        }
        let err = OverLength::from_name("drop").unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains("over_length") && m.contains("\"drop\"")),
            "{err}"
        );
        for &name in OverLength::NAMES {
            assert_eq!(OverLength::from_name(name).unwrap().name(), name);
        }
    }
}
