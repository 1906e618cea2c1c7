//! TODO: rng (being written).
