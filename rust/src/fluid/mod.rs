//! The fluid model behind WAIT and Nested WAIT, and the threshold rules built on it.
//!
//! - [`model`]: equilibrium, stability, memory requirement, fluid-optimal and memory-limited throughput, the
//!   largest sustainable arrival rate;
//! - [`exact_time`]: the same fluid priced by the time model itself (profiled presets), not its linearisation;
//! - [`binning`]: request types derived from a trace's lengths;
//! - [`thresholds`]: WAIT's per-type thresholds (fluid rule and the authors' reference rule);
//! - [`segments`]: Nested WAIT's segments, per-segment thresholds and the safety buffer.

pub mod binning;
pub mod exact_time;
pub mod model;
pub mod segments;
pub mod thresholds;

pub use binning::types_from_lengths;
pub use exact_time::MeanIteration;
pub use model::{Binding, FluidModel, FluidPoint, FluidSolution, kv_token_iterations};
pub use segments::{LengthDistribution, SegmentPlan, SegmentPlanInput, Survival, plan_segments, quantile_boundaries};
pub use thresholds::{ThresholdPlan, fluid_thresholds, reference_thresholds};
