//! Workloads: the requests a simulation replays, read from trace files or generated from a seed.
//!
//! - [`trace`]: reading CSV traces (Vidur, Azure 2023, LMSYS) into a [`Workload`] or a [`LengthTable`];
//! - [`arrivals`]: Poisson and Gamma arrival processes for length-only traces;
//! - `build`: [`Workload::from_lengths`] and [`Workload::from_types`], seeded generators;
//! - `ops`: [`Workload::validate`], [`Workload::from_specs`], truncation and rate rescaling;
//! - [`model_len`]: the model length limit ([`ModelLen`]) and what it does to over-length requests.

pub mod arrivals;
mod build;
pub mod model_len;
mod ops;
pub mod trace;

pub use arrivals::ArrivalProcess;
pub use model_len::{LengthOutcome, ModelLen, OverLength, ServedWorkload};
pub use trace::{LengthTable, TraceData, TraceFormat, TraceOptions, detect_format, parse_trace, read_trace_file};

/// One request of a workload as the simulator replays it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestSpec {
    /// Caller-visible id, unique within the workload (its row order by default).
    pub id: u64,
    /// Arrival time in seconds from the start of the workload.
    pub arrival: f64,
    /// Prompt length in tokens (>= 1).
    pub prompt_len: u32,
    /// Output length in tokens (>= 1); the prefill iteration emits the first one.
    pub output_len: u32,
    /// Optional request-type label (index into the workload's type list).
    pub type_id: Option<u32>,
}

/// A list of requests sorted by arrival time, plus warnings raised while building it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Workload {
    /// Requests in non-decreasing arrival order.
    pub requests: Vec<RequestSpec>,
    /// Non-fatal problems found while reading (for example lengths clamped from 0 to 1).
    pub warnings: Vec<String>,
}

/// A request type: fixed prompt and output lengths arriving as a Poisson stream (the paper's model).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestType {
    /// Prompt tokens.
    pub prompt_len: u32,
    /// Output tokens.
    pub output_len: u32,
    /// Arrival rate, requests per second.
    pub rate: f64,
}
