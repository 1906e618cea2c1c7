//! The policies, and the registry that builds one from a name and options.
//!
//! Adding a policy: write its module, add a line to [`POLICY_NAMES`] and an arm to [`build_policy`].

pub mod fcfs_queue;
pub mod kv_profile;
pub mod mc_sf;
pub mod nested_wait;
pub mod orca;
pub mod sarathi;
pub mod sglang;
pub mod sized_queue;
pub mod token_ratio;
pub mod vllm;
pub mod vllm_v0;
pub mod wait;

pub use mc_sf::McSfPolicy;
pub use nested_wait::NestedWaitPolicy;
pub use orca::OrcaPolicy;
pub use sarathi::SarathiPolicy;
pub use sglang::SglangPolicy;
pub use vllm::VllmPolicy;
pub use vllm_v0::VllmV0Policy;
pub use wait::{AdmissionRule, WaitConfig, WaitPolicy};

use crate::error::{Error, Result};
use crate::policy::{Policy, PolicyOptions};
use crate::scheduler::SchedulerConfig;
use crate::workload::RequestType;

/// Names accepted by [`build_policy`].
pub const POLICY_NAMES: &[&str] = &["vllm", "wait", "nested-wait", "sarathi", "mc-sf", "sglang", "orca", "vllm-v0"];

/// The option names policy `name` accepts, or None for an unknown policy.
pub fn policy_option_names(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "vllm" => VllmPolicy::OPTIONS,
        "wait" => WaitPolicy::OPTIONS,
        "nested-wait" => NestedWaitPolicy::OPTIONS,
        "sarathi" => SarathiPolicy::OPTIONS,
        "mc-sf" => McSfPolicy::OPTIONS,
        "sglang" => SglangPolicy::OPTIONS,
        "orca" => OrcaPolicy::OPTIONS,
        "vllm-v0" => VllmV0Policy::OPTIONS,
        _ => return None,
    })
}

/// What a policy may need to know about the run when it is built (types and rates for WAIT, for example).
///
/// Drivers fill what they know; policies that need a field that is empty fail with a clear
/// [`Error::InvalidConfig`].
#[derive(Debug, Clone, Default)]
pub struct PolicyContext {
    /// The shared scheduler limits (KV capacity = `num_blocks × block_size`).
    pub config: SchedulerConfig,
    /// Linearised iteration time `d0 + d1 × tokens`: fixed cost, seconds.
    pub d0: f64,
    /// Linearised iteration time: seconds per token.
    pub d1: f64,
    /// Request types with arrival rates, when known (given by the user, or derived from a trace).
    pub types: Vec<RequestType>,
    /// A sample of observed prompt lengths (may be empty).
    pub prompt_lengths: Vec<u32>,
    /// A sample of observed output lengths (may be empty), e.g. for Nested WAIT's segment quantiles.
    pub output_lengths: Vec<u32>,
    /// Total arrival rate, requests per second, when known.
    pub arrival_rate: Option<f64>,
}

/// Builds the policy called `name` from its options; unknown names and options are errors that list the valid
/// ones.
pub fn build_policy(name: &str, options: PolicyOptions, ctx: &PolicyContext) -> Result<Box<dyn Policy>> {
    match name {
        "vllm" => Ok(Box::new(VllmPolicy::from_options(options)?)),
        "sarathi" => Ok(Box::new(SarathiPolicy::from_options(options)?)),
        "mc-sf" => Ok(Box::new(McSfPolicy::from_options(options)?)),
        "sglang" => Ok(Box::new(SglangPolicy::from_options(options)?)),
        "orca" => Ok(Box::new(OrcaPolicy::from_options(options)?)),
        "vllm-v0" => Ok(Box::new(VllmV0Policy::from_options(options)?)),
        "wait" => Ok(Box::new(WaitPolicy::from_options(options, ctx)?)),
        "nested-wait" => Ok(Box::new(NestedWaitPolicy::from_options(options, ctx)?)),
        _ => Err(Error::config(format!("unknown policy {name:?}; available policies: {}", POLICY_NAMES.join(", ")))),
    }
}
