//! Synthetic arrival processes: Poisson and Gamma renewal processes, for traces that carry only lengths.
//!
//! Both are renewal processes: inter-arrival gaps are i.i.d. with mean `1 / rate`. The Gamma process has gaps
//! with coefficient of variation `cv` (shape `k = 1 / cv²`, scale `1 / (rate · k)`): `cv < 1` is smoother than
//! Poisson, `cv > 1` burstier, and `cv = 1` is exactly the Poisson process (same draws, bit for bit).
//!
//! The first request arrives after one gap, not at time 0, so the process is the same from its start as
//! everywhere else (`arrival_times(n)[i]` is the sum of `i + 1` gaps).

use crate::error::{Result, check_positive};
use crate::rng::Rng;

/// How request arrival times are generated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ArrivalProcess {
    /// Exponential gaps: a Poisson process with `rate` requests per second.
    Poisson {
        /// Mean arrival rate, requests per second (> 0).
        rate: f64,
    },
    /// Gamma-distributed gaps with mean `1 / rate` and coefficient of variation `cv`.
    Gamma {
        /// Mean arrival rate, requests per second (> 0).
        rate: f64,
        /// Coefficient of variation of the gaps (> 0); 1 is Poisson.
        cv: f64,
    },
}

impl ArrivalProcess {
    /// A validated Poisson process.
    pub fn poisson(rate: f64) -> Result<Self> {
        let p = ArrivalProcess::Poisson { rate };
        p.validate()?;
        Ok(p)
    }

    /// A validated Gamma renewal process.
    pub fn gamma(rate: f64, cv: f64) -> Result<Self> {
        let p = ArrivalProcess::Gamma { rate, cv };
        p.validate()?;
        Ok(p)
    }

    /// Checks that the rate (and cv) are finite and > 0.
    pub fn validate(&self) -> Result<()> {
        match *self {
            ArrivalProcess::Poisson { rate } => check_positive("arrival rate", rate).map(drop),
            ArrivalProcess::Gamma { rate, cv } => {
                check_positive("arrival rate", rate)?;
                check_positive("arrival cv", cv).map(drop)
            }
        }
    }

    /// The mean arrival rate, requests per second.
    pub fn rate(&self) -> f64 {
        match *self {
            ArrivalProcess::Poisson { rate } | ArrivalProcess::Gamma { rate, .. } => rate,
        }
    }

    /// The coefficient of variation of the gaps (1 for Poisson).
    pub fn cv(&self) -> f64 {
        match *self {
            ArrivalProcess::Poisson { .. } => 1.0,
            ArrivalProcess::Gamma { cv, .. } => cv,
        }
    }

    /// Draws one inter-arrival gap in seconds.
    ///
    /// The parameters must be valid (see [`ArrivalProcess::validate`]); invalid ones give non-finite gaps.
    pub fn gap(&self, rng: &mut Rng) -> f64 {
        match *self {
            ArrivalProcess::Poisson { rate } | ArrivalProcess::Gamma { rate, cv: 1.0 } => rng.exponential(rate),
            ArrivalProcess::Gamma { rate, cv } => {
                let shape = 1.0 / (cv * cv);
                rng.gamma(shape, 1.0 / (rate * shape))
            }
        }
    }

    /// `n` non-decreasing arrival times in seconds; the first is one gap after 0.
    ///
    /// The parameters must be valid (see [`ArrivalProcess::validate`]).
    pub fn arrival_times(&self, n: usize, rng: &mut Rng) -> Vec<f64> {
        let mut t = 0.0;
        (0..n)
            .map(|_| {
                t += self.gap(rng);
                t
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    fn gap_stats(p: ArrivalProcess, n: usize, seed: u64) -> (f64, f64) {
        let times = p.arrival_times(n, &mut Rng::new(seed));
        let gaps: Vec<f64> = std::iter::once(times[0]).chain(times.windows(2).map(|w| w[1] - w[0])).collect();
        let mean = gaps.iter().sum::<f64>() / n as f64;
        let var = gaps.iter().map(|g| (g - mean) * (g - mean)).sum::<f64>() / (n as f64 - 1.0);
        (mean, var.sqrt() / mean)
    }

    #[test]
    fn constructors_reject_bad_parameters() {
        for (p, name) in [
            (ArrivalProcess::poisson(0.0), "arrival rate"),
            (ArrivalProcess::poisson(f64::NAN), "arrival rate"),
            (ArrivalProcess::poisson(-1.0), "arrival rate"),
            (ArrivalProcess::gamma(f64::INFINITY, 1.0), "arrival rate"),
            (ArrivalProcess::gamma(1.0, 0.0), "arrival cv"),
            (ArrivalProcess::gamma(1.0, f64::NAN), "arrival cv"),
        ] {
            match p {
                Err(Error::InvalidConfig(msg)) => assert!(msg.contains(name), "{msg}"),
                other => panic!("expected InvalidConfig, got {other:?}"),
            }
        }
        assert_eq!(ArrivalProcess::gamma(2.0, 0.5).unwrap(), ArrivalProcess::Gamma { rate: 2.0, cv: 0.5 });
    }

    #[test]
    fn times_start_after_zero_and_never_decrease() {
        for p in [ArrivalProcess::Poisson { rate: 3.0 }, ArrivalProcess::Gamma { rate: 3.0, cv: 4.0 }] {
            let t = p.arrival_times(10_000, &mut Rng::new(11));
            assert_eq!(t.len(), 10_000);
            assert!(t[0] > 0.0 && t.iter().all(|x| x.is_finite()));
            assert!(t.windows(2).all(|w| w[0] <= w[1]));
        }
        assert!(ArrivalProcess::Poisson { rate: 1.0 }.arrival_times(0, &mut Rng::new(1)).is_empty());
    }

    #[test]
    fn same_seed_same_times() {
        let p = ArrivalProcess::Gamma { rate: 5.0, cv: 2.0 };
        assert_eq!(p.arrival_times(100, &mut Rng::new(3)), p.arrival_times(100, &mut Rng::new(3)));
        assert_ne!(p.arrival_times(100, &mut Rng::new(3)), p.arrival_times(100, &mut Rng::new(4)));
    }

    #[test]
    fn gamma_with_cv_one_is_poisson_bit_for_bit() {
        let poisson = ArrivalProcess::Poisson { rate: 2.5 }.arrival_times(1000, &mut Rng::new(8));
        let gamma = ArrivalProcess::Gamma { rate: 2.5, cv: 1.0 }.arrival_times(1000, &mut Rng::new(8));
        assert_eq!(poisson, gamma);
    }

    #[test]
    fn gap_mean_and_cv_match_the_parameters() {
        for (p, want_cv) in [
            (ArrivalProcess::Poisson { rate: 4.0 }, 1.0),
            (ArrivalProcess::Gamma { rate: 4.0, cv: 0.5 }, 0.5),
            (ArrivalProcess::Gamma { rate: 4.0, cv: 3.0 }, 3.0),
        ] {
            let (mean, cv) = gap_stats(p, 200_000, 21);
            assert!((mean - 0.25).abs() < 0.25 * 0.03, "{p:?}: mean gap {mean}");
            assert!((cv - want_cv).abs() < want_cv * 0.05, "{p:?}: cv {cv}");
            assert_eq!(p.cv(), want_cv);
            assert_eq!(p.rate(), 4.0);
        }
    }
}
