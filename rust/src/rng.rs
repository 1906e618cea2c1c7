//! A small, dependency-free, deterministic random number generator for workload generation.
//!
//! [`Rng`] is xoshiro256** (Blackman and Vigna) seeded through splitmix64, so every `u64` seed (including 0)
//! gives a well-mixed state. The same seed always yields the same bit-identical sequence on every platform for
//! the integer draws; the floating-point samplers use only `ln`, `sqrt`, `cos` and `powf`, so they are
//! reproducible on a given platform and agree across platforms to within the last bits of those functions.
//!
//! Samplers that take a parameter (`exponential`, `gamma`, `below`) document their preconditions; callers
//! validate user input first (see [`crate::error::check_positive`]).

/// 2^-53, the spacing of the 53-bit floats returned by [`Rng::next_f64`].
const F64_UNIT: f64 = 1.0 / (1u64 << 53) as f64;

/// One step of splitmix64: advances `state` and returns the next output.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A deterministic xoshiro256** generator seeded through splitmix64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose state is four consecutive splitmix64 outputs from `seed`.
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let s = [splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm)];
        Rng { s }
    }

    /// A new generator seeded from this one's next output: an independent stream for a sub-task.
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }

    /// The next 64 uniformly distributed bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform float in `[0, 1)` with 53 random bits (multiples of 2^-53).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * F64_UNIT
    }

    /// A uniform float in `(0, 1]` (never 0, so `ln` of it is finite).
    pub fn uniform_open(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 * F64_UNIT
    }

    /// A uniform integer in `0..n`, without modulo bias (Lemire's multiply-and-reject method).
    ///
    /// # Panics
    /// If `n == 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0): the range 0..0 is empty");
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        if (m as u64) < n {
            // Reject the low products that would make some outputs one draw more likely than others.
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as u64
    }

    /// An exponential draw with the given `rate` (mean `1 / rate`), by inversion: `-ln(U) / rate`.
    ///
    /// `rate` must be finite and > 0 (checked in debug builds).
    pub fn exponential(&mut self, rate: f64) -> f64 {
        debug_assert!(rate.is_finite() && rate > 0.0, "exponential rate must be finite and > 0, got {rate}");
        -self.uniform_open().ln() / rate
    }

    /// A standard normal draw (mean 0, variance 1) by the Box–Muller transform; consumes exactly two `u64`s.
    pub fn standard_normal(&mut self) -> f64 {
        let u1 = self.uniform_open();
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// A gamma draw with the given `shape` k and `scale` θ (mean kθ, variance kθ²), by Marsaglia–Tsang.
    ///
    /// For `shape < 1` it draws with `shape + 1` and multiplies by `U^(1/shape)` (the standard boost). Both
    /// parameters must be finite and > 0 (checked in debug builds).
    pub fn gamma(&mut self, shape: f64, scale: f64) -> f64 {
        debug_assert!(shape.is_finite() && shape > 0.0, "gamma shape must be finite and > 0, got {shape}");
        debug_assert!(scale.is_finite() && scale > 0.0, "gamma scale must be finite and > 0, got {scale}");
        if shape < 1.0 {
            let boost = self.uniform_open().powf(1.0 / shape);
            return self.gamma(shape + 1.0, scale) * boost;
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.standard_normal();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = self.uniform_open();
            let x2 = x * x;
            if u < 1.0 - 0.0331 * x2 * x2 || u.ln() < 0.5 * x2 + d * (1.0 - v + v.ln()) {
                return d * v * scale;
            }
        }
    }

    /// Shuffles `items` in place uniformly at random (Fisher–Yates, from the back).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: usize = 200_000;

    fn mean_var(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
        (mean, var)
    }

    fn assert_rel(name: &str, got: f64, want: f64, tol: f64) {
        assert!((got - want).abs() <= tol * want.abs(), "{name}: got {got}, want {want} ± {:.1}%", tol * 100.0);
    }

    #[test]
    fn splitmix_and_xoshiro_match_reference_outputs() {
        // splitmix64 from state 0: first output from the reference implementation.
        let mut sm = 0u64;
        assert_eq!(splitmix64(&mut sm), 0xE220_A839_7B1D_CDAF);
        // xoshiro256** from state [1, 2, 3, 4]: reference outputs.
        let mut rng = Rng { s: [1, 2, 3, 4] };
        let got: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
        assert_eq!(got, [11520, 0, 1509978240, 1215971899390074240]);
    }

    #[test]
    fn same_seed_same_sequence_and_different_seeds_differ() {
        let draw = |seed| {
            let mut r = Rng::new(seed);
            let mut v: Vec<u64> = (0..16).map(|_| r.next_u64()).collect();
            v.push(r.gamma(0.7, 2.0).to_bits());
            v.push(r.standard_normal().to_bits());
            v.push(r.exponential(3.0).to_bits());
            v
        };
        assert_eq!(draw(42), draw(42));
        assert_eq!(draw(0), draw(0));
        assert_ne!(draw(42), draw(43));
        let mut a = Rng::new(7);
        let mut b = a.clone();
        assert_eq!(a.fork(), b.fork());
        assert_eq!(a.next_u64(), b.next_u64());
    }

    #[test]
    fn unit_floats_stay_in_range() {
        let mut r = Rng::new(1);
        for _ in 0..N {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
            let y = r.uniform_open();
            assert!(y > 0.0 && y <= 1.0);
        }
        let (mean, var) = mean_var(&(0..N).map(|_| r.next_f64()).collect::<Vec<_>>());
        assert_rel("uniform mean", mean, 0.5, 0.01);
        assert_rel("uniform var", var, 1.0 / 12.0, 0.02);
    }

    #[test]
    fn exponential_mean_and_variance() {
        let mut r = Rng::new(2);
        for rate in [0.5, 4.0] {
            let xs: Vec<f64> = (0..N).map(|_| r.exponential(rate)).collect();
            assert!(xs.iter().all(|x| x.is_finite() && *x >= 0.0));
            let (mean, var) = mean_var(&xs);
            assert_rel("exponential mean", mean, 1.0 / rate, 0.02);
            assert_rel("exponential var", var, 1.0 / (rate * rate), 0.04);
        }
    }

    #[test]
    fn standard_normal_mean_and_variance() {
        let mut r = Rng::new(3);
        let (mean, var) = mean_var(&(0..N).map(|_| r.standard_normal()).collect::<Vec<_>>());
        assert!(mean.abs() < 0.01, "normal mean {mean}");
        assert_rel("normal var", var, 1.0, 0.02);
    }

    #[test]
    fn gamma_mean_and_variance_both_sides_of_shape_one() {
        let mut r = Rng::new(4);
        for (shape, scale) in [(0.25, 2.0), (0.8, 0.5), (1.0, 1.0), (2.5, 3.0), (16.0, 0.1)] {
            let xs: Vec<f64> = (0..N).map(|_| r.gamma(shape, scale)).collect();
            assert!(xs.iter().all(|x| x.is_finite() && *x >= 0.0));
            let (mean, var) = mean_var(&xs);
            assert_rel(&format!("gamma({shape}, {scale}) mean"), mean, shape * scale, 0.02);
            assert_rel(&format!("gamma({shape}, {scale}) var"), var, shape * scale * scale, 0.05);
        }
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = Rng::new(5);
        for n in [1u64, 2, 3, 7, 10, 1000, u64::MAX] {
            for _ in 0..2000 {
                assert!(r.below(n) < n);
            }
        }
        let mut counts = [0u32; 6];
        for _ in 0..60_000 {
            counts[r.below(6) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (9_500..10_500).contains(&c)), "{counts:?}");
    }

    #[test]
    #[should_panic(expected = "below(0)")]
    fn below_zero_panics() {
        Rng::new(0).below(0);
    }

    #[test]
    fn shuffle_is_a_deterministic_permutation() {
        let shuffled = |seed| {
            let mut v: Vec<u32> = (0..100).collect();
            Rng::new(seed).shuffle(&mut v);
            v
        };
        let a = shuffled(9);
        assert_eq!(a, shuffled(9));
        assert_ne!(a, shuffled(10));
        assert_ne!(a, (0..100).collect::<Vec<_>>());
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        let mut empty: [u8; 0] = [];
        Rng::new(1).shuffle(&mut empty);
    }
}
