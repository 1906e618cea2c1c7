//! TODO: request (being written).
