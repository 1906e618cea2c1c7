//! Reference decisions of MC-SF (feasibility by brute force over every future step), SGLang (its reservation
//! inequality with the ratio schedule computed independently) and WAIT (explicit thresholds).

use std::collections::{HashMap, VecDeque};

use crate::reference::{Decision, R, World};

/// MC-SF's projection of `r`: `(base, steps)`, holding `base + τ` tokens during steps `τ = 1..=steps`.
pub fn projection(r: &R, default_len: u32) -> (u32, u32) {
    (r.tokens() - 1, r.hint.unwrap_or(default_len).saturating_sub(r.out).max(1))
}

/// Brute force: adding `p` to `set` keeps the projected blocks within `cap` at every step `τ ≤ p.steps`
/// (later steps are unchanged by `p`).
fn fits(set: &[(u32, u32)], p: (u32, u32), cap: u64, bs: u32) -> bool {
    let blocks = |base: u32, tau: u32| u64::from((base + tau).div_ceil(bs));
    (1..=p.1).all(|tau| {
        let others: u64 = set.iter().filter(|q| q.1 >= tau).map(|q| blocks(q.0, tau)).sum();
        others + blocks(p.0, tau) <= cap
    })
}

/// MC-SF: running with an unlimited budget, then candidates by (remaining hinted output, arrival order), each
/// admitted if the projected usage stays within the cache at every future step.
/// `waiting` holds each request with its arrival sequence number; `seqs` gives a preempted request its own back.
pub fn mc_sf(
    w: &mut World,
    waiting: &mut Vec<(R, u64)>,
    seqs: &HashMap<u64, u64>,
    skip: bool,
    default_len: u32,
) -> Decision {
    let mut d = Decision::default();
    let mut victims = Vec::new();
    let (_, preempted) = w.run_all(&mut d, u32::MAX, &mut |v| victims.push(v));
    waiting.extend(victims.into_iter().map(|v| {
        let seq = seqs[&v.id];
        (v, seq)
    }));
    if preempted || waiting.is_empty() {
        return d;
    }
    waiting.sort_by_key(|(r, seq)| (projection(r, default_len).1, *seq));
    let cap = u64::from(w.cfg.num_blocks - w.watermark);
    let max_tokens = w.cfg.max_num_batched_tokens;
    let mut set: Vec<(u32, u32)> = w.running.iter().map(|r| projection(r, default_len)).collect();
    let mut tokens: u32 = d.scheduled.iter().map(|s| s.1).sum();
    let mut prefills = 0;
    let mut i = 0;
    while i < waiting.len() {
        if w.running.len() >= w.cfg.max_num_seqs as usize {
            break;
        }
        let r = &waiting[i].0;
        let owed = r.owed();
        let in_budget = tokens.saturating_add(owed) <= max_tokens || (owed > max_tokens && prefills == 0);
        let p = projection(r, default_len);
        let need = w.need(r, owed);
        let ok = in_budget
            && need <= w.free
            && if set.is_empty() { w.fits_whole(r) } else { fits(&set, p, cap, w.cfg.block_size) };
        if !ok {
            if skip {
                i += 1;
                continue;
            }
            break;
        }
        let (r, _) = waiting.remove(i);
        w.admit(r, need, owed, &mut d);
        tokens += owed;
        prefills += 1;
        set.push(p);
    }
    d
}

/// SGLang's settings and its `new_token_ratio`, tracked independently of the policy.
#[derive(Debug, Clone)]
pub struct Sglang {
    pub ratio: f64,
    pub min: f64,
    pub decay: f64,
    pub clip: u32,
    pub max_new: u32,
    pub retract_steps: u32,
}

impl Sglang {
    fn max_new(&self, r: &R) -> u32 {
        r.hint.unwrap_or(self.max_new)
    }

    fn rem(&self, r: &R) -> u32 {
        self.max_new(r).saturating_sub(r.out).max(1).min(self.clip)
    }

    /// One step: running as vLLM; after a retraction the ratio is raised to SGLang's estimate; otherwise FCFS
    /// admission while `owed + rem < free tokens − Σ reservations`, and the ratio decays after a non-empty step.
    pub fn step(&mut self, w: &mut World, q: &mut VecDeque<R>) -> Decision {
        let mut d = Decision::default();
        let mut victims = Vec::new();
        let (mut budget, retracted) = w.run_all(&mut d, w.cfg.max_num_batched_tokens, &mut |v| victims.push(v));
        for v in victims {
            q.push_front(v);
        }
        if retracted {
            let decoded: f64 = w.running.iter().map(|r| f64::from(r.out)).sum();
            let max_new: f64 = w.running.iter().map(|r| f64::from(self.max_new(r))).sum();
            let n = w.running.len() as f64;
            let estimate =
                if max_new == 0.0 { 1.0 } else { ((decoded + f64::from(self.retract_steps) * n) / max_new).min(1.0) };
            self.ratio = self.ratio.max(estimate);
            return d;
        }
        let bs = w.cfg.block_size;
        let mut reserved = 0.0;
        for r in &w.running {
            let uncovered = r.tokens().saturating_sub(r.blocks * bs);
            reserved += f64::from(uncovered) + self.ratio * f64::from(self.rem(r));
        }
        let mut left = f64::from(w.free) * f64::from(bs) - reserved;
        while let Some(r) = q.front() {
            if budget == 0 || w.running.len() >= w.cfg.max_num_seqs as usize {
                break;
            }
            let n = w.chunk(r.owed(), budget);
            let cost = f64::from(r.owed()) + f64::from(self.rem(r));
            let need_whole = w.need(r, r.owed());
            if n > budget || need_whole > w.free || !(cost < left || w.running.is_empty()) {
                break;
            }
            let r = q.pop_front().expect("front");
            let alloc = w.need(&r, n);
            w.admit(r, alloc, n, &mut d);
            budget -= n;
            left -= cost;
        }
        if !d.scheduled.is_empty() {
            self.ratio = (self.ratio - self.decay).max(self.min);
        }
        d
    }
}

/// WAIT with explicit thresholds: per-type FIFO queues, cohorts by the admission rule or the deadline.
#[derive(Debug, Clone)]
pub struct Wait {
    pub thresholds: Vec<u32>,
    /// 0: per-type, 1: any-ready, 2: all-ready.
    pub rule: u8,
    pub max_wait: f64,
    pub queues: Vec<VecDeque<R>>,
}

impl Wait {
    /// The type a request is filed under (no type lengths are known here: out-of-range or missing → last).
    pub fn type_of(&self, r: &R) -> usize {
        let m = self.thresholds.len();
        r.type_id.map_or(m - 1, |t| if (t as usize) < m { t as usize } else { m - 1 })
    }

    /// One step at time `now`.
    pub fn step(&mut self, w: &mut World, now: f64) -> Decision {
        let n = &self.thresholds;
        let ready: Vec<bool> = self.queues.iter().zip(n).map(|(q, &n)| q.len() >= n as usize).collect();
        let sizes: Vec<usize> = (0..n.len())
            .map(|j| {
                let up_to = self.queues[j].len().min(n[j] as usize);
                let by_rule = match self.rule {
                    0 if ready[j] => n[j] as usize,
                    1 if ready.iter().any(|&r| r) => up_to,
                    2 if ready.iter().all(|&r| r) => n[j] as usize,
                    _ => 0,
                };
                let due = self.queues[j].front().is_some_and(|r| r.arrival + self.max_wait <= now);
                if due { by_rule.max(up_to) } else { by_rule }
            })
            .collect();
        let mut d = Decision::default();
        let mut victims = Vec::new();
        let (mut budget, preempted) = w.run_all(&mut d, w.cfg.max_num_batched_tokens, &mut |v| victims.push(v));
        for v in victims {
            let j = self.type_of(&v);
            self.queues[j].push_front(v);
        }
        if preempted {
            return d;
        }
        let mut order: Vec<usize> = (0..sizes.len()).filter(|&j| sizes[j] > 0).collect();
        order.sort_by(|&a, &b| self.queues[a][0].arrival.total_cmp(&self.queues[b][0].arrival));
        for j in order {
            for _ in 0..sizes[j] {
                let Some(r) = self.queues[j].front() else { break };
                if budget == 0 || w.running.len() >= w.cfg.max_num_seqs as usize {
                    return d;
                }
                let k = w.chunk(r.owed(), budget);
                if k > budget || !w.fits_whole(r) {
                    return d;
                }
                let r = self.queues[j].pop_front().expect("front");
                let alloc = w.need(&r, k);
                w.admit(r, alloc, k, &mut d);
                budget -= k;
            }
        }
        d
    }
}
