//! Projected KV usage of requests that each grow by one token per step until they finish: the feasibility check
//! behind MC-SF ([`super::mc_sf`]).
//!
//! A request is a [`Projection`]: during step `τ = 1, 2, …, steps` (step 1 is the step being built) it holds
//! `base + τ` tokens, hence `ceil((base + τ) / block_size)` blocks, and after step `steps` it holds nothing.
//! The projected usage `M(τ)` of a set of requests is the sum over those with `steps ≥ τ`. Between two
//! completion times the set is fixed and every term is non-decreasing in `τ`, so the peak is reached at a
//! completion time: checking `M` at the distinct `steps` values (the *checkpoints*) suffices.
//!
//! [`KvProfile::rebuild`] computes `M` at every checkpoint in O(n log n), with exact block rounding: writing
//! `base + block_size − 1 = q·bs + m` and `τ = T·bs + u`, `ceil((base + τ)/bs) = q + T + [m + u ≥ bs]`, so a sweep
//! over checkpoints in decreasing order only needs `Σq`, a count, and a Fenwick tree counting the `m` values
//! at least `bs − u`. [`KvProfile::fits_with`] then tests one more request in O(n), and [`KvProfile::add`] adds it
//! in O(n) (no re-sort).

/// A request's projected growth: `base + τ` tokens during steps `τ = 1..=steps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Projection {
    /// Tokens held during step `τ` are `base + τ` (for a request in the scheduler: its known tokens minus one).
    pub base: u32,
    /// Steps until (and including) the request's last step; at least 1.
    pub steps: u32,
}

/// Projected blocks in use at every completion time of a set of [`Projection`]s.
#[derive(Debug, Clone, Default)]
pub struct KvProfile {
    block_size: u32,
    items: Vec<Projection>,
    /// `(τ, M(τ))` at each distinct completion time, ascending in `τ`.
    checkpoints: Vec<(u32, u64)>,
    /// `prefix_max[j]` = max of `M` over `checkpoints[..=j]`.
    prefix_max: Vec<u64>,
    /// Sorted distinct `m` values (coordinate compression for the Fenwick tree).
    ms: Vec<u32>,
    fenwick: Vec<u32>,
}

impl KvProfile {
    /// Empties the profile and sets the block size (>= 1).
    pub fn clear(&mut self, block_size: u32) {
        debug_assert!(block_size >= 1);
        self.block_size = block_size;
        self.items.clear();
        self.checkpoints.clear();
        self.prefix_max.clear();
    }

    /// Adds a request; call [`KvProfile::rebuild`] before querying.
    pub fn push(&mut self, p: Projection) {
        debug_assert!(p.steps >= 1);
        self.items.push(p);
    }

    /// Number of requests in the profile.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when the profile holds no request.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    #[inline]
    fn blocks(&self, tokens: u64) -> u64 {
        tokens.div_ceil(u64::from(self.block_size))
    }

    /// Projected blocks at step `tau`, computed directly in O(n).
    pub fn blocks_at(&self, tau: u32) -> u64 {
        self.items.iter().filter(|p| p.steps >= tau).map(|p| self.blocks(u64::from(p.base) + u64::from(tau))).sum()
    }

    /// The projected peak over all future steps (0 when empty). Valid after [`KvProfile::rebuild`].
    pub fn peak(&self) -> u64 {
        self.prefix_max.last().copied().unwrap_or(0)
    }

    /// Recomputes `M` at every checkpoint, in O(n log n).
    pub fn rebuild(&mut self) {
        let bs = u64::from(self.block_size);
        self.items.sort_unstable_by_key(|p| std::cmp::Reverse(p.steps));
        self.ms.clear();
        self.ms.extend(self.items.iter().map(|p| ((u64::from(p.base) + bs - 1) % bs) as u32));
        self.ms.sort_unstable();
        self.ms.dedup();
        self.fenwick.clear();
        self.fenwick.resize(self.ms.len() + 1, 0);
        self.checkpoints.clear();
        let (mut sum_q, mut count) = (0u64, 0u64);
        let mut i = 0;
        while i < self.items.len() {
            let tau = self.items[i].steps;
            while i < self.items.len() && self.items[i].steps == tau {
                let a = u64::from(self.items[i].base) + bs - 1;
                sum_q += a / bs;
                count += 1;
                let idx = self.ms.partition_point(|&x| u64::from(x) < a % bs);
                fenwick_add(&mut self.fenwick, idx);
                i += 1;
            }
            let (t, u) = (u64::from(tau) / bs, u64::from(tau) % bs);
            let carry = if u == 0 {
                0
            } else {
                // Items with m >= bs - u: all of them minus those with m < bs - u.
                let idx = self.ms.partition_point(|&x| u64::from(x) < bs - u);
                count - fenwick_prefix(&self.fenwick, idx)
            };
            self.checkpoints.push((tau, sum_q + count * t + carry));
        }
        self.checkpoints.reverse();
        self.prefix_max.clear();
        let mut best = 0;
        for &(_, m) in &self.checkpoints {
            best = best.max(m);
            self.prefix_max.push(best);
        }
    }

    /// Adds `p` to a built profile and updates `M` in O(n), without re-sorting: the same checkpoints (and
    /// [`KvProfile::peak`], [`KvProfile::fits_with`]) as [`KvProfile::push`] then [`KvProfile::rebuild`], which
    /// cost O(n log n). Valid after a rebuild (and any number of `add`s).
    pub fn add(&mut self, p: Projection) {
        debug_assert!(p.steps >= 1);
        self.items.push(p);
        let bs = u64::from(self.block_size);
        let own = |tau: u32| (u64::from(p.base) + u64::from(tau)).div_ceil(bs);
        // Checkpoints at or before p's completion gain p's term; later ones are unchanged.
        let j = self.checkpoints.partition_point(|&(tau, _)| tau <= p.steps);
        for (tau, m) in &mut self.checkpoints[..j] {
            *m += own(*tau);
        }
        if j == 0 || self.checkpoints[j - 1].0 != p.steps {
            // p's completion time is a new checkpoint: everything still held then (p included).
            let m = self.blocks_at(p.steps);
            self.checkpoints.insert(j, (p.steps, m));
        }
        self.prefix_max.clear();
        let mut best = 0;
        for &(_, m) in &self.checkpoints {
            best = best.max(m);
            self.prefix_max.push(best);
        }
    }

    /// Whether adding `p` keeps the projected usage within `capacity` blocks at every future step, given that the
    /// profile's own requests already do. Exact (block rounding included), O(n). Valid after a rebuild.
    pub fn fits_with(&self, p: Projection, capacity: u64) -> bool {
        let own = |tau: u32| self.blocks(u64::from(p.base) + u64::from(tau));
        // Checkpoints at or before p's completion gain p's term; later ones are unchanged.
        let j = self.checkpoints.partition_point(|&(tau, _)| tau <= p.steps);
        // Necessary condition, O(log n): p needs at least `own(1)` blocks at every such checkpoint.
        if j > 0 && self.prefix_max[j - 1] + own(1) > capacity {
            return false;
        }
        if self.checkpoints[..j].iter().any(|&(tau, m)| m + own(tau) > capacity) {
            return false;
        }
        // p's own completion time is a new checkpoint unless it already is one.
        let at_end = match j.checked_sub(1).map(|k| self.checkpoints[k]) {
            Some((tau, m)) if tau == p.steps => m,
            _ => self.blocks_at(p.steps),
        };
        at_end + own(p.steps) <= capacity
    }
}

/// Adds one at compressed index `idx` (0-based) of a Fenwick tree stored 1-based.
fn fenwick_add(tree: &mut [u32], idx: usize) {
    let mut i = idx + 1;
    while i < tree.len() {
        tree[i] += 1;
        i += i & i.wrapping_neg();
    }
}

/// Count of entries at compressed indices `< idx`.
fn fenwick_prefix(tree: &[u32], idx: usize) -> u64 {
    let mut i = idx;
    let mut s = 0u64;
    while i > 0 {
        s += u64::from(tree[i]);
        i -= i & i.wrapping_neg();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brute_peak(items: &[Projection], bs: u32) -> u64 {
        let horizon = items.iter().map(|p| p.steps).max().unwrap_or(0);
        let mut prof = KvProfile::default();
        prof.clear(bs);
        items.iter().for_each(|&p| prof.push(p));
        (1..=horizon).map(|t| prof.blocks_at(t)).max().unwrap_or(0)
    }

    proptest! {
        #[test]
        fn matches_brute_force(
            items in prop::collection::vec((0u32..300, 1u32..60), 0..12),
            extra in (0u32..300, 1u32..60),
            bs in 1u32..20,
            capacity in 0u64..200,
        ) {
            let items: Vec<Projection> = items.into_iter().map(|(base, steps)| Projection { base, steps }).collect();
            let mut prof = KvProfile::default();
            prof.clear(bs);
            items.iter().for_each(|&p| prof.push(p));
            prof.rebuild();
            for &(tau, m) in &prof.checkpoints {
                prop_assert_eq!(m, prof.blocks_at(tau));
            }
            prop_assert_eq!(prof.peak(), brute_peak(&items, bs));
            let extra = Projection { base: extra.0, steps: extra.1 };
            let mut with = items.clone();
            with.push(extra);
            let mut added = prof.clone();
            added.add(extra);
            let mut rebuilt = prof.clone();
            rebuilt.push(extra);
            rebuilt.rebuild();
            prop_assert_eq!(&added.checkpoints, &rebuilt.checkpoints);
            prop_assert_eq!(&added.prefix_max, &rebuilt.prefix_max);
            prop_assert_eq!(added.len(), rebuilt.len());
            // And again (a second request, possibly at an existing checkpoint).
            added.add(extra);
            rebuilt.push(extra);
            rebuilt.rebuild();
            prop_assert_eq!(&added.checkpoints, &rebuilt.checkpoints);
            prop_assert_eq!(&added.prefix_max, &rebuilt.prefix_max);
            if brute_peak(&items, bs) <= capacity {
                prop_assert_eq!(prof.fits_with(extra, capacity), brute_peak(&with, bs) <= capacity);
            }
        }
    }
}
