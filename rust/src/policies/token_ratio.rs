//! SGLang's adaptive `new_token_ratio`: the fraction of each running request's remaining output budget that
//! admission keeps in reserve. It starts at `init`, decays linearly by `(init − min) / decay_steps` per step down
//! to `min = init × min_factor`, and is reset upward after an out-of-memory retraction.

use crate::error::{Error, Result};

/// The ratio and its schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenRatio {
    init: f64,
    min: f64,
    decay: f64,
    value: f64,
}

impl TokenRatio {
    /// A ratio starting at `init` (in `(0, 1]`), decaying to `init × min_factor` (factor in `[0, 1]`) over
    /// `decay_steps` (>= 1) steps.
    pub fn new(init: f64, min_factor: f64, decay_steps: u32) -> Result<Self> {
        if !(init > 0.0 && init <= 1.0) {
            return Err(Error::config(format!("init_new_token_ratio must be in (0, 1], got {init}")));
        }
        if !(0.0..=1.0).contains(&min_factor) {
            return Err(Error::config(format!("min_new_token_ratio_factor must be in [0, 1], got {min_factor}")));
        }
        if decay_steps == 0 {
            return Err(Error::config("decay_steps must be >= 1"));
        }
        let min = init * min_factor;
        Ok(TokenRatio { init, min, decay: (init - min) / f64::from(decay_steps), value: init })
    }

    /// The current ratio.
    pub fn value(&self) -> f64 {
        self.value
    }

    /// The floor it decays to.
    pub fn min(&self) -> f64 {
        self.min
    }

    /// The starting value.
    pub fn init(&self) -> f64 {
        self.init
    }

    /// One step without retraction: decay linearly towards the floor.
    pub fn decay(&mut self) {
        self.value = (self.value - self.decay).max(self.min);
    }

    /// After a retraction: raise the ratio to `estimate` (capped at 1), never lowering it.
    pub fn on_retract(&mut self, estimate: f64) {
        self.value = self.value.max(estimate.min(1.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decays_linearly_to_floor_in_decay_steps() {
        let mut r = TokenRatio::new(0.7, 0.14, 600).unwrap();
        assert_eq!(r.value(), 0.7);
        for _ in 0..300 {
            r.decay();
        }
        assert!((r.value() - (0.7 + 0.098) / 2.0).abs() < 1e-9, "halfway after 300 steps: {}", r.value());
        for _ in 0..300 {
            r.decay();
        }
        assert!((r.value() - 0.098).abs() < 1e-9);
        r.decay();
        assert_eq!(r.value(), r.min(), "stays at the floor");
    }

    #[test]
    fn retraction_resets_upward_only() {
        let mut r = TokenRatio::new(0.7, 0.14, 10).unwrap();
        (0..10).for_each(|_| r.decay());
        r.on_retract(0.5);
        assert_eq!(r.value(), 0.5);
        r.on_retract(0.2);
        assert_eq!(r.value(), 0.5, "never lowered by a retraction");
        r.on_retract(3.0);
        assert_eq!(r.value(), 1.0, "capped at 1");
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(TokenRatio::new(0.0, 0.14, 600).is_err());
        assert!(TokenRatio::new(1.5, 0.14, 600).is_err());
        assert!(TokenRatio::new(0.7, -0.1, 600).is_err());
        assert!(TokenRatio::new(0.7, 0.14, 0).is_err());
    }
}
