//! Workloads: the requests a simulation replays, read from trace files or generated from a seed.
//!
//! - [`trace`]: reading CSV and JSON-lines traces (Vidur, Azure 2023, BurstGPT, LMSYS, Mooncake, or named
//!   columns) into a [`Workload`] or a [`LengthTable`];
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
pub use trace::{
    ColumnMap, LengthTable, TimeUnit, TraceData, TraceFormat, TraceOptions, detect_format, parse_trace, read_trace_file,
};

/// Most requests one workload may hold (2^26 = 67,108,864). Generators allocate per request up front (about
/// 100 bytes each across the workload and a simulation's records), so a larger `num_requests` is refused with
/// an [`Error::InvalidConfig`](crate::Error) before anything is sized by it.
pub const MAX_NUM_REQUESTS: usize = 1 << 26;

/// Fails unless `1 <= num_requests <= MAX_NUM_REQUESTS`, naming the argument.
pub(crate) fn check_num_requests(num_requests: usize) -> crate::Result<()> {
    if num_requests == 0 {
        return Err(crate::Error::config("num_requests must be >= 1, got 0"));
    }
    if num_requests > MAX_NUM_REQUESTS {
        return Err(crate::Error::config(format!(
            "num_requests {num_requests} is too large: a workload holds at most {MAX_NUM_REQUESTS} requests"
        )));
    }
    Ok(())
}

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
