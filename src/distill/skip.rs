//! LD3M's linearly decaying skip connection (methods.md §6): at DDIM step `i` of `S` the clean
//! estimate becomes `(1 - w_i) x0_hat + w_i z`, with `w_i = (S - 1 - i) / (S - 1)`, so the
//! learnable initial state `z` reaches every step, fully at the first and not at all at the last.

/// The skip weights `w_0..w_{S-1}` of a run of `steps` DDIM steps: 1 down to 0 in equal steps.
/// One step has weight 0 (the network's own estimate; `z` still reaches it through the noised
/// input).
pub fn skip_weights(steps: usize) -> Vec<f64> {
    match steps {
        0 => Vec::new(),
        1 => vec![0.0],
        _ => (0..steps)
            .map(|i| (steps - 1 - i) as f64 / (steps - 1) as f64)
            .collect(),
    }
}
