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

impl Projection {
    /// Blocks the request holds in its last step: `⌈(base + steps) / block_size⌉`, its largest size (blocks never
    /// shrink before a request leaves).
    pub fn final_blocks(self, block_size: u32) -> u64 {
        (u64::from(self.base) + u64::from(self.steps)).div_ceil(u64::from(block_size))
    }
}

/// One admission pass of a projected-peak memory guard (WAIT's, in the simulator and in the engine-facing
/// controller): the quick bound (every request at its final size at once, `Σ final blocks ≤ capacity`) settles
/// most candidates; the exact projected peak ([`KvProfile::fits_with`] over the running requests, loaded on first
/// need) settles the rest. Each candidate that passes joins both.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardPass {
    finals: Option<u64>,
    loaded: bool,
}

/// How [`GuardPass::check`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardVerdict {
    /// The candidate fits (by the quick bound or the exact peak) and was added.
    Fits,
    /// The exact peak would exceed the capacity.
    Exceeds,
    /// The quick bound failed and the caller asked to skip the exact check.
    Skipped,
}

impl GuardPass {
    /// A pass whose quick bound starts from the running requests' final blocks (computed on first need).
    pub fn new() -> Self {
        GuardPass::default()
    }

    /// Checks candidate `p` against `capacity` blocks. `finals` gives the running requests' `Σ final blocks`,
    /// `load` fills `profile` with the running requests (both called at most once per pass); with `skip_exact`,
    /// a candidate the quick bound cannot settle is refused without the exact check.
    #[allow(clippy::too_many_arguments)]
    pub fn check(
        &mut self,
        profile: &mut KvProfile,
        p: Projection,
        block_size: u32,
        capacity: u64,
        finals: impl FnOnce() -> u64,
        skip_exact: bool,
        load: impl FnOnce(&mut KvProfile),
    ) -> GuardVerdict {
        let finals = *self.finals.get_or_insert_with(finals);
        let own = p.final_blocks(block_size);
        if finals + own <= capacity {
            if self.loaded {
                profile.add(p);
            }
        } else if skip_exact {
            return GuardVerdict::Skipped;
        } else {
            if !self.loaded {
                load(profile);
                self.loaded = true;
            }
            // A lone request always fits (its scheduler checked it), so an empty batch never blocks.
            if !profile.is_empty() && !profile.fits_with(p, capacity) {
                return GuardVerdict::Exceeds;
            }
            profile.add(p);
        }
        self.finals = Some(finals + own);
        GuardVerdict::Fits
    }
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
        self.refresh_prefix_max();
    }

    fn refresh_prefix_max(&mut self) {
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

/// A running set's [`KvProfile`] kept across steps, so that loading it costs O(n + changes·c) (n requests, c
/// checkpoints) instead of a rebuild's O(n log n) sorts.
///
/// A request that decodes one token per step has the same projection in *absolute* step terms every step: at
/// absolute step `s` it holds `B + s` tokens (`B = base − now`) until its last step `E = now + steps`. The tracker
/// keeps `M` at each distinct absolute completion time `E` and updates it only for requests whose absolute
/// projection changed (admitted, finished, preempted, mid-prefill, outliving a hint, not served in a step);
/// [`ProfileTracker::load`] then fills a [`KvProfile`] with exactly the checkpoints a rebuild gives (every value is
/// an integer sum, so the result is identical). Many changes at once fall back to a rebuild.
#[derive(Debug, Clone, Default)]
pub struct ProfileTracker {
    block_size: u32,
    /// Per slot: index into `members` plus one (0 = absent).
    index: Vec<u32>,
    /// `(slot, B, E)` of each tracked request.
    members: Vec<(u32, i64, u64)>,
    /// `(E, number of members ending at E, M(E))`, ascending in `E`.
    checkpoints: Vec<(u64, u32, u64)>,
    /// Per slot: `2·stamp` of the latest load that saw it unchanged, `2·stamp + 1` changed.
    seen: Vec<u64>,
    stamp: u64,
    /// `(slot, B, E)` of every request of the current load, and of those whose absolute projection changed.
    all: Vec<(u32, i64, u64)>,
    changed: Vec<(u32, i64, u64)>,
}

impl ProfileTracker {
    #[inline]
    fn term(&self, b: i64, at: u64) -> u64 {
        // b + at >= 1 at every checkpoint a member contributes to: checkpoints are later than the step at which
        // the member was inserted, and a member contributes to those up to its own completion.
        ((b + at as i64) as u64).div_ceil(u64::from(self.block_size))
    }

    /// Loads the projections `items` (`(slot, projection)`, one per slot, `τ = 1` being the step being built,
    /// numbered `now + 1`) into `out`: afterwards `out` answers every query as after [`KvProfile::clear`], a
    /// [`KvProfile::push`] per item and [`KvProfile::rebuild`]. `now` should grow by one per step in which every
    /// request advances one token (else loads cost more; the result is the same).
    pub fn load(
        &mut self,
        block_size: u32,
        now: u64,
        items: impl Iterator<Item = (u32, Projection)>,
        out: &mut KvProfile,
    ) {
        debug_assert!(block_size >= 1);
        if block_size != self.block_size {
            self.reset(block_size);
        }
        out.clear(block_size);
        self.stamp += 1;
        self.all.clear();
        self.changed.clear();
        for (slot, p) in items {
            debug_assert!(p.steps >= 1);
            out.items.push(p);
            let (b, e) = (i64::from(p.base) - now as i64, now + u64::from(p.steps));
            let s = slot as usize;
            if self.seen.len() <= s {
                self.seen.resize(s + 1, 0);
                self.index.resize(s + 1, 0);
            }
            self.all.push((slot, b, e));
            let i = self.index[s] as usize;
            if i == 0 || self.members[i - 1].1 != b || self.members[i - 1].2 != e {
                self.changed.push((slot, b, e));
                self.seen[s] = 2 * self.stamp + 1;
            } else {
                self.seen[s] = 2 * self.stamp;
            }
        }
        let mut removed = 0usize;
        let mut k = 0;
        while k < self.members.len() {
            let slot = self.members[k].0 as usize;
            if self.seen[slot] != 2 * self.stamp {
                removed += 1;
                if removed + self.changed.len() > 8 + self.members.len() / 8 {
                    break;
                }
                self.remove_member(k);
            } else {
                k += 1;
            }
        }
        if removed + self.changed.len() > 8 + self.members.len() / 8 {
            self.rebuild_from(out, now);
        } else {
            let changed = std::mem::take(&mut self.changed);
            for &(slot, b, e) in &changed {
                self.insert_member(slot, b, e);
            }
            self.changed = changed;
            out.checkpoints.extend(self.checkpoints.iter().map(|&(e, _, m)| ((e - now) as u32, m)));
            out.refresh_prefix_max();
        }
        debug_assert_eq!(self.members.len(), out.items.len());
        #[cfg(debug_assertions)]
        {
            let mut fresh = KvProfile::default();
            fresh.clear(block_size);
            out.items.iter().for_each(|&p| fresh.push(p));
            fresh.rebuild();
            debug_assert_eq!(fresh.checkpoints, out.checkpoints, "tracked profile differs from a rebuild");
            debug_assert_eq!(fresh.prefix_max, out.prefix_max);
        }
    }

    fn reset(&mut self, block_size: u32) {
        self.block_size = block_size;
        self.index.clear();
        self.members.clear();
        self.checkpoints.clear();
        self.seen.clear();
    }

    fn remove_member(&mut self, k: usize) {
        let (slot, b, e) = self.members.swap_remove(k);
        self.index[slot as usize] = 0;
        if let Some(&(moved, _, _)) = self.members.get(k) {
            self.index[moved as usize] = k as u32 + 1;
        }
        let j = self.checkpoints.partition_point(|&(at, _, _)| at < e);
        debug_assert_eq!(self.checkpoints[j].0, e);
        for c in 0..j {
            let t = self.term(b, self.checkpoints[c].0);
            self.checkpoints[c].2 -= t;
        }
        self.checkpoints[j].1 -= 1;
        if self.checkpoints[j].1 == 0 {
            self.checkpoints.remove(j);
        } else {
            let t = self.term(b, e);
            self.checkpoints[j].2 -= t;
        }
    }

    fn insert_member(&mut self, slot: u32, b: i64, e: u64) {
        self.members.push((slot, b, e));
        self.index[slot as usize] = self.members.len() as u32;
        let j = self.checkpoints.partition_point(|&(at, _, _)| at < e);
        for c in 0..j {
            let t = self.term(b, self.checkpoints[c].0);
            self.checkpoints[c].2 += t;
        }
        if j < self.checkpoints.len() && self.checkpoints[j].0 == e {
            let t = self.term(b, e);
            self.checkpoints[j].1 += 1;
            self.checkpoints[j].2 += t;
        } else {
            let m = self.members.iter().filter(|&&(_, _, me)| me >= e).map(|&(_, mb, _)| self.term(mb, e)).sum();
            self.checkpoints.insert(j, (e, 1, m));
        }
    }

    /// Rebuilds `out` and sets the tracked state from it and `self.all` (the current requests).
    fn rebuild_from(&mut self, out: &mut KvProfile, now: u64) {
        out.rebuild();
        for &(slot, _, _) in &self.members {
            self.index[slot as usize] = 0;
        }
        self.members.clear();
        self.members.extend_from_slice(&self.all);
        for (i, &(slot, _, _)) in self.members.iter().enumerate() {
            self.index[slot as usize] = i as u32 + 1;
        }
        // `out.items` is sorted by steps, descending: count the members at each checkpoint.
        self.checkpoints.clear();
        let mut i = out.items.len();
        for &(tau, m) in &out.checkpoints {
            let mut count = 0;
            while i > 0 && out.items[i - 1].steps == tau {
                count += 1;
                i -= 1;
            }
            self.checkpoints.push((now + u64::from(tau), count, m));
        }
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

        #[test]
        fn tracker_matches_rebuild(
            ops in prop::collection::vec(
                (prop::collection::vec((0u32..40, 0u32..300, 1u32..60), 0..30), 0u64..3, 0u32..4),
                1..25,
            ),
            bs in 1u32..20,
        ) {
            // Each load: some requests keep advancing (one token per step), plus random changes.
            let mut tracker = ProfileTracker::default();
            let mut live: std::collections::BTreeMap<u32, Projection> = Default::default();
            let mut now = 0u64;
            for (changes, advance, drop_every) in ops {
                now += advance;
                let mut next = std::collections::BTreeMap::new();
                for (slot, p) in &live {
                    if drop_every > 0 && slot % (drop_every + 1) == 0 {
                        continue;
                    }
                    let d = advance as u32;
                    if p.steps > d {
                        next.insert(*slot, Projection { base: p.base + d, steps: p.steps - d });
                    }
                }
                for (slot, base, steps) in changes {
                    next.insert(slot, Projection { base, steps });
                }
                live = next;
                let mut out = KvProfile::default();
                tracker.load(bs, now, live.iter().map(|(&s, &p)| (s, p)), &mut out);
                let mut fresh = KvProfile::default();
                fresh.clear(bs);
                live.values().for_each(|&p| fresh.push(p));
                fresh.rebuild();
                prop_assert_eq!(&out.checkpoints, &fresh.checkpoints);
                prop_assert_eq!(&out.prefix_max, &fresh.prefix_max);
                prop_assert_eq!(out.len(), fresh.len());
            }
        }
    }
}
