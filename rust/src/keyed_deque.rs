//! [`KeyedDeque`]: a double-ended queue of distinct keys (each with a value) that also removes any key in O(1),
//! for the policies' waiting queues, where aborting or finishing a waiting request must not scan the queue.
//!
//! It is a doubly linked list in a slab (`Vec` of nodes, freed nodes reused) plus a hash map from key to node.
//! `push_front`, `push_back`, `pop_front`, `front` and `remove` are O(1) (expected, for the map); iteration visits
//! exactly the live entries, in order. The order is the one a `VecDeque` would have under the same operations,
//! with `remove(key)` removing the key wherever it is.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Node<K, V> {
    key: K,
    value: V,
    prev: u32,
    next: u32,
}

/// A fast hasher for the integer keys used here (slots and request ids): a multiply-rotate mix (as in FxHash).
#[derive(Debug, Clone, Copy, Default)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// A deque of distinct keys with values, removable by key in O(1). See the [module docs](self).
#[derive(Debug, Clone)]
pub struct KeyedDeque<K, V> {
    nodes: Vec<Node<K, V>>,
    free: Vec<u32>,
    head: u32,
    tail: u32,
    index: HashMap<K, u32, BuildHasherDefault<IntHasher>>,
}

impl<K, V> Default for KeyedDeque<K, V> {
    fn default() -> Self {
        KeyedDeque { nodes: Vec::new(), free: Vec::new(), head: NIL, tail: NIL, index: HashMap::default() }
    }
}

impl<K: Copy + Eq + Hash, V: Copy> KeyedDeque<K, V> {
    /// An empty deque.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether `key` is queued.
    pub fn contains(&self, key: &K) -> bool {
        self.index.contains_key(key)
    }

    fn alloc(&mut self, key: K, value: V, prev: u32, next: u32) -> u32 {
        let node = Node { key, value, prev, next };
        match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                let i = u32::try_from(self.nodes.len()).expect("fewer than 2^32 - 1 queued entries");
                assert!(i != NIL, "fewer than 2^32 - 1 queued entries");
                self.nodes.push(node);
                i
            }
        }
    }

    /// Adds `key` at the back. A key already queued is moved there (keys are distinct).
    pub fn push_back(&mut self, key: K, value: V) {
        self.remove(&key);
        let i = self.alloc(key, value, self.tail, NIL);
        match self.tail {
            NIL => self.head = i,
            t => self.nodes[t as usize].next = i,
        }
        self.tail = i;
        self.index.insert(key, i);
    }

    /// Adds `key` at the front. A key already queued is moved there (keys are distinct).
    pub fn push_front(&mut self, key: K, value: V) {
        self.remove(&key);
        let i = self.alloc(key, value, NIL, self.head);
        match self.head {
            NIL => self.tail = i,
            h => self.nodes[h as usize].prev = i,
        }
        self.head = i;
        self.index.insert(key, i);
    }

    /// The first entry.
    pub fn front(&self) -> Option<(K, V)> {
        (self.head != NIL).then(|| {
            let n = &self.nodes[self.head as usize];
            (n.key, n.value)
        })
    }

    /// Takes the first entry.
    pub fn pop_front(&mut self) -> Option<(K, V)> {
        let (key, value) = self.front()?;
        self.remove(&key);
        Some((key, value))
    }

    /// Removes `key` wherever it is, in O(1); its value, or None if it is not queued.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let i = self.index.remove(key)?;
        let Node { value, prev, next, .. } = self.nodes[i as usize];
        match prev {
            NIL => self.head = next,
            p => self.nodes[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.nodes[n as usize].prev = prev,
        }
        if self.index.is_empty() {
            // Nothing left: drop the slab (keeps memory proportional to what is queued).
            self.nodes.clear();
            self.free.clear();
        } else {
            self.free.push(i);
        }
        Some(value)
    }

    /// The entries, front to back.
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter { deque: self, at: self.head, left: self.len() }
    }
}

/// Iterator over a [`KeyedDeque`], front to back.
#[derive(Debug)]
pub struct Iter<'a, K, V> {
    deque: &'a KeyedDeque<K, V>,
    at: u32,
    left: usize,
}

impl<K: Copy, V: Copy> Iterator for Iter<'_, K, V> {
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        if self.at == NIL {
            return None;
        }
        let n = &self.deque.nodes[self.at as usize];
        self.at = n.next;
        self.left -= 1;
        Some((n.key, n.value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<K: Copy, V: Copy> ExactSizeIterator for Iter<'_, K, V> {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    #[derive(Debug, Clone)]
    enum Op {
        PushBack(u8),
        PushFront(u8),
        PopFront,
        Remove(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..40).prop_map(Op::PushBack),
            (0u8..40).prop_map(Op::PushFront),
            Just(Op::PopFront),
            (0u8..40).prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// Same order as a `VecDeque` with a position scan, on distinct keys.
        #[test]
        fn matches_a_vecdeque(ops in prop::collection::vec(op(), 0..300)) {
            let mut d: KeyedDeque<u32, u64> = KeyedDeque::new();
            let mut v: VecDeque<(u32, u64)> = VecDeque::new();
            for (t, op) in ops.into_iter().enumerate() {
                let t = t as u64;
                match op {
                    Op::PushBack(k) | Op::PushFront(k) if v.iter().any(|&(x, _)| x == u32::from(k)) => {}
                    Op::PushBack(k) => {
                        d.push_back(u32::from(k), t);
                        v.push_back((u32::from(k), t));
                    }
                    Op::PushFront(k) => {
                        d.push_front(u32::from(k), t);
                        v.push_front((u32::from(k), t));
                    }
                    Op::PopFront => prop_assert_eq!(d.pop_front(), v.pop_front()),
                    Op::Remove(k) => {
                        let expected = v.iter().position(|&(x, _)| x == u32::from(k)).and_then(|p| v.remove(p));
                        prop_assert_eq!(d.remove(&u32::from(k)), expected.map(|(_, t)| t));
                    }
                }
                prop_assert_eq!(d.len(), v.len());
                prop_assert_eq!(d.front(), v.front().copied());
                prop_assert_eq!(d.iter().collect::<Vec<_>>(), v.iter().copied().collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn removing_many_keeps_memory_bounded() {
        let mut d: KeyedDeque<u64, ()> = KeyedDeque::new();
        for k in 0..1000 {
            d.push_back(k, ());
        }
        for k in (0..1000).rev().step_by(2) {
            assert_eq!(d.remove(&k), Some(()));
        }
        assert_eq!(d.len(), 500);
        assert_eq!(d.iter().map(|(k, _)| k).take(3).collect::<Vec<_>>(), vec![0, 2, 4]);
        for k in 0..1000 {
            d.remove(&k);
        }
        assert!(d.is_empty() && d.nodes.is_empty() && d.front().is_none());
    }
}
