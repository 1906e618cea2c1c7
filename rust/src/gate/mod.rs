//! Admission decisions that own no memory: the seam between a policy and an engine.
//!
//! A policy's decision (which waiting requests may start now; for Nested WAIT also which paused requests
//! resume) lives here, apart from batch building and block bookkeeping:
//! - [`WaitGate`]: WAIT's per-type queues, thresholds, admission rule and deadline;
//! - [`SegmentGate`]: Nested WAIT's segment plan, entry and boundary queues, occupancy and rate estimate;
//! - [`AdmissionController`]: the engine-facing form, keyed by the engine's request ids, updated incrementally
//!   (on add, admission, output, preemption, finish) and asked once per step with a compact [`AdmissionView`].
//!
//! The simulator's policies ([`crate::policies::WaitPolicy`], [`crate::policies::NestedWaitPolicy`]) drive the
//! same gates with scheduler slots as keys, so a decision is one piece of code whether fluidsched's own
//! [`crate::Scheduler`] or a real engine (vLLM, through the Python adapter) carries it out.

pub mod controller;
pub mod segment_gate;
pub mod wait_gate;

pub use controller::{AdmissionController, AdmissionView, Decision};
pub use segment_gate::{Entry, PAUSED, SegmentGate, SegmentGateOptions};
pub use wait_gate::{AdmissionRule, CohortTracking, WaitGate};
