//! # fluidsched-core
//!
//! A per-iteration scheduling core for LLM inference under KV-cache memory limits: a [`Scheduler`] that owns
//! the KV [`BlockPool`] and the request table, a [`Policy`] trait that decides each iteration's batch, the
//! policies themselves (vLLM's default, WAIT, Nested WAIT and baselines), the [`FluidModel`] behind WAIT's
//! thresholds, and a discrete-event [`Simulator`] that drives the scheduler over a [`Workload`].
//!
//! The crate is pure Rust: the Python bindings live in a separate crate and only call this API.

pub mod block_pool;
pub mod error;
pub mod fluid;
pub mod metrics;
pub mod policies;
pub mod policy;
pub mod request;
pub mod rng;
pub mod scheduler;
pub mod sim;
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
