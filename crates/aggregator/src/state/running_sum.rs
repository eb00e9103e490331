//! The open round's updates summed as they arrive, for the strategies whose aggregate is the
//! `num_examples`-weighted mean (FedAvg, and FedProx, FedAdam and FedYogi on top of it).
//!
//! A round that keeps every update whole holds `clients x params` floats (1,000 wavelr-x4
//! updates: 590 MB) and reads all of them again, cold, when it closes. A weighted mean needs only
//! `sum(w * delta)` and `sum(w)`: each accepted update is added once, while it is still in cache,
//! and dropped, so the round holds one model's worth of `f64` whatever its size. The median,
//! trimmed mean and Krum still keep every update.
//!
//! An update is summed with the weight it claims (1 with DP noise, whose mean is unweighted).
//! The cap on claims (`--max-weight-ratio` times the round's median claim) is only known at the
//! close; the few clients above it are read back from the round's log then and their excess
//! weight taken out again (`Server::close_round`).

use websr_federated::tensors::Layout;

/// `sum(w * delta)` per tensor (in layout order) and `sum(w)`.
#[derive(Debug, Clone)]
pub(super) struct RunningSum {
    sums: Vec<Vec<f64>>,
    weight: f64,
}

impl RunningSum {
    /// An empty sum for deltas of `layout`.
    pub fn zeros(layout: &Layout) -> Self {
        Self {
            sums: layout
                .shapes
                .iter()
                .map(|s| vec![0.0; s.iter().product()])
                .collect(),
            weight: 0.0,
        }
    }

    /// Adds `weight * delta` (a negative weight takes a share out again).
    pub fn add(&mut self, delta: &[Vec<f32>], weight: f64) {
        for (sum, tensor) in self.sums.iter_mut().zip(delta) {
            for (s, &d) in sum.iter_mut().zip(tensor) {
                *s += weight * f64::from(d);
            }
        }
        self.weight += weight;
    }

    /// Back to empty (the next round).
    pub fn clear(&mut self) {
        for sum in &mut self.sums {
            sum.fill(0.0);
        }
        self.weight = 0.0;
    }

    /// `sum(w * delta) / sum(w)`; `None` while nothing is summed.
    pub fn mean(&self) -> Option<Vec<Vec<f32>>> {
        (self.weight > 0.0).then(|| {
            self.sums
                .iter()
                .map(|sum| sum.iter().map(|&s| (s / self.weight) as f32).collect())
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use websr_federated::strategy::{fedavg, Update};

    #[test]
    fn the_running_mean_is_fedavg_and_a_correction_changes_a_weight() {
        let layout = Layout {
            names: vec!["a".into(), "b".into()],
            shapes: vec![vec![2], vec![1, 3]],
        };
        let deltas = [
            vec![vec![1.0, -2.0], vec![0.5, 0.25, 3.0]],
            vec![vec![0.1, 4.0], vec![-1.0, 2.0, 0.0]],
            vec![vec![-3.0, 1.5], vec![7.0, -0.5, 1.0]],
        ];
        let mut sum = RunningSum::zeros(&layout);
        assert_eq!(sum.mean(), None);
        for (d, w) in deltas.iter().zip([3.0, 1.0, 40.0]) {
            sum.add(d, w);
        }
        // The third client's claim is capped at 6 when the round closes.
        sum.add(&deltas[2], 6.0 - 40.0);
        let updates: Vec<Update> = deltas
            .iter()
            .zip([3, 1, 6])
            .map(|(d, w)| Update {
                tensors: d.clone(),
                num_examples: w,
            })
            .collect();
        let want = fedavg(&updates).unwrap();
        let got = sum.mean().unwrap();
        for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
            assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{g} vs {w}");
        }
        sum.clear();
        assert_eq!(sum.mean(), None);
    }
}
