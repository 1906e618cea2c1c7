//! Deliberately simple reference implementations of each policy's per-step decision: plain `Vec` scans over a
//! copy of the scheduler's state, written from the policies' module documentation, not from their code paths.

use std::collections::VecDeque;

use fluidsched_core::SchedulerConfig;

/// A request as the reference sees it.
#[derive(Debug, Clone)]
pub struct R {
    pub id: u64,
    pub prompt: u32,
    pub out: u32,
    pub computed: u32,
    pub blocks: u32,
    pub hint: Option<u32>,
    pub arrival: f64,
    pub type_id: Option<u32>,
}

impl R {
    pub fn tokens(&self) -> u32 {
        self.prompt + self.out
    }
    pub fn owed(&self) -> u32 {
        self.tokens() - self.computed
    }
    pub fn is_prefill(&self) -> bool {
        self.out == 0 || self.owed() > 1
    }
}

/// The state a decision starts from: config, free blocks and the running list (admission order).
#[derive(Debug, Clone)]
pub struct World {
    pub cfg: SchedulerConfig,
    pub free: u32,
    pub watermark: u32,
    pub running: Vec<R>,
}

/// What one step decided: `(id, tokens)` in batch order, admissions and preemptions in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub scheduled: Vec<(u64, u32)>,
    pub admitted: Vec<u64>,
    pub preempted: Vec<u64>,
}

impl World {
    /// New blocks `r` needs to hold `r.computed + n` tokens.
    pub fn need(&self, r: &R, n: u32) -> u32 {
        (r.computed + n).div_ceil(self.cfg.block_size).saturating_sub(r.blocks)
    }

    /// Usable tokens above the watermark.
    pub fn usable(&self) -> u32 {
        (self.cfg.num_blocks - self.watermark) * self.cfg.block_size
    }

    /// vLLM's chunk of a prefill owing `owed` with `budget` left.
    pub fn chunk(&self, owed: u32, budget: u32) -> u32 {
        let c = &self.cfg;
        if c.enable_chunked_prefill || owed > c.max_num_batched_tokens { owed.min(budget) } else { owed }
    }

    /// Takes `n` blocks for the running request at `i` (the caller checked they are free).
    fn take(&mut self, i: usize, blocks: u32) {
        self.free -= blocks;
        self.running[i].blocks += blocks;
    }

    /// Preempts the newest running request: frees its blocks, returns it.
    fn preempt_newest(&mut self, d: &mut Decision) -> R {
        let mut v = self.running.pop().expect("a running request");
        self.free += v.blocks;
        v.blocks = 0;
        v.computed = 0;
        d.preempted.push(v.id);
        v
    }

    /// Gives running request `i` `n` tokens, preempting the newest until its blocks fit. Returns false if it
    /// preempted itself. Victims are handed to `requeue` newest first.
    fn serve(&mut self, i: usize, n: u32, d: &mut Decision, requeue: &mut dyn FnMut(R)) -> bool {
        let id = self.running[i].id;
        loop {
            let need = self.need(&self.running[i], n);
            if need <= self.free {
                self.take(i, need);
                d.scheduled.push((id, n));
                return true;
            }
            let v = self.preempt_newest(d);
            let own = v.id == id;
            requeue(v);
            if own {
                return false;
            }
        }
    }

    /// Every running request in order gets its owed tokens (vLLM's chunk rule) under `budget`. Returns the
    /// budget left and whether anything was preempted.
    pub fn run_all(&mut self, d: &mut Decision, mut budget: u32, requeue: &mut dyn FnMut(R)) -> (u32, bool) {
        let before = d.preempted.len();
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let n = self.chunk(self.running[i].owed(), budget);
            if n > budget {
                i += 1;
                continue;
            }
            if !self.serve(i, n, d, requeue) {
                break;
            }
            budget -= n;
            i += 1;
        }
        (budget, d.preempted.len() > before)
    }

    /// Moves waiting `r` to the running list holding `alloc` more blocks, scheduling `n` tokens.
    pub fn admit(&mut self, r: R, alloc: u32, n: u32, d: &mut Decision) {
        d.admitted.push(r.id);
        d.scheduled.push((r.id, n));
        self.running.push(r);
        let i = self.running.len() - 1;
        self.take(i, alloc);
    }

    /// Whether waiting `r` fits whole (`owed` tokens) above the watermark.
    pub fn fits_whole(&self, r: &R) -> bool {
        self.need(r, r.owed()) + self.watermark <= self.free
    }

    /// FCFS admission from `q` (vLLM): stop at the first that does not fit. Returns the budget left.
    pub fn admit_fcfs(&mut self, q: &mut VecDeque<R>, d: &mut Decision, mut budget: u32) -> u32 {
        while let Some(r) = q.front() {
            if budget == 0 || self.running.len() >= self.cfg.max_num_seqs as usize {
                break;
            }
            let n = self.chunk(r.owed(), budget);
            if n > budget || !self.fits_whole(r) {
                break;
            }
            let r = q.pop_front().expect("front");
            let alloc = self.need(&r, n);
            self.admit(r, alloc, n, d);
            budget -= n;
        }
        budget
    }
}

/// vLLM: running first, then FCFS admission if nothing was preempted.
pub fn vllm(w: &mut World, q: &mut VecDeque<R>) -> Decision {
    let mut d = Decision::default();
    let mut victims = Vec::new();
    let (budget, preempted) = w.run_all(&mut d, w.cfg.max_num_batched_tokens, &mut |v| victims.push(v));
    for v in victims {
        q.push_front(v);
    }
    if !preempted {
        w.admit_fcfs(q, &mut d, budget);
    }
    d
}

/// Sarathi: decodes, then prefill chunks, then FCFS admissions with the whole prefill reserved.
pub fn sarathi(w: &mut World, q: &mut VecDeque<R>, token_budget: u32, chunked: bool) -> Decision {
    let chunk = |owed: u32, budget: u32| {
        if chunked || owed > token_budget {
            owed.min(budget)
        } else if owed <= budget {
            owed
        } else {
            0
        }
    };
    let mut d = Decision::default();
    let mut budget = token_budget;
    let mut victims = Vec::new();
    let mut i = 0;
    while i < w.running.len() && budget > 0 {
        if w.running[i].is_prefill() {
            i += 1;
            continue;
        }
        if !w.serve(i, 1, &mut d, &mut |v| victims.push(v)) {
            break;
        }
        budget -= 1;
        i += 1;
    }
    let preempted = !victims.is_empty();
    for v in victims {
        q.push_front(v);
    }
    for i in 0..w.running.len() {
        if budget == 0 {
            break;
        }
        if !w.running[i].is_prefill() {
            continue;
        }
        let n = chunk(w.running[i].owed(), budget);
        let need = w.need(&w.running[i], n);
        if n == 0 || need > w.free {
            continue;
        }
        w.take(i, need);
        d.scheduled.push((w.running[i].id, n));
        budget -= n;
    }
    if preempted {
        return d;
    }
    while let Some(r) = q.front() {
        if budget == 0 || w.running.len() >= w.cfg.max_num_seqs as usize {
            break;
        }
        let n = chunk(r.owed(), budget);
        if n == 0 || !w.fits_whole(r) {
            break;
        }
        let r = q.pop_front().expect("front");
        let alloc = w.need(&r, r.owed());
        w.admit(r, alloc, n, &mut d);
        budget -= n;
    }
    d
}

/// Orca: running as vLLM; FCFS admission reserving `clamp(want, known tokens, usable)` tokens, no watermark.
pub fn orca(w: &mut World, q: &mut VecDeque<R>, oracle: bool, max_tokens: u32) -> Decision {
    let mut d = Decision::default();
    let mut victims = Vec::new();
    let (mut budget, preempted) = w.run_all(&mut d, w.cfg.max_num_batched_tokens, &mut |v| victims.push(v));
    for v in victims {
        q.push_front(v);
    }
    if preempted {
        return d;
    }
    while let Some(r) = q.front() {
        if budget == 0 || w.running.len() >= w.cfg.max_num_seqs as usize {
            break;
        }
        let n = w.chunk(r.owed(), budget);
        let want = match r.hint {
            Some(h) if oracle => r.prompt + h - 1,
            _ => max_tokens,
        };
        let reserve = want.min(w.usable()).max(r.tokens());
        let alloc = w.need(r, reserve - r.computed);
        if n > budget || alloc > w.free {
            break;
        }
        let r = q.pop_front().expect("front");
        w.admit(r, alloc, n, &mut d);
        budget -= n;
    }
    d
}
