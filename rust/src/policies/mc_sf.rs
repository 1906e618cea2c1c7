//! MC-SF, Memory-Constrained Shortest-First (Jaillet, Jiang, Mellou, Molinaro, Podimata, Zhou, arXiv 2502.07115),
//! as summarised in `shared/reference/wait-paper-digest.md` §7.1. Clairvoyant: it reads output-length hints.
//!
//! Each step:
//! 1. Every running request advances (one decode token each). MC-SF never preempts by choice. Only when a block
//!    truly cannot be had (a hint was under-predicted) is the most recently admitted running request preempted
//!    by recompute, as in vLLM, and put back in the waiting queue; such a step admits nothing.
//! 2. Waiting requests are tried shortest remaining (hinted) output first, ties in arrival order. A candidate is
//!    admitted if the projected KV usage of the running requests, those admitted so far this step and the
//!    candidate stays within the capacity at every future step ([`super::kv_profile`]; checking at completion
//!    times suffices, and the check is exact, in blocks, with block rounding: a request holding `t` tokens uses
//!    `ceil(t / block_size)` blocks). The projection assumes each request grows by one token per step until it has
//!    emitted its hinted output: during step `τ` (the current step is `τ = 1`) a request with `k` known tokens
//!    holds `k − 1 + τ` tokens, for `τ ≤ max(hint − generated, 1)` steps. A request that outlives its hint is thus
//!    projected to finish after the current step, every step, until it really does.
//! 3. An admitted request's whole (re)prefill runs in its admission step (no chunked prefill: the paper's model
//!    has one prefill round per request, and the projection relies on it).
//!
//! Decisions:
//! - Capacity = `num_blocks − watermark_blocks`: the watermark applies (set `watermark = 0` for the full cache).
//! - `max_num_seqs` caps the running requests. `max_num_batched_tokens` caps admission only: a prefill is
//!   admitted if the step stays within it, except a prefill longer than the whole budget, which may run as the
//!   step's only prefill (else it could never run). Running decodes are never capped (the projection needs them).
//!   `enable_chunked_prefill` is ignored.
//! - Liveness: when nothing runs, the first candidate is admitted if its prefill fits the free blocks above the
//!   watermark, even if its (over-predicted) projected peak exceeds the capacity.
//! - A request without a hint is treated as if its hint were `default_output_len`.
//!
//! Options (defaults): `on_infeasible` = `"stop"` (stop admitting at the first candidate that fails the check, as
//! the digest believes the paper does) or `"skip"` (try the next, longer one); `default_output_len` = 256.
//! Oracle vs predicted lengths is the driver's choice: the simulator passes exact lengths, or lengths with a
//! multiplicative error `SimConfig::length_error`, since [`Policy::needs_output_lengths`] is true.
//!
//! Cost per step: nothing while nothing waits or `max_num_seqs` requests run; else, once a candidate passes the
//! cheaper checks (budget, free blocks), O(n + changes·c) to load the profile of the n running requests (kept
//! across steps by a [`super::kv_profile::ProfileTracker`]: c checkpoints, changes = requests admitted, finished
//! or otherwise off their projection since the last load; O(n log n) when many changed), then O(n) per candidate
//! tried (O(log n) for most rejections) and O(n) per admission (no re-sort). The waiting queue is a
//! [`super::sized_queue::SizedQueue`]: with `on_infeasible = "skip"` a step jumps over every candidate that must
//! fail (by budget, or at least as large as one that failed the memory checks), O(log W) per candidate looked
//! at instead of a walk over all W waiting requests.
//! Not modelled: the paper's continuous-time variants and its hindsight benchmark.

use super::kv_profile::{KvProfile, ProfileTracker, Projection};
use super::sized_queue::{SizeTest, SizedQueue};
use super::vllm::schedule_running;
use crate::error::{Error, Result};
use crate::policy::{Policy, PolicyOptions};
use crate::request::Slot;
use crate::scheduler::SchedulerState;
use crate::step::Step;

/// Waiting-queue key: remaining hinted output, then arrival sequence, then slot.
type Key = (u32, u64, Slot);

/// Memory-Constrained Shortest-First admission over vLLM-style block accounting.
#[derive(Debug, Clone)]
pub struct McSfPolicy {
    /// Waiting requests in key order, each with its size (owed prompt tokens).
    waiting: SizedQueue<Key>,
    /// Each slot's key while it waits (indexed by slot).
    keys: Vec<Key>,
    next_seq: u64,
    skip_infeasible: bool,
    default_output_len: u32,
    profile: KvProfile,
    /// The running requests' projection, kept across steps (loaded into `profile` when first needed in a step).
    tracker: ProfileTracker,
    /// Steps scheduled so far.
    steps: u64,
    admitted: Vec<Key>,
    /// Look at every candidate even under `skip` (the unindexed walk; for differential tests).
    exhaustive: bool,
}

impl McSfPolicy {
    /// Options accepted by [`McSfPolicy::from_options`].
    pub const OPTIONS: &'static [&'static str] = &["on_infeasible", "default_output_len"];

    /// A policy that stops at the first infeasible candidate (`skip = false`) or skips it.
    pub fn new(skip_infeasible: bool, default_output_len: u32) -> Self {
        McSfPolicy {
            waiting: SizedQueue::default(),
            keys: Vec::new(),
            next_seq: 0,
            skip_infeasible,
            default_output_len: default_output_len.max(1),
            profile: KvProfile::default(),
            tracker: ProfileTracker::default(),
            steps: 0,
            admitted: Vec::new(),
            exhaustive: false,
        }
    }

    /// The same policy, but under `skip` it looks at every waiting candidate in turn instead of jumping over
    /// those that must fail: slower, with the same decisions (what the differential tests check).
    pub fn with_exhaustive_walk(mut self) -> Self {
        self.exhaustive = true;
        self
    }

    /// Builds the policy from its options.
    pub fn from_options(mut options: PolicyOptions) -> Result<Self> {
        let mode = options.choice("on_infeasible", &["stop", "skip"], "stop")?;
        let default_output_len = options.u32("default_output_len", 256)?;
        if default_output_len == 0 {
            return Err(Error::config("policy \"mc-sf\": default_output_len must be >= 1"));
        }
        options.finish(Self::OPTIONS)?;
        Ok(McSfPolicy::new(mode == "skip", default_output_len))
    }

    /// The request's projection: `num_tokens − 1 + τ` tokens for `max(hint − generated, 1)` steps.
    fn projection(&self, state: &SchedulerState, slot: Slot) -> Projection {
        projection(state, slot, self.default_output_len)
    }

    fn push_waiting(&mut self, state: &SchedulerState, slot: Slot, seq: u64) {
        let key = (self.projection(state, slot).steps, seq, slot);
        if self.keys.len() <= slot as usize {
            self.keys.resize(slot as usize + 1, (0, 0, 0));
        }
        self.keys[slot as usize] = key;
        debug_assert_eq!(state.request(slot).num_computed_tokens, 0, "a waiting request holds no KV");
        self.waiting.insert(key, state.request(slot).num_owed_tokens());
    }

    /// Admits candidates in key order while the projection allows. Returns nothing; records in `step`.
    ///
    /// The projection of the running requests is built lazily, when a candidate first passes the cheaper checks
    /// (the running list then holds the requests running at the start of the step plus those admitted since,
    /// whose projections are unchanged by admission), and each admission is then added in O(n) without a
    /// re-sort ([`KvProfile::add`]): the same decisions as building it up front and rebuilding after each one.
    fn admit(&mut self, state: &mut SchedulerState, step: &mut Step) {
        let cfg = *state.config();
        let capacity = u64::from(state.pool().usable_blocks());
        let mut built = false;
        self.admitted.clear();
        let mut cursor: Option<Key> = None;
        // `skip` only: the smallest size that failed the memory checks this step. Those checks are monotone (a
        // later candidate has at least as many steps left; with at least as many tokens it needs at least as many
        // blocks at every future step, and admissions only take memory), so candidates of this size or more are
        // passed over without being looked at: the same decisions as trying each, in O(log W) per answer.
        let mut memory_limit = u64::MAX;
        while state.running().len() < cfg.max_num_seqs as usize {
            let tokens = step.num_batched_tokens();
            let next = if self.skip_infeasible && !self.exhaustive {
                let test = Candidates {
                    memory_limit,
                    budget_room: cfg.max_num_batched_tokens.saturating_sub(tokens),
                    budget: cfg.max_num_batched_tokens,
                    lone_prefill: step.shape.num_prefill_seqs == 0,
                };
                self.waiting.next_accepted(cursor.as_ref(), &test)
            } else {
                self.waiting.next_accepted(cursor.as_ref(), &Candidates::ANY)
            };
            let Some((key, _)) = next else { break };
            cursor = Some(key);
            let slot = key.2;
            let owed = state.request(slot).num_owed_tokens();
            let within_budget = tokens.saturating_add(owed) <= cfg.max_num_batched_tokens
                || (owed > cfg.max_num_batched_tokens && step.shape.num_prefill_seqs == 0);
            if !within_budget {
                if self.skip_infeasible {
                    continue;
                }
                break;
            }
            let p = self.projection(state, slot);
            let fits = state.blocks_needed(slot, owed) <= state.pool().num_free()
                && if state.running().is_empty() {
                    // Liveness: alone in the cache, admit whatever physically fits now.
                    state.fits_for_admission(slot, owed)
                } else {
                    if !built {
                        let default_output_len = self.default_output_len;
                        let items = state
                            .running()
                            .iter()
                            .map(|&running| (running, projection(state, running, default_output_len)));
                        self.tracker.load(cfg.block_size, self.steps, items, &mut self.profile);
                        built = true;
                    }
                    self.profile.fits_with(p, capacity)
                };
            if !fits {
                if self.skip_infeasible {
                    memory_limit = memory_limit.min(u64::from(owed));
                    continue;
                }
                break;
            }
            state.admit(slot, step);
            let ok = state.allocate(slot, owed);
            debug_assert!(ok, "checked above");
            state.schedule(slot, owed, step);
            self.admitted.push(key);
            if built {
                self.profile.add(p);
            }
        }
        for key in &self.admitted {
            self.waiting.remove(key);
        }
    }
}

/// Which waiting requests the `skip` walk still needs to look at, by size (owed prompt tokens).
struct Candidates {
    /// Sizes from here up fail the memory checks.
    memory_limit: u64,
    /// Most prompt tokens the step's token budget still takes.
    budget_room: u32,
    /// `max_num_batched_tokens`.
    budget: u32,
    /// No prefill yet this step: a prompt longer than the whole budget may run alone.
    lone_prefill: bool,
}

impl Candidates {
    /// Every request (the `stop` walk looks at each in turn).
    const ANY: Candidates = Candidates { memory_limit: u64::MAX, budget_room: u32::MAX, budget: 0, lone_prefill: true };
}

impl SizeTest for Candidates {
    fn node(&self, size: u32) -> bool {
        u64::from(size) < self.memory_limit && (size <= self.budget_room || (self.lone_prefill && size > self.budget))
    }

    fn subtree(&self, min: u32, max: u32) -> bool {
        u64::from(min) < self.memory_limit && (min <= self.budget_room || (self.lone_prefill && max > self.budget))
    }
}

/// A request's projection: `num_tokens − 1 + τ` tokens for `max(hint − generated, 1)` steps.
fn projection(state: &SchedulerState, slot: Slot, default_output_len: u32) -> Projection {
    let r = state.request(slot);
    let hint = r.output_len_hint.unwrap_or(default_output_len);
    Projection { base: r.num_tokens() - 1, steps: hint.saturating_sub(r.num_output_tokens).max(1) }
}

impl Policy for McSfPolicy {
    fn name(&self) -> &'static str {
        "mc-sf"
    }

    fn needs_output_lengths(&self) -> bool {
        true
    }

    fn enqueue(&mut self, state: &SchedulerState, slot: Slot) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.push_waiting(state, slot, seq);
    }

    fn remove_waiting(&mut self, _state: &SchedulerState, slot: Slot) -> bool {
        match self.keys.get(slot as usize) {
            Some(key) => self.waiting.remove(key),
            None => false,
        }
    }

    fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    fn schedule(&mut self, state: &mut SchedulerState, step: &mut Step) {
        self.steps += 1;
        let mut victims = Vec::new();
        // Unlimited budget: every running request owes exactly one token (prefills run whole at admission).
        let (_, preempted) = schedule_running(state, step, u32::MAX, |slot| victims.push(slot));
        for slot in victims {
            // Keep its original arrival order for ties.
            let seq = self.keys[slot as usize].1;
            self.push_waiting(state, slot, seq);
        }
        // With `max_num_seqs` running nothing can be admitted: skip the candidates (and the projection).
        if !preempted && !self.waiting.is_empty() && state.running().len() < state.config().max_num_seqs as usize {
            self.admit(state, step);
        }
    }
}
