//! TODO: step (being written).
