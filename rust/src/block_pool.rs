//! TODO: block_pool (being written).
/// Placeholder.
pub struct BlockPool;
