//! FedBuff's staleness damping (Nguyen et al. 2022): a delta trained from a global model `s`
//! versions old enters the buffer scaled by `1 / sqrt(1 + s)`, shared by the aggregator's
//! buffered rounds and the `fl-sim` comparison.

/// FedBuff's polynomial staleness weight `1 / sqrt(1 + s)`.
pub fn staleness_weight(staleness: u64) -> f64 {
    1.0 / (1.0 + staleness as f64).sqrt()
}

/// Scales a delta by its staleness weight (nothing to do for a fresh one).
pub fn scale_for_staleness(tensors: &mut [Vec<f32>], staleness: u64) {
    if staleness == 0 {
        return;
    }
    let w = staleness_weight(staleness);
    for v in tensors.iter_mut().flatten() {
        *v = (f64::from(*v) * w) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_deltas_are_untouched_and_stale_ones_damped() {
        assert_eq!(staleness_weight(0), 1.0);
        assert!((staleness_weight(3) - 0.5).abs() < 1e-12);
        let mut d = vec![vec![2.0f32, -4.0]];
        scale_for_staleness(&mut d, 0);
        assert_eq!(d, vec![vec![2.0, -4.0]]);
        scale_for_staleness(&mut d, 3);
        assert_eq!(d, vec![vec![1.0, -2.0]]);
    }
}
