//! [`SizedQueue`]: an ordered queue of waiting requests, each with a size, that finds the next request (in key
//! order, after a cursor) whose size passes a test, skipping whole runs of requests that cannot pass it.
//!
//! MC-SF with `on_infeasible = "skip"` walks its waiting queue in shortest-remaining-output order and admits
//! every candidate that fits. Its checks are monotone in a waiting request's size (its owed prompt tokens): once
//! a candidate of size `s` fails the memory checks in a step, every later candidate of size `≥ s` fails them too
//! (it holds at least as many tokens for at least as many steps). Walking the whole queue every step is Θ(W) per
//! step, quadratic over an overloaded run; this queue instead jumps to the next candidate that could pass, in
//! O(log W) expected per answer.
//!
//! A treap keyed by `K` (deterministic priorities: a hash of the key, so runs are reproducible) whose nodes
//! carry the minimum and maximum size of their subtree. Nodes live in one arena with a free list: no allocation
//! per operation once warm.

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Node<K> {
    key: K,
    size: u32,
    priority: u64,
    left: u32,
    right: u32,
    min: u32,
    max: u32,
}

/// An ordered set of keys, each with a size, searchable for the next key whose size passes a test.
#[derive(Debug, Clone)]
pub struct SizedQueue<K> {
    nodes: Vec<Node<K>>,
    free: Vec<u32>,
    root: u32,
    len: usize,
}

impl<K> Default for SizedQueue<K> {
    fn default() -> Self {
        SizedQueue { nodes: Vec::new(), free: Vec::new(), root: NIL, len: 0 }
    }
}

/// What a search accepts: `node` decides one request by its size; `subtree` says, from the smallest and largest
/// size of a subtree, whether it may hold an accepted request (it may answer `true` too often, never too rarely).
pub trait SizeTest {
    /// Whether a request of this size is accepted.
    fn node(&self, size: u32) -> bool;
    /// Whether a subtree whose sizes lie in `[min, max]` may hold an accepted request.
    fn subtree(&self, min: u32, max: u32) -> bool;
}

impl<K: Ord + Copy + Hash64> SizedQueue<K> {
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no key is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Inserts `key` with `size` (the key must not be queued already).
    pub fn insert(&mut self, key: K, size: u32) {
        let node = Node { key, size, priority: key.hash64(), left: NIL, right: NIL, min: size, max: size };
        let id = match self.free.pop() {
            Some(id) => {
                self.nodes[id as usize] = node;
                id
            }
            None => {
                self.nodes.push(node);
                u32::try_from(self.nodes.len() - 1).expect("fewer than 2^32 queued requests")
            }
        };
        let (left, right) = self.split(self.root, &key);
        let left = self.merge(left, id);
        self.root = self.merge(left, right);
        self.len += 1;
    }

    /// Removes `key`; returns whether it was queued.
    pub fn remove(&mut self, key: &K) -> bool {
        let (root, removed) = self.remove_in(self.root, key);
        self.root = root;
        if removed != NIL {
            self.free.push(removed);
            self.len -= 1;
        }
        removed != NIL
    }

    /// The first key after `after` (from the start when `None`), in key order, whose size `test` accepts, with
    /// its size.
    pub fn next_accepted(&self, after: Option<&K>, test: &impl SizeTest) -> Option<(K, u32)> {
        let id = self.find(self.root, after, test);
        (id != NIL).then(|| (self.nodes[id as usize].key, self.nodes[id as usize].size))
    }

    fn find(&self, t: u32, after: Option<&K>, test: &impl SizeTest) -> u32 {
        if t == NIL {
            return NIL;
        }
        let n = &self.nodes[t as usize];
        if !test.subtree(n.min, n.max) {
            return NIL;
        }
        if after.is_some_and(|a| n.key <= *a) {
            return self.find(n.right, after, test);
        }
        let found = self.find(n.left, after, test);
        if found != NIL {
            return found;
        }
        if test.node(n.size) {
            return t;
        }
        self.find(n.right, after, test)
    }

    fn update(&mut self, t: u32) {
        let (left, right, size) = {
            let n = &self.nodes[t as usize];
            (n.left, n.right, n.size)
        };
        let (mut min, mut max) = (size, size);
        for child in [left, right] {
            if child != NIL {
                min = min.min(self.nodes[child as usize].min);
                max = max.max(self.nodes[child as usize].max);
            }
        }
        let n = &mut self.nodes[t as usize];
        n.min = min;
        n.max = max;
    }

    /// Splits `t` into keys `< key` and keys `>= key`.
    fn split(&mut self, t: u32, key: &K) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        if self.nodes[t as usize].key < *key {
            let (l, r) = self.split(self.nodes[t as usize].right, key);
            self.nodes[t as usize].right = l;
            self.update(t);
            (t, r)
        } else {
            let (l, r) = self.split(self.nodes[t as usize].left, key);
            self.nodes[t as usize].left = r;
            self.update(t);
            (l, t)
        }
    }

    /// Joins `a` and `b`, every key of `a` below every key of `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.nodes[a as usize].priority > self.nodes[b as usize].priority {
            let right = self.merge(self.nodes[a as usize].right, b);
            self.nodes[a as usize].right = right;
            self.update(a);
            a
        } else {
            let left = self.merge(a, self.nodes[b as usize].left);
            self.nodes[b as usize].left = left;
            self.update(b);
            b
        }
    }

    /// Removes `key` from `t`: the new subtree root and the removed node (`NIL` if absent).
    fn remove_in(&mut self, t: u32, key: &K) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        let (left, right) = (self.nodes[t as usize].left, self.nodes[t as usize].right);
        match key.cmp(&self.nodes[t as usize].key) {
            std::cmp::Ordering::Equal => (self.merge(left, right), t),
            std::cmp::Ordering::Less => {
                let (l, removed) = self.remove_in(left, key);
                self.nodes[t as usize].left = l;
                self.update(t);
                (t, removed)
            }
            std::cmp::Ordering::Greater => {
                let (r, removed) = self.remove_in(right, key);
                self.nodes[t as usize].right = r;
                self.update(t);
                (t, removed)
            }
        }
    }
}

/// A deterministic 64-bit hash of a key: the treap's priorities (same keys, same tree, on every run).
pub trait Hash64 {
    /// The hash.
    fn hash64(&self) -> u64;
}

impl Hash64 for (u32, u64, u32) {
    fn hash64(&self) -> u64 {
        splitmix64(self.1 ^ (u64::from(self.2) << 32) ^ u64::from(self.0).rotate_left(17))
    }
}

/// SplitMix64's finaliser: a well-mixed bijection of 64-bit words.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    type Key = (u32, u64, u32);

    /// Accepts sizes below `below`, or above `above` when that is set.
    struct Below {
        below: u32,
        above: Option<u32>,
    }

    impl SizeTest for Below {
        fn node(&self, size: u32) -> bool {
            size < self.below || self.above.is_some_and(|a| size > a)
        }
        fn subtree(&self, min: u32, max: u32) -> bool {
            min < self.below || self.above.is_some_and(|a| max > a)
        }
    }

    proptest! {
        /// Against a BTreeMap: same contents, and `next_accepted` is the first accepted key after the cursor.
        #[test]
        fn matches_an_ordered_map(ops in prop::collection::vec((0u8..4, 0u32..6, 0u64..40, 0u32..50), 1..300)) {
            let mut q = SizedQueue::<Key>::default();
            let mut reference = BTreeMap::<Key, u32>::new();
            for (op, steps, seq, size) in ops {
                let key = (steps, seq, (seq % 7) as u32);
                match op {
                    0 | 1 => {
                        if let std::collections::btree_map::Entry::Vacant(slot) = reference.entry(key) {
                            slot.insert(size);
                            q.insert(key, size);
                        }
                    }
                    2 => prop_assert_eq!(q.remove(&key), reference.remove(&key).is_some()),
                    _ => {
                        let test = Below { below: size, above: (seq % 3 == 0).then_some(size + 10) };
                        for after in [None, Some(key)] {
                            let want = reference
                                .iter()
                                .find(|(k, s)| after.is_none_or(|a| **k > a) && test.node(**s))
                                .map(|(k, s)| (*k, *s));
                            prop_assert_eq!(q.next_accepted(after.as_ref(), &test), want);
                        }
                    }
                }
                prop_assert_eq!(q.len(), reference.len());
            }
        }
    }
}
