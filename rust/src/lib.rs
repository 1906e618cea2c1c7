//! # fluidsched-core
//!
//! A per-iteration scheduling core for LLM inference under KV-cache memory limits: a [`Scheduler`] that owns
//! the KV [`BlockPool`] and the request table, a [`Policy`] trait that decides each iteration's batch, the
//! policies themselves (vLLM's default, WAIT, Nested WAIT and baselines), the [`FluidModel`] behind WAIT's
//! thresholds, and a discrete-event [`Simulator`] that drives the scheduler over a [`Workload`].
//!
//! The crate is pure Rust: the Python bindings live in a separate crate and only call this API.
//!
//! ```
//! use fluidsched_core::policies::VllmPolicy;
//! use fluidsched_core::request::NewRequest;
//! use fluidsched_core::{Scheduler, SchedulerConfig};
//!
//! let config = SchedulerConfig { num_blocks: 64, block_size: 16, ..SchedulerConfig::default() };
//! let mut scheduler = Scheduler::new(config, Box::new(VllmPolicy::new()))?;
//! scheduler.add_request(NewRequest {
//!     id: 7,
//!     prompt_len: 40,
//!     output_len: Some(2),
//!     output_len_hint: None,
//!     type_id: None,
//!     arrival: 0.0,
//! })?;
//! // Iteration 1: the whole prompt (chunked prefill is on, the budget is ample); it emits the first token.
//! let step = scheduler.schedule(0.0)?;
//! assert_eq!((step.scheduled[0].id, step.scheduled[0].num_tokens), (7, 40));
//! assert_eq!(scheduler.complete_step(&[])?.emitted, vec![(7, 1)]);
//! // Iteration 2: one decode token, the second and last output token; the request finishes.
//! scheduler.schedule(0.05)?;
//! assert_eq!(scheduler.complete_step(&[])?.finished, vec![7]);
//! assert_eq!(scheduler.num_used_blocks(), 0);
//! # Ok::<(), fluidsched_core::Error>(())
//! ```

pub mod batch;
pub mod block_pool;
pub mod error;
pub mod fluid;
pub mod gate;
pub mod keyed_deque;
pub mod metrics;
pub mod plan;
pub mod policies;
pub mod policy;
pub mod request;
pub mod rng;
pub mod scheduler;
pub mod sim;
pub mod state;
pub mod step;
pub mod time_model;
pub mod workload;

pub use block_pool::BlockPool;
pub use error::{Error, Result};
pub use fluid::{FluidModel, FluidSolution};
pub use policy::Policy;
pub use scheduler::{Scheduler, SchedulerConfig};
pub use sim::{SimConfig, Simulator};
pub use time_model::{BatchShape, TimeModel};
pub use workload::{RequestSpec, Workload};
