//! Request types derived from a trace, for users who have lengths rather than types.
//!
//! Rule (quantile bins of the output length):
//! 1. Lengths of 0 are read as 1 (traces count words; an empty answer still takes one iteration).
//! 2. Requests are sorted by output length and cut into `num_bins` bins of (nearly) equal counts. A cut never
//!    separates equal output lengths: a bin is extended to include every request with its last length, so a
//!    trace with few distinct lengths yields fewer bins.
//! 3. Each bin becomes one type: prompt length = the bin's mean prompt, output length = its mean output (both
//!    rounded to the nearest integer, at least 1), rate = `total_rate × (bin count / trace count)`.
//!
//! Using the bin's mean output underestimates the memory of a bin with spread-out lengths (the KV a request
//! holds over its life grows like the square of its output length); more bins shrink the error.

use crate::error::{Error, Result, check_positive};
use crate::workload::RequestType;

/// Derives `num_bins` (or fewer) request types from paired prompt and output lengths by quantile-binning the
/// output lengths (see the module documentation for the exact rule). `total_rate` is the trace's arrival rate
/// in requests per second; each type gets the share of it that its bin holds.
pub fn types_from_lengths(
    prompt: &[u32],
    output: &[u32],
    total_rate: f64,
    num_bins: usize,
) -> Result<Vec<RequestType>> {
    if prompt.len() != output.len() {
        return Err(Error::config(format!(
            "types_from_lengths: {} prompt lengths but {} output lengths; they must be paired",
            prompt.len(),
            output.len()
        )));
    }
    if prompt.is_empty() {
        return Err(Error::config("types_from_lengths: the trace has no requests"));
    }
    if num_bins == 0 {
        return Err(Error::config("types_from_lengths: num_bins must be >= 1"));
    }
    check_positive("types_from_lengths: total_rate", total_rate)?;
    let mut pairs: Vec<(u32, u32)> = output.iter().zip(prompt).map(|(&o, &p)| (o.max(1), p.max(1))).collect();
    pairs.sort_unstable();
    let n = pairs.len();
    let mut types = Vec::with_capacity(num_bins.min(n));
    let mut start = 0;
    for bin in 1..=num_bins {
        if start >= n {
            break;
        }
        let mut end = (n * bin).div_ceil(num_bins).max(start + 1).min(n);
        while end < n && pairs[end].0 == pairs[end - 1].0 {
            end += 1;
        }
        let members = &pairs[start..end];
        let count = members.len() as f64;
        let mean_output = members.iter().map(|&(o, _)| f64::from(o)).sum::<f64>() / count;
        let mean_prompt = members.iter().map(|&(_, p)| f64::from(p)).sum::<f64>() / count;
        types.push(RequestType {
            prompt_len: (mean_prompt.round() as u32).max(1),
            output_len: (mean_output.round() as u32).max(1),
            rate: total_rate * count / n as f64,
        });
        start = end;
    }
    Ok(types)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_quantiles_with_means_and_shares() {
        let output = [10, 20, 30, 40, 0, 100, 200, 300];
        let prompt = [1, 1, 1, 1, 5, 5, 5, 5];
        let t = types_from_lengths(&prompt, &output, 8.0, 2).unwrap();
        assert_eq!(t.len(), 2);
        // Sorted outputs: 1 (from 0), 10, 20, 30 | 40, 100, 200, 300.
        assert_eq!(t[0].output_len, 15); // (1 + 10 + 20 + 30) / 4 = 15.25
        assert_eq!(t[1].output_len, 160);
        assert_eq!(t[0].rate, 4.0);
        assert_eq!(t[0].prompt_len, 2); // (5 + 1 + 1 + 1) / 4
    }

    #[test]
    fn equal_lengths_stay_in_one_bin() {
        let t = types_from_lengths(&[3; 6], &[7, 7, 7, 7, 7, 9], 6.0, 3).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].output_len, t[0].rate), (7, 5.0));
        assert!(types_from_lengths(&[1], &[1, 2], 1.0, 1).is_err());
        assert!(types_from_lengths(&[1], &[1], f64::NAN, 1).is_err());
    }
}
