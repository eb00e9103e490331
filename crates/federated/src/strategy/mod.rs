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
    /// Whether [`Strategy::aggregate`] is [`fedavg`], the `num_examples`-weighted mean: a server
    /// may then sum the updates as they arrive instead of keeping every one.
    fn is_weighted_mean(&self) -> bool {
        false
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

/// Values (coordinates times updates) a thread must have to be worth starting for cheap work on
/// each value (a sum): about a millisecond against the tens of microseconds a thread costs.
const VALUES_PER_THREAD: usize = 1 << 20;

/// Shares the coordinates of every tensor among the available cores (one thread where there
/// are no threads, as in the browser), at least `min_per_thread` coordinates each:
/// `run(t, start, out)` fills `out`, the coordinates `start..start + out.len()` of tensor `t`
/// (a multiple of [`BLOCK`] apart).
fn split_coordinates(
    min_per_thread: usize,
    lens: impl Iterator<Item = usize>,
    run: impl Fn(usize, usize, &mut [f32]) + Sync,
) -> Vec<Vec<f32>> {
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    lens.enumerate()
        .map(|(t, len)| {
            let mut out = vec![0.0f32; len];
            let parts = threads.min(len.div_ceil(min_per_thread.max(BLOCK))).max(1);
            if parts == 1 {
                run(t, 0, &mut out);
            } else {
                let per = len.div_ceil(parts).div_ceil(BLOCK) * BLOCK;
                std::thread::scope(|s| {
                    for (p, chunk) in out.chunks_mut(per).enumerate() {
                        let run = &run;
                        s.spawn(move || run(t, p * per, chunk));
                    }
                });
            }
            out
        })
        .collect()
}

/// An `i32` that orders like `f32::total_cmp` orders the float (flip the magnitude bits of
/// negatives). The coordinate-wise rules select on these keys: integer comparisons (a fifth to a
/// quarter less time per column of 1,000 than `total_cmp` on the floats), and the same order,
/// so the same result.
#[inline]
fn order_key(v: f32) -> i32 {
    flip_negative_magnitudes(v.to_bits() as i32)
}

/// The float an [`order_key`] came from (the flip is its own inverse).
#[inline]
fn from_order_key(key: i32) -> f32 {
    f32::from_bits(flip_negative_magnitudes(key) as u32)
}

/// Flips every bit but the sign where the sign bit is set.
#[inline]
fn flip_negative_magnitudes(bits: i32) -> i32 {
    bits ^ (((bits >> 31) as u32) >> 1) as i32
}

/// Maps every coordinate's column of client values (as [`order_key`]s) through `f` (the
/// coordinate-wise rules).
///
/// Columns are gathered a block of coordinates at a time (contiguous reads from each update,
/// one transpose into a scratch buffer) instead of one strided gather per coordinate.
fn per_coordinate(updates: &[Update], f: impl Fn(&mut [i32]) -> f32 + Sync) -> Vec<Vec<f32>> {
    let n = updates.len();
    let lens = updates[0].tensors.iter().map(Vec::len);
    // A selection per coordinate is costly enough that 64 blocks make a thread worthwhile.
    split_coordinates(64 * BLOCK, lens, |t, start, out| {
        let mut columns = vec![0i32; BLOCK * n];
        for (b, out) in out.chunks_mut(BLOCK).enumerate() {
            let first = start + b * BLOCK;
            let width = out.len();
            for (c, u) in updates.iter().enumerate() {
                for (i, &v) in u.tensors[t][first..first + width].iter().enumerate() {
                    columns[i * n + c] = order_key(v);
                }
            }
            for (i, o) in out.iter_mut().enumerate() {
                *o = f(&mut columns[i * n..(i + 1) * n]);
            }
        }
    })
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

/// FedAvg: the mean of the deltas weighted by `num_examples` (McMahan et al. 2017). Sums in
/// `f64`, update by update, with the coordinates shared among the cores.
pub fn fedavg(updates: &[Update]) -> Result<Vec<Vec<f32>>, StrategyError> {
    check(updates, "fedavg", 1)?;
    let total: f64 = updates.iter().map(|u| u.num_examples as f64).sum();
    let lens = updates[0].tensors.iter().map(Vec::len);
    let min_per_thread = VALUES_PER_THREAD / updates.len();
    Ok(split_coordinates(min_per_thread, lens, |t, start, out| {
        let mut acc = vec![0.0f64; out.len()];
        for u in updates {
            let w = u.num_examples as f64 / total;
            for (x, &y) in acc.iter_mut().zip(&u.tensors[t][start..start + out.len()]) {
                *x += w * f64::from(y);
            }
        }
        for (o, a) in out.iter_mut().zip(acc) {
            *o = a as f32;
        }
    }))
}

/// Coordinate-wise median (mean of the two middle values for an even count). Unweighted.
pub fn coordinate_median(updates: &[Update]) -> Result<Vec<Vec<f32>>, StrategyError> {
    check(updates, "median", 1)?;
    // Selection instead of a sort: O(n) per coordinate.
    Ok(per_coordinate(updates, |col| {
        let n = col.len();
        let (lower, &mut upper, _) = col.select_nth_unstable(n / 2);
        let upper = from_order_key(upper);
        if n % 2 == 1 {
            upper
        } else {
            let below = from_order_key(*lower.iter().max().expect("n >= 2"));
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
        let kept: &[i32] = if k == 0 {
            col
        } else {
            // Two selections: the k smallest to the front, then the k largest of the rest to
            // its back.
            col.select_nth_unstable(k - 1);
            let rest = &mut col[k..];
            rest.select_nth_unstable(n - 2 * k);
            &rest[..n - 2 * k]
        };
        let sum: f64 = kept.iter().map(|&v| f64::from(from_order_key(v))).sum();
        (sum / kept.len() as f64) as f32
    }))
}

/// Krum (Blanchard et al. 2017) with `f` Byzantine clients: returns the delta whose summed squared
/// distance to its `n - f - 2` nearest other deltas is smallest. Needs `n >= 2f + 3`.
pub fn krum(updates: &[Update], f: usize) -> Result<Vec<Vec<f32>>, StrategyError> {
    check(updates, "krum", 2 * f + 3)?;
    let n = updates.len();
    let dist = pairwise_squared_distances(updates);
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

/// The squared distance between every pair of updates (a symmetric `n x n` matrix).
///
/// `n^2 / 2` pairs of whole updates: read pair by pair, each pair would stream both updates
/// from memory (973 ms for 100 wavelr-x4 updates, so about 100 s for 1,000). Instead the coordinates go a
/// block of [`BLOCK`] at a time: every update's block stays in cache while all pairs use it.
/// A block's sum runs in eight `f32` lanes (at most 32 terms each) and is added to the pair's
/// `f64` total; the rows are dealt round-robin to the cores.
fn pairwise_squared_distances(updates: &[Update]) -> Vec<Vec<f64>> {
    let n = updates.len();
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let values: usize = updates[0].tensors.iter().map(Vec::len).sum();
    let threads = threads
        .min((values * n * n / 2).div_ceil(VALUES_PER_THREAD))
        .max(1);
    let blocks: Vec<(usize, usize)> = updates[0]
        .tensors
        .iter()
        .enumerate()
        .flat_map(|(t, tensor)| (0..tensor.len()).step_by(BLOCK).map(move |s| (t, s)))
        .collect();
    // Thread `p` fills the rows `p, p + threads, ...` (row `i` holds the pairs `(i, j > i)`).
    let fill = |p: usize| -> Vec<(usize, Vec<f64>)> {
        let mut rows: Vec<(usize, Vec<f64>)> =
            (p..n).step_by(threads).map(|i| (i, vec![0.0; n])).collect();
        for &(t, start) in &blocks {
            let end = (start + BLOCK).min(updates[0].tensors[t].len());
            for (i, row) in &mut rows {
                let a = &updates[*i].tensors[t][start..end];
                for (j, d) in row.iter_mut().enumerate().skip(*i + 1) {
                    *d += f64::from(squared_distance_f32(a, &updates[j].tensors[t][start..end]));
                }
            }
        }
        rows
    };
    let rows: Vec<(usize, Vec<f64>)> = if threads == 1 {
        fill(0)
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|p| s.spawn(move || fill(p))).collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("a distance thread panicked"))
                .collect()
        })
    };
    let mut dist = vec![vec![0.0f64; n]; n];
    for (i, row) in rows {
        for j in i + 1..n {
            dist[i][j] = row[j];
            dist[j][i] = row[j];
        }
    }
    dist
}

/// `sum((a - b)^2)` over one block, in eight independent `f32` lanes (vectorised).
fn squared_distance_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    for (x, y) in a8.zip(b8) {
        for k in 0..8 {
            let d = x[k] - y[k];
            lanes[k] += d * d;
        }
    }
    lanes.iter().sum::<f32>() + tail
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
    fn is_weighted_mean(&self) -> bool {
        true
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
    fn is_weighted_mean(&self) -> bool {
        true
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
    fn is_weighted_mean(&self) -> bool {
        true
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
    fn is_weighted_mean(&self) -> bool {
        true
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_pairwise_distances_match_the_plain_sum() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        // 30 updates of 3,008 values: enough pairs for two threads where there are two cores.
        let lens = [5, 3000, 3];
        let updates: Vec<Update> = (0..30)
            .map(|_| Update {
                tensors: lens
                    .iter()
                    .map(|&len| (0..len).map(|_| rng.random_range(-1.0..1.0)).collect())
                    .collect(),
                num_examples: 1,
            })
            .collect();
        let dist = pairwise_squared_distances(&updates);
        for i in 0..updates.len() {
            assert_eq!(dist[i][i], 0.0);
            for j in 0..updates.len() {
                let want: f64 = updates[i]
                    .tensors
                    .iter()
                    .flatten()
                    .zip(updates[j].tensors.iter().flatten())
                    .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
                    .sum();
                assert!((dist[i][j] - want).abs() <= 1e-5 * want, "{i} {j}");
            }
        }
    }

    #[test]
    fn median_and_trimmed_mean_match_their_sorted_definitions_with_ties() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(10);
        for n in [2usize, 5, 10, 11, 40] {
            let updates: Vec<Update> = (0..n)
                .map(|_| Update {
                    // Few distinct values: ties at the median and at the trim boundaries.
                    tensors: vec![(0..300)
                        .map(|_| f32::from(rng.random_range(-3i8..4)) * 0.25)
                        .collect()],
                    num_examples: 1,
                })
                .collect();
            let median = coordinate_median(&updates).unwrap();
            let beta = 0.2;
            let k = trim_count(n, beta);
            let trimmed = (2 * k < n).then(|| trimmed_mean(&updates, beta).unwrap());
            for c in 0..300 {
                let mut col: Vec<f64> =
                    updates.iter().map(|u| f64::from(u.tensors[0][c])).collect();
                col.sort_by(f64::total_cmp);
                let want = match n % 2 {
                    1 => col[n / 2],
                    _ => (col[n / 2 - 1] + col[n / 2]) / 2.0,
                };
                assert_eq!(median[0][c], want as f32, "median, n {n}, coordinate {c}");
                if let Some(t) = &trimmed {
                    let kept = &col[k..n - k];
                    let want = kept.iter().sum::<f64>() / kept.len() as f64;
                    assert_eq!(t[0][c], want as f32, "trimmed mean, n {n}, coordinate {c}");
                }
            }
        }
    }

    #[test]
    fn order_keys_order_like_total_cmp_and_map_back() {
        let mut values = vec![
            f32::NEG_INFINITY,
            f32::MIN,
            -1.5,
            -f32::MIN_POSITIVE,
            -1e-45,
            -0.0,
            0.0,
            1e-45,
            f32::MIN_POSITIVE,
            1.0,
            f32::MAX,
            f32::INFINITY,
            f32::NAN,
            -f32::NAN,
        ];
        values.extend((0..200).map(|i| (i as f32 - 100.0) * 0.37));
        for &a in &values {
            assert_eq!(from_order_key(order_key(a)).to_bits(), a.to_bits());
            for &b in &values {
                assert_eq!(
                    order_key(a).cmp(&order_key(b)),
                    a.total_cmp(&b),
                    "{a} vs {b}"
                );
            }
        }
    }
}
