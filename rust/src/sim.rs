//! TODO: sim (being written).
/// Placeholder.
pub struct Simulator;
