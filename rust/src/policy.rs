//! TODO: policy (being written).
/// Placeholder.
pub trait Policy {}
