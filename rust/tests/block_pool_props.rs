//! Property tests of the KV block pool: random allocate / free sequences keep `free + used = total` and every
//! block owned by at most one request.

use fluidsched_core::BlockPool;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Allocate { owner: usize, n: u32 },
    FreeAll { owner: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0usize..8, 0u32..12).prop_map(|(owner, n)| Op::Allocate { owner, n }),
        1 => (0usize..8).prop_map(|owner| Op::FreeAll { owner }),
    ]
}

proptest! {
    #[test]
    fn random_ops_keep_pool_consistent(num_blocks in 1u32..64, ops in prop::collection::vec(op(), 0..200)) {
        let mut pool = BlockPool::new(num_blocks, 16, 0.0).unwrap();
        let mut tables: Vec<Vec<u32>> = vec![Vec::new(); 8];
        for op in ops {
            match op {
                Op::Allocate { owner, n } => {
                    let free_before = pool.num_free();
                    let held_before = tables[owner].len();
                    let ok = pool.allocate(owner as u32, n, &mut tables[owner]);
                    prop_assert_eq!(ok, n <= free_before, "allocation succeeds iff enough blocks are free");
                    let expect = if ok { held_before + n as usize } else { held_before };
                    prop_assert_eq!(tables[owner].len(), expect);
                }
                Op::FreeAll { owner } => {
                    pool.free_all(&mut tables[owner]);
                    prop_assert!(tables[owner].is_empty());
                }
            }
            prop_assert_eq!(pool.num_free() + pool.num_used(), pool.num_blocks());
            let held: usize = tables.iter().map(Vec::len).sum();
            prop_assert_eq!(held as u32, pool.num_used());
            // Every block is owned by at most one table, and the pool agrees on the owner.
            let mut seen = vec![false; num_blocks as usize];
            for (owner, table) in tables.iter().enumerate() {
                for &b in table {
                    prop_assert!(!seen[b as usize], "block {} owned twice", b);
                    seen[b as usize] = true;
                    prop_assert_eq!(pool.owner_of(b), Some(owner as u32));
                }
            }
            prop_assert!(pool.check().is_ok(), "{:?}", pool.check());
        }
    }
}
