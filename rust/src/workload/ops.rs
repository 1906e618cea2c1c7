//! Checking and transforming workloads: validation, truncation, rate statistics and rescaling.

use std::collections::HashSet;

use super::{RequestSpec, Workload};
use crate::error::{Error, Result, check_positive};

impl Workload {
    /// A workload from caller-built requests, validated (see [`Workload::validate`]); no warnings. An empty list
    /// is refused ([`Error::InvalidTrace`]), like an empty trace file: there is nothing to simulate or plan with.
    pub fn from_specs(specs: Vec<RequestSpec>) -> Result<Workload> {
        if specs.is_empty() {
            return Err(Error::trace("the workload has no requests; at least one is needed"));
        }
        let w = Workload { requests: specs, warnings: Vec::new() };
        w.validate()?;
        Ok(w)
    }

    /// Number of requests.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// True when there are no requests.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Checks every invariant a simulation relies on.
    ///
    /// Each request needs a finite, non-negative arrival and lengths >= 1 ([`Error::InvalidRequest`]); arrivals
    /// must be in non-decreasing order and ids unique ([`Error::InvalidTrace`], located by request index).
    pub fn validate(&self) -> Result<()> {
        let mut ids = HashSet::with_capacity(self.requests.len());
        let mut previous: Option<&RequestSpec> = None;
        for (index, r) in self.requests.iter().enumerate() {
            let bad = |reason: String| Error::InvalidRequest { id: r.id, reason };
            if !r.arrival.is_finite() || r.arrival < 0.0 {
                return Err(bad(format!("arrival time {} is not a finite number >= 0", r.arrival)));
            }
            if r.prompt_len == 0 {
                return Err(bad("prompt_len is 0; must be >= 1".into()));
            }
            if r.output_len == 0 {
                return Err(bad("output_len is 0; must be >= 1".into()));
            }
            if let Some(p) = previous {
                if r.arrival < p.arrival {
                    return Err(Error::trace_at(
                        format!("request index {index}"),
                        format!(
                            "arrivals are not sorted: request {} arrives at {} s, before request {} at {} s",
                            r.id, r.arrival, p.id, p.arrival
                        ),
                    ));
                }
            }
            if !ids.insert(r.id) {
                return Err(Error::trace_at(
                    format!("request index {index}"),
                    format!("duplicate request id {}", r.id),
                ));
            }
            previous = Some(r);
        }
        Ok(())
    }

    /// The first `n` requests (all of them when `n` is larger), with the same warnings.
    pub fn truncated(&self, n: usize) -> Workload {
        let n = n.min(self.requests.len());
        Workload { requests: self.requests[..n].to_vec(), warnings: self.warnings.clone() }
    }

    /// The mean arrival rate `(n − 1) / (last − first)` in requests per second; `None` with fewer than 2
    /// requests or when all arrive at the same instant.
    pub fn mean_rate(&self) -> Option<f64> {
        let (first, last) = (self.requests.first()?, self.requests.last()?);
        let span = last.arrival - first.arrival;
        (self.requests.len() >= 2 && span > 0.0).then(|| (self.requests.len() - 1) as f64 / span)
    }

    /// A copy whose arrival times are all multiplied by one factor so that [`Workload::mean_rate`] equals
    /// `rate`. Scaling is about time 0, so a workload starting at 0 still starts at 0; gaps keep their shape.
    pub fn rescaled_to_rate(&self, rate: f64) -> Result<Workload> {
        check_positive("target rate", rate)?;
        let n = self.requests.len();
        if n < 2 {
            return Err(Error::config(format!(
                "cannot rescale to a rate: the workload has {n} request(s), at least 2 are needed to define a rate"
            )));
        }
        let Some(current) = self.mean_rate() else {
            return Err(Error::config(
                "cannot rescale to a rate: all requests arrive at the same time (zero time span)",
            ));
        };
        let factor = current / rate;
        let requests: Vec<RequestSpec> =
            self.requests.iter().map(|r| RequestSpec { arrival: r.arrival * factor, ..*r }).collect();
        if requests.iter().any(|r| !r.arrival.is_finite()) {
            return Err(Error::config(format!("target rate {rate} is too small: arrival times overflow")));
        }
        Ok(Workload { requests, warnings: self.warnings.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: u64, arrival: f64) -> RequestSpec {
        RequestSpec { id, arrival, prompt_len: 8, output_len: 4, type_id: None }
    }

    #[test]
    fn from_specs_accepts_a_sorted_workload() {
        let w = Workload::from_specs(vec![spec(3, 0.0), spec(1, 0.0), spec(2, 2.5)]).unwrap();
        assert_eq!(w.len(), 3);
        assert!(!w.is_empty() && w.warnings.is_empty());
        let err = Workload::from_specs(vec![]).unwrap_err();
        assert!(matches!(&err, Error::InvalidTrace { reason, .. } if reason.contains("no requests")), "{err}");
    }

    #[test]
    fn validate_rejects_each_broken_invariant() {
        let cases: Vec<(Vec<RequestSpec>, &str)> = vec![
            (vec![spec(0, 1.0), spec(1, 0.5)], "not sorted"),
            (vec![spec(0, 0.0), spec(0, 1.0)], "duplicate request id 0"),
            (vec![spec(0, f64::NAN)], "arrival time NaN"),
            (vec![spec(0, f64::INFINITY)], "arrival time inf"),
            (vec![spec(0, -1.0)], "arrival time -1"),
            (vec![RequestSpec { prompt_len: 0, ..spec(7, 0.0) }], "prompt_len is 0"),
            (vec![RequestSpec { output_len: 0, ..spec(7, 0.0) }], "output_len is 0"),
        ];
        for (specs, what) in cases {
            let err = Workload::from_specs(specs).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(what), "{what}: {msg}");
            match err {
                Error::InvalidRequest { .. } => assert!(what.contains("is 0") || what.contains("arrival time")),
                Error::InvalidTrace { location, .. } => assert_eq!(location.as_deref(), Some("request index 1")),
                other => panic!("unexpected variant {other:?}"),
            }
        }
    }

    #[test]
    fn truncated_keeps_a_prefix() {
        let w = Workload { requests: (0..5).map(|i| spec(i, i as f64)).collect(), warnings: vec!["w".into()] };
        let t = w.truncated(2);
        assert_eq!(t.requests, w.requests[..2]);
        assert_eq!(t.warnings, w.warnings);
        assert_eq!(w.truncated(99), w);
        assert!(w.truncated(0).is_empty());
    }

    #[test]
    fn mean_rate_and_rescaling() {
        let w = Workload::from_specs((0..11).map(|i| spec(i, 1.0 + 0.5 * i as f64)).collect()).unwrap();
        assert!((w.mean_rate().unwrap() - 2.0).abs() < 1e-12);
        let r = w.rescaled_to_rate(8.0).unwrap();
        assert!((r.mean_rate().unwrap() - 8.0).abs() < 1e-9);
        assert!((r.requests[0].arrival - 0.25).abs() < 1e-12, "scaled about time 0");
        r.validate().unwrap();
        assert_eq!(w.truncated(1).mean_rate(), None);
        assert_eq!(Workload::default().mean_rate(), None);
    }

    #[test]
    fn rescaling_explains_why_it_cannot() {
        let one = Workload::from_specs(vec![spec(0, 1.0)]).unwrap();
        let msg = one.rescaled_to_rate(1.0).unwrap_err().to_string();
        assert!(msg.contains("at least 2"), "{msg}");
        let same = Workload::from_specs(vec![spec(0, 1.0), spec(1, 1.0)]).unwrap();
        let msg = same.rescaled_to_rate(1.0).unwrap_err().to_string();
        assert!(msg.contains("same time"), "{msg}");
        assert!(matches!(same.rescaled_to_rate(0.0), Err(Error::InvalidConfig(m)) if m.contains("target rate")));
    }
}
