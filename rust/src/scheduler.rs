//! TODO: scheduler (being written).
/// Placeholder.
pub struct Scheduler;
/// Placeholder.
pub struct SchedulerConfig;
