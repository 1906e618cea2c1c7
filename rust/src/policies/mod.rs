//! The policies, and the registry that builds one from a name and options.
//!
//! Adding a policy: write its module, add a line to [`POLICY_NAMES`] and an arm to [`build_policy`].

pub mod vllm;

pub use vllm::VllmPolicy;

use crate::error::{Error, Result};
use crate::policy::{Policy, PolicyOptions};
use crate::scheduler::SchedulerConfig;

/// Names accepted by [`build_policy`].
pub const POLICY_NAMES: &[&str] = &["vllm"];

/// What a policy may need to know about the run when it is built (types and rates for WAIT, for example).
#[derive(Debug, Clone, Default)]
pub struct PolicyContext {
    /// The shared scheduler limits.
    pub config: SchedulerConfig,
}

/// Builds the policy called `name` from its options; unknown names and options are errors that list the valid
/// ones.
pub fn build_policy(name: &str, options: PolicyOptions, ctx: &PolicyContext) -> Result<Box<dyn Policy>> {
    let _ = ctx;
    match name {
        "vllm" => Ok(Box::new(VllmPolicy::from_options(options)?)),
        _ => Err(Error::config(format!("unknown policy {name:?}; available policies: {}", POLICY_NAMES.join(", ")))),
    }
}
