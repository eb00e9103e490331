//! Aggregation strategies as pure functions behind the [`Strategy`] trait.
//!
//! Split as in Flower: [`Strategy::client_config`] is what the server tells clients before a round
//! (FedProx's `mu`), [`Strategy::aggregate`] combines the round's deltas into one delta (pure), and
//! [`Strategy::apply`] moves the global model by that delta (server optimizer; its state is passed
//! in explicitly so it can be persisted). Vectors are flat `f32` per tensor, in layout order;
//! sums are accumulated in `f64`. Which strategy runs, with what hyper-parameters, is a
//! [`StrategyConfig`].

use serde::{Deserialize, Serialize};

mod config;
pub mod staleness;
pub use config::{StrategyConfig, StrategyConfigError, StrategyKind};

/// One client's delta (`local - global`) and its weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub tensors: Vec<Vec<f32>>,
    pub num_examples: u64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StrategyError {
    #[error("{strategy} needs at least {need} updates, got {got}")]
    TooFew {
        strategy: &'static str,
        need: usize,
        got: usize,
    },
    #[error("updates do not have the same tensor layout")]
    Mismatch,
}

/// Server-optimizer state of FedAdam / FedYogi: first and second moments per tensor.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OptState {
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
}

/// Client-side settings a strategy asks for (sent in the round config).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct ClientSettings {
    /// FedProx proximal term: clients add `mu/2 * ||w - w_global||^2` to their loss. 0 = off.
    pub prox_mu: f64,
}

pub trait Strategy: Send + Sync {
    /// Name as given on the command line.
    fn name(&self) -> &'static str;
    /// Fewest updates [`Strategy::aggregate`] can combine.
    fn min_updates(&self) -> usize {
        1
    }
    /// Settings the clients must apply during local training.
    fn client_config(&self) -> ClientSettings {
        ClientSettings::default()
    }
    /// Combines the round's deltas into one delta. Pure.
    fn aggregate(&self, updates: &[Update]) -> Result<Vec<Vec<f32>>, StrategyError>;
    /// Moves `global` by the aggregated `delta`. Default: `x += server_lr * delta`.
    fn apply(&self, global: &mut [Vec<f32>], delta: &[Vec<f32>], opt: &mut OptState);
}

fn check(updates: &[Update], strategy: &'static str, need: usize) -> Result<(), StrategyError> {
    if updates.len() < need.max(1) {
        return Err(StrategyError::TooFew {
            strategy,
            need: need.max(1),
            got: updates.len(),
        });
    }
    let first = &updates[0].tensors;
    let same = updates.iter().all(|u| {
        u.tensors.len() == first.len()
            && u.tensors.iter().zip(first).all(|(a, b)| a.len() == b.len())
    });
    if same {
        Ok(())
    } else {
        Err(StrategyError::Mismatch)
    }
}

/// Coordinates gathered per block: a block's columns (`BLOCK x n` values) stay in cache.
const BLOCK: usize = 256;

/// Maps every coordinate's column of client values through `f` (the coordinate-wise rules).
///
/// Columns are gathered a block of coordinates at a time (contiguous reads from each update,
/// one transpose into a scratch buffer) instead of one strided gather per coordinate, and the
/// blocks of each tensor are shared among the available cores (one thread where there are no
/// threads, as in the browser).
fn per_coordinate(updates: &[Update], f: impl Fn(&mut [f32]) -> f32 + Sync) -> Vec<Vec<f32>> {
    let n = updates.len();
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    (0..updates[0].tensors.len())
        .map(|t| {
            let len = updates[0].tensors[t].len();
            let mut out = vec![0.0f32; len];
            let run = |start: usize, out: &mut [f32]| {
                let mut columns = vec![0.0f32; BLOCK * n];
                for (b, out) in out.chunks_mut(BLOCK).enumerate() {
                    let first = start + b * BLOCK;
                    let width = out.len();
                    for (c, u) in updates.iter().enumerate() {
                        for (i, &v) in u.tensors[t][first..first + width].iter().enumerate() {
                            columns[i * n + c] = v;
                        }
                    }
                    for (i, o) in out.iter_mut().enumerate() {
                        *o = f(&mut columns[i * n..(i + 1) * n]);
                    }
                }
            };
            // Split only work worth a thread: at least 64 blocks each.
            let parts = threads.min(len.div_ceil(64 * BLOCK)).max(1);
            if parts == 1 {
                run(0, &mut out);
            } else {
                let per = len.div_ceil(parts).div_ceil(BLOCK) * BLOCK;
                std::thread::scope(|s| {
                    for (p, chunk) in out.chunks_mut(per).enumerate() {
                        let run = &run;
                        s.spawn(move || run(p * per, chunk));
                    }
                });
            }
            out
        })
        .collect()
}

/// FedAvg weights with each client's self-reported `num_examples` capped at `ratio` times the
/// round's median claim (rounded up): one client claiming a million examples among clients
/// claiming a hundred weighs at most `ratio` of them, not nearly all of the round. `ratio`
/// below 1 is treated as 1 (every client at the median weight).
pub fn capped_weights(num_examples: &[u64], ratio: f64) -> Vec<u64> {
    if num_examples.is_empty() {
        return Vec::new();
    }
    let mut sorted = num_examples.to_vec();
    sorted.sort_unstable();
    let median = sorted[(sorted.len() - 1) / 2] as f64;
    let cap = (median * ratio.max(1.0)).ceil().max(1.0);
    num_examples
        .iter()
        .map(|&n| (n as f64).min(cap) as u64)
        .collect()
}

/// FedAvg: the mean of the deltas weighted by `num_examples` (McMahan et al. 2017).
pub fn fedavg(updates: &[Update]) -> Result<Vec<Vec<f32>>, StrategyError> {
    check(updates, "fedavg", 1)?;
    let total: f64 = updates.iter().map(|u| u.num_examples as f64).sum();
    let mut acc: Vec<Vec<f64>> = updates[0]
        .tensors
        .iter()
        .map(|t| vec![0.0; t.len()])
        .collect();
    for u in updates {
        let w = u.num_examples as f64 / total;
        for (a, t) in acc.iter_mut().zip(&u.tensors) {
            for (x, &y) in a.iter_mut().zip(t) {
                *x += w * f64::from(y);
            }
        }
    }
    Ok(acc
        .into_iter()
        .map(|a| a.into_iter().map(|x| x as f32).collect())
        .collect())
}

/// Coordinate-wise median (mean of the two middle values for an even count). Unweighted.
pub fn coordinate_median(updates: &[Update]) -> Result<Vec<Vec<f32>>, StrategyError> {
    check(updates, "median", 1)?;
    // Selection instead of a sort: O(n) per coordinate.
    Ok(per_coordinate(updates, |col| {
        let n = col.len();
        let (lower, &mut upper, _) = col.select_nth_unstable_by(n / 2, f32::total_cmp);
        if n % 2 == 1 {
            upper
        } else {
            let below = lower
                .iter()
                .copied()
                .max_by(f32::total_cmp)
                .expect("n >= 2");
            ((f64::from(below) + f64::from(upper)) / 2.0) as f32
        }
    }))
}

/// How many values trimmed mean drops at each end: `floor(beta * n)`.
pub fn trim_count(n: usize, beta: f64) -> usize {
    (beta * n as f64).floor() as usize
}

/// Coordinate-wise trimmed mean: per coordinate, drop the `floor(beta * n)` smallest and largest
/// values and average the rest (Yin et al. 2018). Unweighted. `beta` in `[0, 0.5)`.
pub fn trimmed_mean(updates: &[Update], beta: f64) -> Result<Vec<Vec<f32>>, StrategyError> {
    let k = trim_count(updates.len(), beta);
    check(updates, "trimmed-mean", 2 * k + 1)?;
    Ok(per_coordinate(updates, |col| {
        let n = col.len();
        let kept: &[f32] = if k == 0 {
            col
        } else {
            // Two selections: the k smallest to the front, then the k largest of the rest to
            // its back.
            col.select_nth_unstable_by(k - 1, f32::total_cmp);
            let rest = &mut col[k..];
            rest.select_nth_unstable_by(n - 2 * k, f32::total_cmp);
            &rest[..n - 2 * k]
        };
        (kept.iter().map(|&v| f64::from(v)).sum::<f64>() / kept.len() as f64) as f32
    }))
}

/// Krum (Blanchard et al. 2017) with `f` Byzantine clients: returns the delta whose summed squared
/// distance to its `n - f - 2` nearest other deltas is smallest. Needs `n >= 2f + 3`.
pub fn krum(updates: &[Update], f: usize) -> Result<Vec<Vec<f32>>, StrategyError> {
    check(updates, "krum", 2 * f + 3)?;
    let n = updates.len();
    let mut dist = vec![vec![0.0f64; n]; n];
    for i in 0..n {
        for j in i + 1..n {
            let d: f64 = updates[i]
                .tensors
                .iter()
                .flatten()
                .zip(updates[j].tensors.iter().flatten())
                .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
                .sum();
            dist[i][j] = d;
            dist[j][i] = d;
        }
    }
    let neighbours = n - f - 2;
    let score = |i: usize| {
        let mut d: Vec<f64> = (0..n).filter(|&j| j != i).map(|j| dist[i][j]).collect();
        d.sort_unstable_by(f64::total_cmp);
        d[..neighbours].iter().sum::<f64>()
    };
    // The lowest score wins; ties go to the lowest index (deterministic).
    let best = (0..n)
        .map(|i| (score(i), i))
        .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
        .map(|(_, i)| i)
        .expect("n >= 3");
    Ok(updates[best].tensors.clone())
}

/// `x += eta * delta`.
pub fn server_sgd(global: &mut [Vec<f32>], delta: &[Vec<f32>], eta: f64) {
    for (g, d) in global.iter_mut().zip(delta) {
        for (x, &y) in g.iter_mut().zip(d) {
            *x = (f64::from(*x) + eta * f64::from(y)) as f32;
        }
    }
}

/// Hyper-parameters of the adaptive server optimizers (Reddi et al. 2021, Algorithm 2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adaptive {
    /// Server learning rate `eta`.
    pub eta: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// Adaptivity `tau`; the second moment starts at `tau^2`.
    pub tau: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum SecondMoment {
    Adam,
    Yogi,
}

fn adaptive_step(
    global: &mut [Vec<f32>],
    delta: &[Vec<f32>],
    opt: &mut OptState,
    p: Adaptive,
    kind: SecondMoment,
) {
    if opt.m.len() != delta.len() {
        // First round: m = 0, v = tau^2 (the paper's initialisation; no bias correction).
        opt.m = delta.iter().map(|d| vec![0.0; d.len()]).collect();
        opt.v = delta
            .iter()
            .map(|d| vec![(p.tau * p.tau) as f32; d.len()])
            .collect();
    }
    for (((g, d), m), v) in global.iter_mut().zip(delta).zip(&mut opt.m).zip(&mut opt.v) {
        for i in 0..g.len() {
            let dx = f64::from(d[i]);
            let mi = p.beta1 * f64::from(m[i]) + (1.0 - p.beta1) * dx;
            let vi_old = f64::from(v[i]);
            let vi = match kind {
                SecondMoment::Adam => p.beta2 * vi_old + (1.0 - p.beta2) * dx * dx,
                SecondMoment::Yogi => {
                    vi_old - (1.0 - p.beta2) * dx * dx * (vi_old - dx * dx).signum()
                }
            };
            m[i] = mi as f32;
            v[i] = vi as f32;
            g[i] = (f64::from(g[i]) + p.eta * mi / (vi.sqrt() + p.tau)) as f32;
        }
    }
}

/// FedAdam server step: `m = b1 m + (1-b1) d; v = b2 v + (1-b2) d^2; x += eta m / (sqrt(v) + tau)`.
pub fn fedadam_step(global: &mut [Vec<f32>], delta: &[Vec<f32>], opt: &mut OptState, p: Adaptive) {
    adaptive_step(global, delta, opt, p, SecondMoment::Adam);
}

/// FedYogi server step: as FedAdam but `v = v - (1-b2) d^2 sign(v - d^2)`.
pub fn fedyogi_step(global: &mut [Vec<f32>], delta: &[Vec<f32>], opt: &mut OptState, p: Adaptive) {
    adaptive_step(global, delta, opt, p, SecondMoment::Yogi);
}

/// FedAvg: weighted mean, `x += server_lr * mean`.
pub struct FedAvg {
    pub server_lr: f64,
}

/// FedProx (Li et al. 2020): clients add a proximal term `mu`; the server side is FedAvg.
pub struct FedProx {
    pub mu: f64,
    pub server_lr: f64,
}

/// FedAdam: FedAvg's mean fed to an Adam server optimizer.
pub struct FedAdam(pub Adaptive);

/// FedYogi: FedAvg's mean fed to a Yogi server optimizer.
pub struct FedYogi(pub Adaptive);

/// Coordinate-wise median, `x += server_lr * median`.
pub struct Median {
    pub server_lr: f64,
}

/// Coordinate-wise trimmed mean with fraction `beta` cut at each end.
pub struct TrimmedMean {
    pub beta: f64,
    pub server_lr: f64,
}

/// Krum tolerating `f` Byzantine clients.
pub struct Krum {
    pub f: usize,
    pub server_lr: f64,
}

impl Strategy for FedAvg {
    fn name(&self) -> &'static str {
        "fedavg"
    }
    fn aggregate(&self, updates: &[Update]) -> Result<Vec<Vec<f32>>, StrategyError> {
        fedavg(updates)
    }
    fn apply(&self, global: &mut [Vec<f32>], delta: &[Vec<f32>], _: &mut OptState) {
        server_sgd(global, delta, self.server_lr);
    }
}

impl Strategy for FedProx {
    fn name(&self) -> &'static str {
        "fedprox"
    }
    fn client_config(&self) -> ClientSettings {
        ClientSettings { prox_mu: self.mu }
    }
    fn aggregate(&self, updates: &[Update]) -> Result<Vec<Vec<f32>>, StrategyError> {
        fedavg(updates)
    }
    fn apply(&self, global: &mut [Vec<f32>], delta: &[Vec<f32>], _: &mut OptState) {
        server_sgd(global, delta, self.server_lr);
    }
}

impl Strategy for FedAdam {
    fn name(&self) -> &'static str {
        "fedadam"
    }
    fn aggregate(&self, updates: &[Update]) -> Result<Vec<Vec<f32>>, StrategyError> {
        fedavg(updates)
    }
    fn apply(&self, global: &mut [Vec<f32>], delta: &[Vec<f32>], opt: &mut OptState) {
        fedadam_step(global, delta, opt, self.0);
    }
}

impl Strategy for FedYogi {
    fn name(&self) -> &'static str {
        "fedyogi"
    }
    fn aggregate(&self, updates: &[Update]) -> Result<Vec<Vec<f32>>, StrategyError> {
        fedavg(updates)
    }
    fn apply(&self, global: &mut [Vec<f32>], delta: &[Vec<f32>], opt: &mut OptState) {
        fedyogi_step(global, delta, opt, self.0);
    }
}

impl Strategy for Median {
    fn name(&self) -> &'static str {
        "median"
    }
    fn aggregate(&self, updates: &[Update]) -> Result<Vec<Vec<f32>>, StrategyError> {
        coordinate_median(updates)
    }
    fn apply(&self, global: &mut [Vec<f32>], delta: &[Vec<f32>], _: &mut OptState) {
        server_sgd(global, delta, self.server_lr);
    }
}

impl Strategy for TrimmedMean {
    fn name(&self) -> &'static str {
        "trimmed-mean"
    }
    fn aggregate(&self, updates: &[Update]) -> Result<Vec<Vec<f32>>, StrategyError> {
        trimmed_mean(updates, self.beta)
    }
    fn apply(&self, global: &mut [Vec<f32>], delta: &[Vec<f32>], _: &mut OptState) {
        server_sgd(global, delta, self.server_lr);
    }
}

impl Strategy for Krum {
    fn name(&self) -> &'static str {
        "krum"
    }
    fn min_updates(&self) -> usize {
        2 * self.f + 3
    }
    fn aggregate(&self, updates: &[Update]) -> Result<Vec<Vec<f32>>, StrategyError> {
        krum(updates, self.f)
    }
    fn apply(&self, global: &mut [Vec<f32>], delta: &[Vec<f32>], _: &mut OptState) {
        server_sgd(global, delta, self.server_lr);
    }
}
