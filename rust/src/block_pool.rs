//! The KV-cache block pool: fixed-size blocks of `block_size` tokens, handed to requests and taken back.
//!
//! Invariants (checked by [`BlockPool::check`] and the property tests):
//! - every block is either on the free list or owned by exactly one request, never both;
//! - `num_free() + num_used() == num_blocks()`;
//! - allocation never hands out more blocks than are free.
//!
//! Counts are O(1). Blocks are recycled LIFO from a pre-sized free stack, and a request's block table is a
//! `Vec` owned by the request whose capacity is kept across reuse, so steady-state steps do not allocate.

use crate::error::{Error, Result};

/// Marker in the owner table for a free block.
const FREE: u32 = u32::MAX;

/// Most blocks a pool may have (2^26, about 67 million: 512 MiB of tables, far above any GPU's KV cache at
/// vLLM's block sizes). Larger counts are rejected instead of exhausting memory.
pub const MAX_NUM_BLOCKS: u32 = 1 << 26;

/// A pool of KV-cache blocks.
#[derive(Debug, Clone)]
pub struct BlockPool {
    block_size: u32,
    watermark_blocks: u32,
    /// Stack of free block ids.
    free: Vec<u32>,
    /// `owner[b]` is the slot of the request holding block `b`, or [`FREE`].
    owner: Vec<u32>,
}

impl BlockPool {
    /// Checks a pool's geometry without building it (the errors [`BlockPool::new`] gives), in O(1).
    pub fn check_geometry(num_blocks: u32, block_size: u32, watermark: f64) -> Result<()> {
        if num_blocks == 0 {
            return Err(Error::config("num_blocks must be >= 1 (the KV cache cannot be empty)"));
        }
        if block_size == 0 {
            return Err(Error::config("block_size must be >= 1 token"));
        }
        if num_blocks > MAX_NUM_BLOCKS {
            return Err(Error::config(format!(
                "num_blocks must be at most {MAX_NUM_BLOCKS} (the pool keeps two 4-byte entries per block), got \
                 {num_blocks}; use a larger block_size for a larger cache"
            )));
        }
        if !(watermark.is_finite() && (0.0..1.0).contains(&watermark)) {
            return Err(Error::config(format!("watermark must be a fraction in [0, 1), got {watermark}")));
        }
        Ok(())
    }

    /// A pool of `num_blocks` blocks of `block_size` tokens, keeping `watermark` (a fraction in `[0, 1)`) of
    /// the blocks free at admission time, as vLLM does (its default is 0.01).
    pub fn new(num_blocks: u32, block_size: u32, watermark: f64) -> Result<Self> {
        Self::check_geometry(num_blocks, block_size, watermark)?;
        // Floor, like vLLM and Vidur (`int(watermark * num_blocks)`).
        let watermark_blocks = crate::batch::watermark_blocks(num_blocks, watermark);
        Ok(BlockPool {
            block_size,
            watermark_blocks,
            free: (0..num_blocks).rev().collect(),
            owner: vec![FREE; num_blocks as usize],
        })
    }

    /// Tokens per block.
    #[inline]
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Total blocks in the pool.
    #[inline]
    pub fn num_blocks(&self) -> u32 {
        self.owner.len() as u32
    }

    /// Blocks kept free when admitting new requests.
    #[inline]
    pub fn watermark_blocks(&self) -> u32 {
        self.watermark_blocks
    }

    /// Blocks above the watermark: the capacity admissions and guards plan with.
    #[inline]
    pub fn usable_blocks(&self) -> u32 {
        self.num_blocks() - self.watermark_blocks
    }

    /// Blocks currently free.
    #[inline]
    pub fn num_free(&self) -> u32 {
        self.free.len() as u32
    }

    /// Blocks currently owned by some request.
    #[inline]
    pub fn num_used(&self) -> u32 {
        self.num_blocks() - self.num_free()
    }

    /// Fraction of blocks in use, in `[0, 1]`.
    #[inline]
    pub fn usage(&self) -> f64 {
        f64::from(self.num_used()) / f64::from(self.num_blocks())
    }

    /// Blocks needed to hold `num_tokens` tokens.
    #[inline]
    pub fn blocks_for(&self, num_tokens: u32) -> u32 {
        num_tokens.div_ceil(self.block_size)
    }

    /// Moves `n` free blocks into `table`, owned by `owner`. Returns `false` (and changes nothing) if fewer
    /// than `n` blocks are free.
    #[inline]
    pub fn allocate(&mut self, owner: u32, n: u32, table: &mut Vec<u32>) -> bool {
        if n > self.num_free() {
            return false;
        }
        for _ in 0..n {
            // Cannot fail: checked above.
            let b = self.free.pop().unwrap_or(FREE);
            debug_assert_eq!(self.owner[b as usize], FREE);
            self.owner[b as usize] = owner;
            table.push(b);
        }
        true
    }

    /// Returns every block of `table` to the pool and empties `table` (keeping its capacity).
    #[inline]
    pub fn free_all(&mut self, table: &mut Vec<u32>) {
        for &b in table.iter().rev() {
            debug_assert_ne!(self.owner[b as usize], FREE, "double free of block {b}");
            self.owner[b as usize] = FREE;
            self.free.push(b);
        }
        table.clear();
    }

    /// The slot owning block `b`, if any.
    pub fn owner_of(&self, b: u32) -> Option<u32> {
        self.owner.get(b as usize).copied().filter(|&o| o != FREE)
    }

    /// Verifies the pool's internal invariants; returns a description of the first violation.
    pub fn check(&self) -> Result<(), String> {
        let mut on_free_list = vec![false; self.owner.len()];
        for &b in &self.free {
            let Some(seen) = on_free_list.get_mut(b as usize) else {
                return Err(format!("free list holds out-of-range block {b}"));
            };
            if *seen {
                return Err(format!("block {b} is on the free list twice"));
            }
            *seen = true;
            if self.owner[b as usize] != FREE {
                return Err(format!("block {b} is free and owned by slot {}", self.owner[b as usize]));
            }
        }
        let owned = self.owner.iter().filter(|&&o| o != FREE).count();
        if owned + self.free.len() != self.owner.len() {
            return Err(format!("{owned} owned + {} free != {} blocks", self.free.len(), self.owner.len()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocate_and_free_roundtrip() {
        let mut pool = BlockPool::new(10, 16, 0.0).unwrap();
        let mut t = Vec::new();
        assert!(pool.allocate(3, 4, &mut t));
        assert_eq!((pool.num_free(), pool.num_used(), t.len()), (6, 4, 4));
        assert!(t.iter().all(|&b| pool.owner_of(b) == Some(3)));
        assert!(!pool.allocate(4, 7, &mut Vec::new()), "over-allocation must fail");
        assert_eq!(pool.num_free(), 6, "failed allocation changes nothing");
        pool.free_all(&mut t);
        assert!(t.is_empty());
        assert_eq!(pool.num_free(), 10);
        pool.check().unwrap();
    }

    #[test]
    fn rejects_bad_config() {
        assert!(BlockPool::new(0, 16, 0.01).is_err());
        assert!(BlockPool::new(10, 0, 0.01).is_err());
        assert!(BlockPool::new(10, 16, f64::NAN).is_err());
        assert!(BlockPool::new(10, 16, 1.0).is_err());
    }

    #[test]
    fn watermark_is_floored() {
        assert_eq!(BlockPool::new(7424, 16, 0.01).unwrap().watermark_blocks(), 74);
        assert_eq!(BlockPool::new(99, 16, 0.01).unwrap().watermark_blocks(), 0);
        assert_eq!(BlockPool::new(10, 16, 0.0).unwrap().blocks_for(17), 2);
    }
}
