//! Generating workloads from a seed: trace lengths with synthetic arrivals, or a mix of request types.
//!
//! Every generator draws from one [`Rng`] seeded with the caller's seed and forks it into independent streams
//! (arrival times first, then lengths or types), so the arrival times depend only on the seed, the arrival
//! process and the number of requests, not on the length table.

use super::{ArrivalProcess, LengthTable, RequestSpec, RequestType, Workload, check_num_requests};
use crate::error::{Error, Result, check_positive};
use crate::rng::Rng;

impl Workload {
    /// Pairs the rows of a length table with arrival times drawn from `arrivals`.
    ///
    /// Like Vidur's trace request-length generator, the rows are first shuffled with the seed, then taken in
    /// order: the first `num_requests` of the shuffled rows (default: all of them). When `num_requests` exceeds
    /// the number of rows, the rows are reused, with a fresh shuffle for each further pass, and a warning says
    /// so. Ids are `0..n` in arrival order; the table's warnings are carried over.
    pub fn from_lengths(
        table: &LengthTable,
        arrivals: &ArrivalProcess,
        num_requests: Option<usize>,
        seed: u64,
    ) -> Result<Workload> {
        table.validate()?;
        arrivals.validate()?;
        let rows = table.len();
        let n = num_requests.unwrap_or(rows);
        check_num_requests(n)?;
        let mut master = Rng::new(seed);
        let times = arrivals.arrival_times(n, &mut master.fork());
        check_finite_arrivals(&times, arrivals.rate())?;
        let mut length_rng = master.fork();

        let mut order: Vec<usize> = Vec::with_capacity(n);
        let mut pass: Vec<usize> = (0..rows).collect();
        while order.len() < n {
            length_rng.shuffle(&mut pass);
            let take = (n - order.len()).min(rows);
            order.extend_from_slice(&pass[..take]);
        }

        let requests = times
            .iter()
            .zip(&order)
            .enumerate()
            .map(|(id, (&arrival, &row))| RequestSpec {
                id: id as u64,
                arrival,
                prompt_len: table.prompt[row],
                output_len: table.output[row],
                type_id: None,
            })
            .collect();
        let mut warnings = table.warnings.clone();
        if n > rows {
            let passes = n.div_ceil(rows);
            warnings.push(format!(
                "{n} requests from {rows} trace rows: rows were reused ({passes} passes, reshuffled each pass)"
            ));
        }
        Ok(Workload { requests, warnings })
    }

    /// A synthetic mix of request types, as in the WAIT authors' generator.
    ///
    /// Arrivals form one Poisson process with the total rate Σ rate_j; each arrival independently gets type
    /// `j` with probability rate_j / Σ rate (equivalent to superposing one Poisson process per type). Request
    /// `i` (in arrival order) has id `i` and `type_id = Some(j)`.
    pub fn from_types(types: &[RequestType], num_requests: usize, seed: u64) -> Result<Workload> {
        if types.is_empty() {
            return Err(Error::config("at least one request type is needed"));
        }
        if u32::try_from(types.len()).is_err() {
            return Err(Error::config(format!("too many request types: {}", types.len())));
        }
        check_num_requests(num_requests)?;
        for (j, t) in types.iter().enumerate() {
            check_positive(&format!("rate of request type {j}"), t.rate)?;
            if t.prompt_len == 0 || t.output_len == 0 {
                let (p, o) = (t.prompt_len, t.output_len);
                return Err(Error::config(format!(
                    "request type {j} has prompt_len {p} and output_len {o}; both must be >= 1"
                )));
            }
        }
        let total: f64 = types.iter().map(|t| t.rate).sum();
        check_positive("total arrival rate", total)?;

        let mut master = Rng::new(seed);
        let times = ArrivalProcess::Poisson { rate: total }.arrival_times(num_requests, &mut master.fork());
        check_finite_arrivals(&times, total)?;
        let mut type_rng = master.fork();
        let requests = times
            .into_iter()
            .enumerate()
            .map(|(id, arrival)| {
                let j = pick_type(types, total, type_rng.next_f64());
                let t = types[j];
                RequestSpec {
                    id: id as u64,
                    arrival,
                    prompt_len: t.prompt_len,
                    output_len: t.output_len,
                    type_id: Some(j as u32),
                }
            })
            .collect();
        Ok(Workload { requests, warnings: Vec::new() })
    }
}

/// The type whose share of the cumulative rate contains `u · total` (`u` in `[0, 1)`).
fn pick_type(types: &[RequestType], total: f64, u: f64) -> usize {
    let target = u * total;
    let mut cumulative = 0.0;
    for (j, t) in types.iter().enumerate() {
        cumulative += t.rate;
        if target < cumulative {
            return j;
        }
    }
    types.len() - 1 // rounding left `target` at or just above the sum
}

/// Fails with an error naming the rate when arrival times overflow (a finite but tiny rate).
fn check_finite_arrivals(times: &[f64], rate: f64) -> Result<()> {
    if times.iter().all(|t| t.is_finite()) {
        Ok(())
    } else {
        Err(Error::config(format!("arrival rate {rate} is too small: arrival times overflow")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(n: u32) -> LengthTable {
        LengthTable { prompt: (1..=n).collect(), output: (1..=n).map(|x| 1000 + x).collect(), warnings: vec![] }
    }

    fn poisson() -> ArrivalProcess {
        ArrivalProcess::Poisson { rate: 10.0 }
    }

    #[test]
    fn from_lengths_uses_every_row_once_by_default() {
        let t = table(50);
        let w = Workload::from_lengths(&t, &poisson(), None, 1).unwrap();
        w.validate().unwrap();
        assert_eq!(w.requests.len(), 50);
        let mut prompts: Vec<u32> = w.requests.iter().map(|r| r.prompt_len).collect();
        assert_ne!(prompts, t.prompt, "rows should be shuffled");
        assert!(w.requests.iter().all(|r| r.output_len == 1000 + r.prompt_len), "rows stay paired");
        prompts.sort_unstable();
        assert_eq!(prompts, t.prompt);
        assert!(w.requests.iter().enumerate().all(|(i, r)| r.id == i as u64 && r.type_id.is_none()));
        assert!(w.warnings.is_empty());
    }

    #[test]
    fn from_lengths_is_deterministic_and_arrivals_ignore_the_table() {
        let a = Workload::from_lengths(&table(30), &poisson(), Some(20), 5).unwrap();
        assert_eq!(a, Workload::from_lengths(&table(30), &poisson(), Some(20), 5).unwrap());
        assert_ne!(a, Workload::from_lengths(&table(30), &poisson(), Some(20), 6).unwrap());
        let b = Workload::from_lengths(&table(7), &poisson(), Some(20), 5).unwrap();
        let times = |w: &Workload| w.requests.iter().map(|r| r.arrival).collect::<Vec<_>>();
        assert_eq!(times(&a), times(&b));
    }

    #[test]
    fn from_lengths_cycles_with_a_fresh_shuffle_per_pass() {
        let mut t = table(10);
        t.warnings.push("from the trace".into());
        let w = Workload::from_lengths(&t, &poisson(), Some(25), 2).unwrap();
        assert_eq!(w.requests.len(), 25);
        let prompts: Vec<u32> = w.requests.iter().map(|r| r.prompt_len).collect();
        for pass in prompts.chunks(10).take(2) {
            let mut p = pass.to_vec();
            p.sort_unstable();
            assert_eq!(p, t.prompt, "each full pass is a permutation of the rows");
        }
        assert_ne!(prompts[..10], prompts[10..20], "each pass is reshuffled");
        assert_eq!(w.warnings.len(), 2);
        assert!(w.warnings[1].contains("reused") && w.warnings[1].contains("3 passes"), "{:?}", w.warnings);
    }

    #[test]
    fn from_lengths_rejects_bad_input() {
        let err = Workload::from_lengths(&table(3), &poisson(), Some(0), 1).unwrap_err();
        assert!(matches!(&err, Error::InvalidConfig(m) if m.contains("num_requests")), "{err}");
        let err = Workload::from_lengths(&LengthTable::default(), &poisson(), None, 1).unwrap_err();
        assert!(matches!(&err, Error::InvalidTrace { reason, .. } if reason.contains("no rows")), "{err}");
        let bad = ArrivalProcess::Poisson { rate: -1.0 };
        assert!(matches!(Workload::from_lengths(&table(3), &bad, None, 1), Err(Error::InvalidConfig(_))));
        let mut t = table(3);
        t.output[1] = 0;
        assert!(Workload::from_lengths(&t, &poisson(), None, 1).unwrap_err().to_string().contains("output length"));
    }

    #[test]
    fn from_types_mixes_types_in_proportion_to_rate() {
        let types = [
            RequestType { prompt_len: 10, output_len: 100, rate: 1.0 },
            RequestType { prompt_len: 500, output_len: 20, rate: 3.0 },
        ];
        let w = Workload::from_types(&types, 40_000, 9).unwrap();
        w.validate().unwrap();
        assert_eq!(w, Workload::from_types(&types, 40_000, 9).unwrap());
        let n1 = w.requests.iter().filter(|r| r.type_id == Some(1)).count() as f64;
        assert!((n1 / 40_000.0 - 0.75).abs() < 0.01, "type 1 share {}", n1 / 40_000.0);
        assert!(w.requests.iter().all(|r| {
            let t = types[r.type_id.unwrap() as usize];
            (r.prompt_len, r.output_len) == (t.prompt_len, t.output_len)
        }));
        let rate = w.mean_rate().unwrap();
        assert!((rate - 4.0).abs() < 0.1, "total rate {rate}");
    }

    #[test]
    fn from_types_rejects_bad_input() {
        let ok = RequestType { prompt_len: 1, output_len: 1, rate: 1.0 };
        for (types, n, what) in [
            (vec![], 5, "at least one"),
            (vec![ok], 0, "num_requests"),
            (vec![ok, RequestType { rate: 0.0, ..ok }], 5, "rate of request type 1"),
            (vec![RequestType { rate: f64::NAN, ..ok }], 5, "rate of request type 0"),
            (vec![RequestType { prompt_len: 0, ..ok }], 5, "prompt_len 0"),
        ] {
            match Workload::from_types(&types, n, 1) {
                Err(Error::InvalidConfig(m)) => assert!(m.contains(what), "{m}"),
                other => panic!("expected InvalidConfig({what}), got {other:?}"),
            }
        }
    }

    #[test]
    fn huge_request_counts_are_refused_before_allocating() {
        let ok = RequestType { prompt_len: 1, output_len: 1, rate: 1.0 };
        for n in [crate::workload::MAX_NUM_REQUESTS + 1, 1 << 40, usize::MAX] {
            let err = Workload::from_types(&[ok], n, 1).unwrap_err();
            assert!(matches!(&err, Error::InvalidConfig(m) if m.contains("num_requests")), "{err}");
            let err = Workload::from_lengths(&table(3), &poisson(), Some(n), 1).unwrap_err();
            assert!(matches!(&err, Error::InvalidConfig(m) if m.contains("too large")), "{err}");
        }
    }

    #[test]
    fn pick_type_handles_the_edges() {
        let types = [
            RequestType { prompt_len: 1, output_len: 1, rate: 1.0 },
            RequestType { prompt_len: 1, output_len: 1, rate: 1.0 },
        ];
        assert_eq!(pick_type(&types, 2.0, 0.0), 0);
        assert_eq!(pick_type(&types, 2.0, 0.5), 1);
        assert_eq!(pick_type(&types, 2.0, 1.0), 1);
    }
}
